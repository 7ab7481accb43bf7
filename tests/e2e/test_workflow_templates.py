"""example_workflows/ is served as the pack's ComfyUI templates; each has its API twin, and every node it names exists."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests

from batch_runner.convert import ui_to_api
from fixtures.workflows import API_DIR, TEMPLATE_DIR, TEMPLATES, api_workflow, template_path, ui_workflow

VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # frontend-only, never sent to /prompt


def test_every_template_is_listed_with_its_api_twin():
    assert sorted(p.stem for p in TEMPLATE_DIR.glob("*.json")) == sorted(TEMPLATES.values())
    assert sorted(p.stem for p in API_DIR.glob("*.json")) == sorted(TEMPLATES)


def test_server_lists_and_serves_the_templates(comfy_server):
    listed = requests.get(f"{comfy_server.url}/workflow_templates", timeout=30).json()
    assert sorted(listed.get("layerstack", [])) == sorted(TEMPLATES.values())
    for slug, title in TEMPLATES.items():  # the URL the frontend builds: /api/workflow_templates/<pack>/<name>.json
        served = requests.get(f"{comfy_server.url}/api/workflow_templates/layerstack/{quote(title)}.json", timeout=30)
        assert served.ok and served.json() == ui_workflow(slug), title


@pytest.mark.parametrize("slug", sorted(TEMPLATES))
def test_template_converts_to_its_api_twin(comfy_server, slug):
    """The template is the one source: its committed API twin must be exactly its conversion."""
    object_info = comfy_server.object_info()
    ui = ui_workflow(slug)
    types = {node["type"] for node in ui["nodes"]} - VIRTUAL_NODES
    assert types <= set(object_info), f"{template_path(slug).name} uses unknown node types {sorted(types - set(object_info))}"
    converted = ui_to_api(ui, object_info)
    assert converted == api_workflow(slug), (
        f"tests/data/workflows_api/{slug}.json is not the conversion of {template_path(slug).name}; with a server "
        f"running, regenerate it: scripts/layerstack-batch '{template_path(slug)}' --convert-only "
        f"> tests/data/workflows_api/{slug}.json")
