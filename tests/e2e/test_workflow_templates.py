"""example_workflows/ is served as the pack's ComfyUI templates; each has its API twin, and every node it names exists."""

from __future__ import annotations

import io
from urllib.parse import quote

import numpy as np
import pytest
import requests
from PIL import Image
from psd_tools import PSDImage

from batch_runner.convert import ui_to_api
from fixtures.api_twins import assert_converts_to_twin
from fixtures.server import ComfyServer
from fixtures.workflows import (
    API_DIR,
    TEMPLATE_DIR,
    TEMPLATES,
    VIRTUAL_NODES,
    api_workflow,
    files_needed,
    not_on_this_host,
    template_path,
    ui_workflow,
)
from make_thumbnails import render

EXAMPLE_INPUTS = TEMPLATE_DIR / "input"


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
    """The template is the one source: its committed API twin must be exactly its conversion (node titles aside, which
    are the host's display names where a node has no title of its own)."""
    object_info = comfy_server.object_info()
    ui = ui_workflow(slug)
    reason = not_on_this_host(slug, object_info)
    if reason:
        pytest.skip(reason)
    types = {node["type"] for node in ui["nodes"]} - VIRTUAL_NODES
    assert types <= set(object_info), f"{template_path(slug).name} uses unknown node types {sorted(types - set(object_info))}"
    try:
        assert_converts_to_twin(ui_to_api(ui, object_info), api_workflow(slug), ui, object_info)
    except AssertionError as error:
        raise AssertionError(
            f"tests/data/workflows_api/{slug}.json is not the conversion of {template_path(slug).name}; with a server "
            f"running, regenerate it: scripts/layerstack-batch '{template_path(slug)}' --convert-only "
            f"> tests/data/workflows_api/{slug}.json") from error


def _note(workflow: dict) -> str:
    [note] = [n for n in workflow["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    return note["widgets_values"][0]


@pytest.mark.parametrize("slug", sorted(TEMPLATES))
def test_template_says_what_it_does_which_files_it_needs_and_where_they_go(slug):
    """A numbered title, a Note (description, every file with its URL and folder, what to change first), the
    `models` list the frontend's missing-model dialog reads, and only sample pictures the pack ships."""
    title, ui = TEMPLATES[slug], ui_workflow(slug)
    assert title[:2].isdigit() and title[2] == " ", title  # the number orders the templates by task
    heading, blank, description, *rest = _note(ui).splitlines()
    assert heading == f"## {title[3:]}" and blank == "" and description.endswith("."), slug
    assert any(line.startswith("**Change first:**") for line in rest), slug
    needed = files_needed(slug)
    assert ui.get("models", []) == needed, slug
    for model in needed:
        assert model["name"] in _note(ui) and model["url"] in _note(ui), (slug, model["name"])
        assert f"ComfyUI/models/{model['directory']}/" in _note(ui), (slug, model["name"])
    for node in ui["nodes"]:
        if node["type"] == "CheckpointLoaderSimple":
            assert node["properties"]["models"] == [m for m in needed if m["name"] == node["widgets_values"][0]]
        if node["type"] in ("LoadImage", "LoadImageMask"):
            assert (EXAMPLE_INPUTS / node["widgets_values"][0]).is_file(), (slug, node["widgets_values"][0])


def test_thumbnails_are_the_rendered_graphs():
    """Each template has `<title>.jpg` beside it, and it shows the template as it is now (rerun the script)."""
    for slug, title in TEMPLATES.items():
        with Image.open(TEMPLATE_DIR / f"{title}.jpg") as stored:
            assert stored.format == "JPEG"
            drawn = np.asarray(render(ui_workflow(slug), title), dtype=np.float64)
            assert np.abs(np.asarray(stored.convert("RGB"), dtype=np.float64) - drawn).mean() < 4, (
                f"{title}.jpg is out of date: python scripts/make_thumbnails.py")


def test_stack_template_runs_on_a_fresh_server_with_the_shipped_samples(fixture_paths, tmp_path):
    """A new install: nothing uploaded, the template's Load Image files come from the pack (copied at start-up,
    never over a user's file), and the PSD has its named layers. The thumbnails are served where the frontend asks."""
    server = ComfyServer(tmp_path / "fresh")
    server.input_dir.mkdir(parents=True)
    (server.input_dir / "layerstack_blended.png").write_bytes(b"the user's own file")
    server.start()
    try:
        assert (server.input_dir / "layerstack_blended.png").read_bytes() == b"the user's own file"
        for sample in EXAMPLE_INPUTS.iterdir():
            if sample.name != "layerstack_blended.png":
                assert (server.input_dir / sample.name).read_bytes() == sample.read_bytes(), sample.name
        history = server.run(api_workflow("stack_from_images"), timeout=600)
        [psd_info] = history["outputs"]["4"]["psd"]
        psd = PSDImage.open(io.BytesIO(server.fetch(psd_info)))
        assert [layer.name for layer in psd] == ["background", "foreground", "mask"]
        assert psd.size == (1024, 1024)
        title = TEMPLATES["stack_from_images"]
        thumb = requests.get(f"{server.url}/api/workflow_templates/layerstack/{quote(title)}.jpg", timeout=30)
        assert thumb.ok and thumb.headers["Content-Type"] == "image/jpeg"
    finally:
        server.stop()


def test_readme_table_lists_every_template_and_its_files():
    readme = (TEMPLATE_DIR.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Templates: what to download"):readme.index("## Where files go")]
    for slug, title in TEMPLATES.items():
        assert f"| *{title}* |" in section, title
        for model in files_needed(slug):
            assert f"`{model['name']}`" in section and model["url"] in section, (title, model["name"])
