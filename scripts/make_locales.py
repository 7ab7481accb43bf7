"""Writes locales/en/nodeDefs.json: the display names, input and output names and tooltips of every LayerStack node,
the file ComfyUI's frontend reads (through the server's /i18n) to show a node's name wherever it shows one and to
translate it. Made from a running server's /object_info, so it says what the nodes declare; rerun after changing a
node (tests/e2e/test_locales.py checks it is current). Nodes a host registers only where it has their socket types
(nodes/core_layers.py: the core LAYERS type) keep their entries when the server asked lacks them, so run it once on a
host that has every node (the newest host) and once on any other to check nothing else differs:

    python scripts/make_locales.py --server http://127.0.0.1:8188
    (Windows: python scripts\\make_locales.py --server http://127.0.0.1:8188)
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "locales" / "en" / "nodeDefs.json"


def is_ours(node: dict) -> bool:
    return node.get("python_module", "").startswith("custom_nodes.") and node["category"].startswith("LayerStack")


def node_definitions(object_info: dict) -> dict:
    """nodeDefs.json content for the pack's nodes in /object_info (sorted, so the file is stable)."""
    out = {}
    for node_id in sorted(n for n, d in object_info.items() if is_ours(d)):
        node = object_info[node_id]
        inputs = {}
        for section in ("required", "optional"):
            for name, spec in (node["input"].get(section) or {}).items():
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                inputs[name] = {"name": name, **({"tooltip": options["tooltip"]} if options.get("tooltip") else {})}
        tooltips = node.get("output_tooltips") or []
        outputs = {str(i): {"name": name, **({"tooltip": tooltips[i]} if i < len(tooltips) and tooltips[i] else {})}
                   for i, name in enumerate(node.get("output_name") or [])}
        out[node_id] = {"display_name": node["display_name"], "inputs": inputs, "outputs": outputs}
    return out


def merged(served: dict, previous: dict) -> tuple[dict, list[str]]:
    """The served definitions, plus the previous file's entries for nodes this server does not register (sorted)."""
    kept = sorted(set(previous) - set(served))
    return dict(sorted({**served, **{n: previous[n] for n in kept}}.items())), kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    args = parser.parse_args()
    with urllib.request.urlopen(f"{args.server.rstrip('/')}/object_info", timeout=120) as response:
        object_info = json.load(response)
    previous = json.loads(OUT.read_text(encoding="utf-8")) if OUT.exists() else {}
    definitions, kept = merged(node_definitions(object_info), previous)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(definitions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(OUT)
    if kept:
        print(f"kept the entries of nodes this server does not register: {', '.join(kept)}")


if __name__ == "__main__":
    main()
