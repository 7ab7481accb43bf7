"""The eight node ids of huchenlei/ComfyUI-layerdiffuse, as shared workflows depend on them, against /object_info.

The table is written from the old pack's node definitions (docs/FORMATS.md#old-nodes), not from ours:
input names and their order (UI files store widget values by position), required vs optional, types, combo strings
in order (the first is the default when none is given), defaults, ranges, steps, output types in order and display
names. Any refactor that changes one of them breaks workflows people already have, so it must fail here first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PUBLISHED = json.loads((Path(__file__).resolve().parents[1] / "data" / "legacy_node_ids.json").read_text())
LEGACY_CATEGORY = "LayerStack/legacy (ComfyUI-layerdiffuse)"  # nodes/common.py, as the server lists it

WEIGHT = ("FLOAT", {"default": 1.0, "min": -1.0, "max": 3.0, "step": 0.05})
SD_VERSION = ("COMBO", ["SD15", "SDXL"], "SDXL")
SUB_BATCH = ("INT", {"default": 16, "min": 1, "max": 4096, "step": 1})
SDXL_COND = ("COMBO", ["SDXL, Foreground", "SDXL, Background"], None)

OLD_NODES: dict[str, dict] = {
    "LayeredDiffusionApply": {
        "display_name": "Layer Diffuse Apply",
        "required": [("model", "MODEL"),
                     ("config", ("COMBO", ["SDXL, Attention Injection", "SDXL, Conv Injection",
                                           "SD15, Attention Injection, attn_sharing"], None)),
                     ("weight", WEIGHT)],
        "optional": [],
        "outputs": ["MODEL"],
    },
    "LayeredDiffusionJointApply": {
        "display_name": "Layer Diffuse Joint Apply",
        "required": [("model", "MODEL"), ("config", ("COMBO", ["SD15, attn_sharing, Batch size (3N)"], None))],
        "optional": [("fg_cond", "CONDITIONING"), ("bg_cond", "CONDITIONING"), ("blended_cond", "CONDITIONING")],
        "outputs": ["MODEL"],
    },
    "LayeredDiffusionCondApply": {
        "display_name": "Layer Diffuse Cond Apply",
        "required": [("model", "MODEL"), ("cond", "CONDITIONING"), ("uncond", "CONDITIONING"), ("latent", "LATENT"),
                     ("config", SDXL_COND), ("weight", WEIGHT)],
        "optional": [],
        "outputs": ["MODEL", "CONDITIONING", "CONDITIONING"],
    },
    "LayeredDiffusionCondJointApply": {
        "display_name": "Layer Diffuse Cond Joint Apply",
        "required": [("model", "MODEL"), ("image", "IMAGE"),
                     ("config", ("COMBO", ["SD15, Foreground, attn_sharing, Batch size (2N)",
                                           "SD15, Background, attn_sharing, Batch size (2N)"], None))],
        "optional": [("cond", "CONDITIONING"), ("blended_cond", "CONDITIONING")],
        "outputs": ["MODEL"],
    },
    "LayeredDiffusionDiffApply": {
        "display_name": "Layer Diffuse Diff Apply",
        "required": [("model", "MODEL"), ("cond", "CONDITIONING"), ("uncond", "CONDITIONING"),
                     ("blended_latent", "LATENT"), ("latent", "LATENT"), ("config", SDXL_COND), ("weight", WEIGHT)],
        "optional": [],
        "outputs": ["MODEL", "CONDITIONING", "CONDITIONING"],
    },
    "LayeredDiffusionDecode": {
        "display_name": "Layer Diffuse Decode",
        "required": [("samples", "LATENT"), ("images", "IMAGE"), ("sd_version", SD_VERSION),
                     ("sub_batch_size", SUB_BATCH)],
        "optional": [],
        "outputs": ["IMAGE", "MASK"],
    },
    "LayeredDiffusionDecodeRGBA": {
        "display_name": "Layer Diffuse Decode (RGBA)",
        "required": [("samples", "LATENT"), ("images", "IMAGE"), ("sd_version", SD_VERSION),
                     ("sub_batch_size", SUB_BATCH)],
        "optional": [],
        "outputs": ["IMAGE"],
    },
    "LayeredDiffusionDecodeSplit": {
        "display_name": "Layer Diffuse Decode (Split)",
        "required": [("samples", "LATENT"), ("images", "IMAGE"),
                     ("frames", ("INT", {"default": 2, "min": 2, "max": 3, "step": 1})),
                     ("sd_version", SD_VERSION), ("sub_batch_size", SUB_BATCH)],
        "optional": [],
        "outputs": ["IMAGE", "IMAGE", "IMAGE"],
    },
}


def _as_table_entry(spec: list):
    """A live /object_info input spec in the table's shape (V1 list combos and V3 COMBO both become COMBO)."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list) or spec[0] == "COMBO":
        options = spec[0] if isinstance(spec[0], list) else opts.get("options", [])
        return ("COMBO", list(options), opts.get("default"))
    if spec[0] in ("INT", "FLOAT"):
        numeric = {k: opts[k] for k in ("default", "min", "max", "step") if k in opts}
        if spec[0] == "INT":
            numeric.setdefault("step", 1)  # the frontend's step when none is given
        return (spec[0], numeric)
    return spec[0]


def _expected(entry):
    if isinstance(entry, tuple) and entry[0] == "COMBO" and entry[2] is None:
        return ("COMBO", entry[1], None)  # no explicit default: the first option is
    return entry


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


def test_the_table_has_the_old_packs_published_ids():
    """The table above against the ids and display names the old pack registers (tests/data/legacy_node_ids.json)."""
    published = PUBLISHED["nodes"]
    assert sorted(OLD_NODES) == sorted(published)
    assert {node_id: old["display_name"] for node_id, old in OLD_NODES.items()} == published


def test_the_legacy_category_holds_exactly_the_old_ids(object_info):
    """No old id is missing from the server, and no other node poses as one of the old pack's."""
    legacy = {node_id for node_id, info in object_info.items() if info.get("category") == LEGACY_CATEGORY}
    assert legacy == set(PUBLISHED["nodes"])


@pytest.mark.parametrize("node_id", sorted(OLD_NODES))
def test_old_node_id_matches_the_old_pack(object_info, node_id):
    assert node_id in object_info, f"{node_id} is not registered: workflows that use it no longer load"
    old = OLD_NODES[node_id]
    live = object_info[node_id]
    assert live["display_name"] == old["display_name"]
    order = live.get("input_order") or {}
    for section in ("required", "optional"):
        names = [name for name, _ in old[section]]
        assert list(order.get(section) or []) == names, f"{node_id} {section} inputs (order matters for UI files)"
        for name, entry in old[section]:
            spec = live["input"][section][name]
            got = _as_table_entry(spec)
            if isinstance(got, tuple) and got[0] == "COMBO" and got[2] is not None and _expected(entry)[2] is None:
                # an explicit default is fine only if it is the first option, as the old implicit one
                assert got[2] == got[1][0], f"{node_id}.{name} default"
                got = ("COMBO", got[1], None)
            assert got == _expected(entry), f"{node_id}.{name}"
    assert live["output"] == old["outputs"], f"{node_id} outputs (links store output slots by index)"
    assert not live.get("output_node")
