"""Small helpers every node module shares: categories and a Schema that tolerates fields newer ComfyUIs add."""

from __future__ import annotations

import dataclasses

from comfy_api.latest import io

CATEGORY = "LayerStack"
LEGACY_CATEGORY = "LayerStack/legacy (ComfyUI-layerdiffuse)"

_SCHEMA_FIELDS = {f.name for f in dataclasses.fields(io.Schema)}


def schema(**fields) -> io.Schema:
    """io.Schema without the fields this ComfyUI does not know (e.g. search_aliases arrived after 0.3.75)."""
    return io.Schema(**{k: v for k, v in fields.items() if k in _SCHEMA_FIELDS})
