"""Writes web/docs/<node id>.md: the help page the ComfyUI frontend shows for a node (the node library's and the
selection toolbox's help / info panel). Both frontends tested (1.32.9 with ComfyUI 0.3.75, 1.49.6 with 0.33.0)
fetch a custom node's help from the pack's web directory, `/extensions/<pack folder>/docs/<node id>/<locale>.md`,
then `/extensions/<pack folder>/docs/<node id>.md`, and show the node's description when neither exists.

Every page is made from the node's own declaration (display name, description, inputs with type, default, range,
options and tooltip, outputs with tooltip), so there is one source of truth: change a node, rerun this, and
tests/host/test_node_docs.py fails until the pages match again (on each host). The pack's own nodes get a page; the
legacy ComfyUI-layerdiffuse ids keep the description only. Nodes a host registers only where it has their socket
types (nodes/core_layers.py) keep their pages when this host lacks them: run it on the newest host.

    .hosts/newest/venv/bin/python scripts/make_node_docs.py      (LAYERSTACK_COMFY_DIR / LAYERSTACK_VENV as for tests)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "web" / "docs"
FOOTER = ("*Made from the node's declaration by `scripts/make_node_docs.py`. More in the LayerStack README; "
          "the templates (Templates → LayerStack) show the node in a working graph.*")


def documented(nodes) -> list:
    """The nodes that get a page: every node of the pack but the legacy ids."""
    from layerstack.nodes.common import LEGACY_CATEGORY

    return [n for n in nodes if n.define_schema().category != LEGACY_CATEGORY]


def _value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    return f"`{value}`"


def _input_line(spec) -> str:
    facts = [spec.get_io_type()]
    options = getattr(spec, "options", None)
    if options:
        facts.append("one of " + ", ".join(_value(o) for o in options))
    default = getattr(spec, "default", None)
    if default is not None:
        facts.append(f"default {_value(default)}")
    low, high = getattr(spec, "min", None), getattr(spec, "max", None)
    if low is not None and high is not None:
        facts.append(f"{low} to {high}")
    if spec.optional:
        facts.append("optional")
    tooltip = f": {spec.tooltip}" if spec.tooltip else ""
    return f"- **{spec.id}** ({'; '.join(facts)}){tooltip}"


def node_doc(node) -> str:
    """The help page of one node, from its schema (the same text on every host)."""
    from layerstack.nodes.common import is_advanced, plain_description

    s = node.define_schema()
    lines = [f"# {s.display_name}", "", plain_description(s), ""]
    basic = [spec for spec in s.inputs if not is_advanced(spec)]
    folded = [spec for spec in s.inputs if is_advanced(spec)]
    if basic:
        lines += ["## Inputs", "", *map(_input_line, basic), ""]
    if folded:
        lines += ["## Advanced inputs", "",
                  "Rarely changed; newer frontends fold them away until you show the node's advanced inputs.", "",
                  *map(_input_line, folded), ""]
    if s.outputs:
        lines += ["## Outputs", ""]
        for spec in s.outputs:
            name = spec.display_name or spec.get_io_type()
            tooltip = f": {spec.tooltip}" if spec.tooltip else ""
            lines.append(f"- **{name}** ({spec.get_io_type()}){tooltip}")
        lines.append("")
    lines += [FOOTER, ""]
    return "\n".join(lines)


def pages(nodes) -> dict[str, str]:
    """file name -> text for the nodes this host registers."""
    return {f"{n.NODE_ID}.md": node_doc(n) for n in documented(nodes)}


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.comfy_env import import_pack

    import_pack()
    from layerstack.nodes import all_nodes
    from layerstack.nodes.core_layers import HAS_LAYERS_TYPE

    made = pages(all_nodes())
    DOCS.mkdir(parents=True, exist_ok=True)
    for name, text in made.items():
        (DOCS / name).write_text(text, encoding="utf-8")
    stale = sorted(p.name for p in DOCS.glob("*.md") if p.name not in made)
    print(f"{len(made)} pages in {DOCS}")
    if stale:
        note = "" if HAS_LAYERS_TYPE else " (kept: this host may lack their nodes; run on the newest host to check)"
        print(f"not made here: {', '.join(stale)}{note}")


if __name__ == "__main__":
    main()
