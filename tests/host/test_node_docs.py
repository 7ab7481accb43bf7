"""web/docs/<node id>.md, the help pages the frontend shows, are made from the nodes' declarations
(scripts/make_node_docs.py) and match them on this host: a changed tooltip, default or input fails here until the
pages are made again."""

from __future__ import annotations

from make_node_docs import DOCS, documented, node_doc, pages


def test_help_pages_match_the_node_declarations(comfy_host):
    from layerstack.nodes import all_nodes
    from layerstack.nodes.core_layers import HAS_LAYERS_TYPE, LayerStackFromCoreLayers, LayerStackToCoreLayers

    made = pages(all_nodes())
    committed = {p.name: p.read_text(encoding="utf-8") for p in DOCS.glob("*.md")}
    stale = sorted(name for name, text in made.items() if committed.get(name) != text)
    assert not stale, f"rerun scripts/make_node_docs.py (on the newest host): {stale}"
    # Pages no node of this host makes: only those of nodes registered where the host has their socket types.
    host_dependent = {f"{node.NODE_ID}.md" for node in (LayerStackToCoreLayers, LayerStackFromCoreLayers)}
    assert set(committed) - set(made) == (set() if HAS_LAYERS_TYPE else host_dependent)
    assert len(made) >= 37


def test_a_page_says_what_the_declaration_says(comfy_host):
    from layerstack.nodes import all_nodes
    from layerstack.nodes.common import LEGACY_CATEGORY
    from layerstack.nodes.transparent_vae import TransparentDecode

    assert TransparentDecode in documented(all_nodes())
    assert not any(node.define_schema().category == LEGACY_CATEGORY for node in documented(all_nodes()))
    page = node_doc(TransparentDecode)
    schema = TransparentDecode.define_schema()
    assert page.startswith(f"# {schema.display_name}\n\n")
    assert "Search words" not in page  # the same page on hosts with and without search_aliases
    for spec in [*schema.inputs, *schema.outputs]:
        assert spec.tooltip in page
    basic, advanced = page.split("## Advanced inputs")
    assert "**samples**" in basic
    assert "**sub_batch_size** (INT; default `0`; 0 to 4096)" in advanced.split("## Outputs")[0]
