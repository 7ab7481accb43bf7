"""Reading a workflow file: API JSON, UI JSON, a ``/prompt`` request body, or a PNG that ComfyUI saved.

ComfyUI's SaveImage writes the API prompt into the PNG text chunk ``prompt`` and the editor graph into ``workflow``;
the API one is taken when both are there, since it is exactly what ran.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from .errors import BatchError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_ui_workflow(doc: object) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("nodes"), list)


def is_api_prompt(doc: object) -> bool:
    return isinstance(doc, dict) and len(doc) > 0 and all(
        isinstance(v, dict) and "class_type" in v for v in doc.values())


def png_text_chunks(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        try:
            if ctype == b"tEXt":
                key, _, text = body.partition(b"\0")
                out[key.decode("latin-1")] = text.decode("latin-1")
            elif ctype == b"zTXt":
                key, _, rest = body.partition(b"\0")
                out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
            elif ctype == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, _method = rest[0], rest[1]
                _lang, _, rest = rest[2:].partition(b"\0")
                _tkey, _, text = rest.partition(b"\0")
                out[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError):
            continue
        if ctype == b"IEND":
            break
    return out


def load_workflow(path: Path) -> tuple[str, dict]:
    """Returns ("api" | "ui", document)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BatchError(f"workflow {path}: cannot read it: {exc}") from exc
    if raw.startswith(PNG_MAGIC):
        chunks = png_text_chunks(raw)
        for key, kind in (("prompt", "api"), ("workflow", "ui")):
            if key in chunks:
                try:
                    return kind, _check(path, json.loads(chunks[key]), kind)
                except ValueError:
                    continue
        raise BatchError(f"workflow {path}: a PNG, but it carries no ComfyUI 'prompt' or 'workflow' text chunk")
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BatchError(f"workflow {path}: expected ComfyUI workflow JSON (API or UI format), cannot parse it: "
                         f"{exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("prompt"), dict) and is_api_prompt(doc["prompt"]):
        return "api", doc["prompt"]  # a saved POST /prompt body
    if is_ui_workflow(doc):
        return "ui", doc
    if is_api_prompt(doc):
        return "api", doc
    keys = sorted(doc)[:8] if isinstance(doc, dict) else type(doc).__name__
    raise BatchError(f"workflow {path}: expected API format ({{id: {{class_type, inputs}}}}) or UI format (an object "
                     f"with a 'nodes' list), got {keys}")


def _check(path: Path, doc, kind: str) -> dict:
    if kind == "api" and is_api_prompt(doc):
        return doc
    if kind == "ui" and is_ui_workflow(doc):
        return doc
    raise ValueError(f"{path}: {kind} chunk has the wrong shape")


def normalize_api(prompt: dict) -> dict:
    """Node ids as strings and links as [str, int], the form the server answers with."""
    out = {}
    for nid, node in prompt.items():
        inputs = {}
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and \
                    isinstance(value[0], (str, int)) and not isinstance(value[0], bool):
                value = [str(value[0]), value[1]]
            inputs[name] = value
        out[str(nid)] = {**node, "inputs": inputs}
    return out
