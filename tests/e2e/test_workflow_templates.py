"""workflows/ is served as ComfyUI templates, every template has an API twin, and every node it names exists."""

from __future__ import annotations

import json
from pathlib import Path

import requests

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # frontend-only, never sent to /prompt


def _ui_workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.json"))


def test_every_ui_workflow_has_an_api_twin():
    assert _ui_workflows(), "workflows/ has no templates"
    missing = [p.name for p in _ui_workflows() if not (WORKFLOWS / "api" / p.name).exists()]
    assert not missing, f"no API-format twin in workflows/api/ for {missing}"
    orphans = [p.name for p in (WORKFLOWS / "api").glob("*.json") if not (WORKFLOWS / p.name).exists()]
    assert not orphans, f"API workflows without a UI template: {orphans}"


def test_server_lists_the_templates(comfy_server):
    listed = requests.get(f"{comfy_server.url}/workflow_templates", timeout=30).json()
    assert sorted(listed.get("layerstack", [])) == sorted(p.stem for p in _ui_workflows())
    first = _ui_workflows()[0]
    served = requests.get(f"{comfy_server.url}/api/workflow_templates/layerstack/{first.name}", timeout=30)
    assert served.ok and served.json() == json.loads(first.read_text())


def test_every_node_type_in_the_templates_exists(comfy_server):
    known = set(comfy_server.object_info())
    for path in _ui_workflows():
        ui = json.loads(path.read_text())
        types = {node["type"] for node in ui["nodes"]} - VIRTUAL_NODES
        assert types <= known, f"{path.name} uses unknown node types {sorted(types - known)}"
        api = json.loads((WORKFLOWS / "api" / path.name).read_text())
        api_types = {node["class_type"] for node in api.values()}
        assert api_types <= known, f"api/{path.name} uses unknown node types {sorted(api_types - known)}"
