"""locales/en/nodeDefs.json is current (every node's display name, inputs and outputs) and the server hands it to the
frontend through /i18n; the nodes carry their search words where the host knows search_aliases; the help pages
of web/docs are served where the frontend fetches them."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from make_locales import OUT, node_definitions

PACK_SEARCH_WORDS = {"layerdiffuse", "layer diffusion", "LayeredDiffusion"}


def test_locale_file_is_current_and_served(comfy_server):
    from layerstack.nodes.core_layers import HAS_LAYERS_TYPE, LayerStackFromCoreLayers, LayerStackToCoreLayers

    object_info = comfy_server.object_info()
    committed = json.loads(Path(OUT).read_text(encoding="utf-8"))
    served = node_definitions(object_info)
    assert {n: committed.get(n) for n in served} == served, "rerun: python scripts/make_locales.py --server <url>"
    # The only entries this host does not serve are those of nodes registered where the host has their types.
    host_dependent = {node.NODE_ID for node in (LayerStackToCoreLayers, LayerStackFromCoreLayers)}
    assert set(committed) - set(served) == (set() if HAS_LAYERS_TYPE else host_dependent)
    assert len(committed) >= 47
    i18n = requests.get(f"{comfy_server.url}/i18n", timeout=30).json()
    assert i18n["en"]["nodeDefs"]["LayerStackSavePSD"]["display_name"] == "Save Layer Stack (PSD)"
    # the template browser's category for the pack's folder (custom_nodes/layerstack) reads "LayerStack"
    assert i18n["en"]["templateWorkflows"]["category"]["layerstack"] == "LayerStack"


def test_nodes_carry_the_words_people_search_for(comfy_server):
    object_info = comfy_server.object_info()
    ours = {n: d for n, d in object_info.items() if n.startswith("LayerStack")}
    host_has_aliases = any("search_aliases" in d for d in object_info.values())
    for node_id, node in ours.items():
        words = set(node["search_aliases"]) if host_has_aliases else node["description"]
        assert all(w in words for w in PACK_SEARCH_WORDS), node_id
    psd = ours["LayerStackSavePSD"]
    assert "psd" in (psd["search_aliases"] if host_has_aliases else psd["description"])
    decode = ours["LayerStackTransparentDecode"]
    found = decode["search_aliases"] if host_has_aliases else decode["description"]
    assert all(w in found for w in ("Layer Diffuse Decode", "transparent", "rgba", "alpha"))


def test_download_switch_is_in_the_ui(comfy_server):
    """web/layerstack.js (the Settings entry) is among the scripts the frontend loads."""
    scripts = requests.get(f"{comfy_server.url}/extensions", timeout=30).json()
    [ours] = [s for s in scripts if s.endswith("/layerstack.js")]
    assert "LayerStack.AllowDownload" in requests.get(f"{comfy_server.url}{ours}", timeout=30).text


def test_help_pages_are_served_where_the_frontend_fetches_them(comfy_server):
    """The frontend asks for /extensions/<pack folder>/docs/<node id>.md (scripts/make_node_docs.py)."""
    from make_node_docs import DOCS

    object_info = comfy_server.object_info()
    node = object_info["LayerStackTransparentDecode"]
    folder = node["python_module"].split(".")[1]  # custom_nodes.<folder>, as the frontend reads it
    response = requests.get(f"{comfy_server.url}/extensions/{folder}/docs/LayerStackTransparentDecode.md", timeout=30)
    assert response.status_code == 200 and "text/html" not in response.headers.get("content-type", "")
    assert response.text == (DOCS / "LayerStackTransparentDecode.md").read_text(encoding="utf-8")
