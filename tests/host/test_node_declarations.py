"""The shared declaration path (nodes/common.py): every node's id declared once, every combo value checked, and the
Schema helper dropping only the newer-host fields it knows."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch


def _nodes():
    from layerstack.nodes import all_nodes

    return all_nodes()


def _combos(node) -> list:
    from comfy_api.latest import io

    return [spec for spec in node.define_schema().inputs if isinstance(spec, io.Combo.Input)]


def test_every_node_derives_from_the_base_and_declares_its_id_once(comfy_host):
    from layerstack.nodes.common import LayerStackNode

    for node in _nodes():
        assert issubclass(node, LayerStackNode)
        assert node.define_schema().node_id == node.NODE_ID, node.__name__


def test_search_words_name_only_declared_nodes_and_cover_every_category(comfy_host):
    """The word tables are keyed by node id and category: a key no node has would silently give no words."""
    from layerstack.nodes import search_words
    from layerstack.nodes.categories import LEGACY_CATEGORY

    schemas = [node.define_schema() for node in _nodes()]
    ids = {s.node_id for s in schemas}
    assert set(search_words.OLD_DISPLAY_NAMES) <= ids and set(search_words.NODE_WORDS) <= ids
    categories = {s.category for s in schemas} - {LEGACY_CATEGORY}
    assert categories == set(search_words.CATEGORY_WORDS), categories ^ set(search_words.CATEGORY_WORDS)


def test_every_combo_of_every_node_refuses_a_value_outside_its_options(comfy_host):
    from layerstack.errors import LayerStackError

    checked = 0
    for node in _nodes():
        for spec in _combos(node):
            bad = spec.options[0][:-1] + "?"  # a near miss, like a truncated "LoadImage mask"
            with pytest.raises(LayerStackError) as caught:
                node.execute(**{spec.id: bad})  # the check runs before the node's own code (other inputs absent)
            assert str(caught.value) == (f"{node.NODE_ID}: input '{spec.id}' expected one of {list(spec.options)}, "
                                         f"got {bad!r}."), str(caught.value)
            checked += 1
    assert checked >= 30  # 32 combos at the time of writing: the loop really ran over them


def test_out_of_list_values_that_used_to_pass_or_fail_badly(comfy_host):
    """Before the shared check: misread as alpha, a bare KeyError, a bare enum error."""
    from layerstack.errors import LayerStackError
    from layerstack.nodes import layer_files, sdxl, stack

    image = torch.rand(1, 8, 8, 3)
    with pytest.raises(LayerStackError, match=r"LayerStackAddLayer: input 'mask_meaning' expected one of .*"
                                              r"got 'LoadImage mask'"):
        stack.LayerStackAddLayer.execute(image=image, mask=torch.rand(1, 8, 8), mask_meaning="LoadImage mask",
                                         name="a", visible=True)
    with pytest.raises(LayerStackError, match="LayerStackFetchLayerFile: input 'file' expected one of"):
        layer_files.FetchLayerFile.execute(file="no_such_file.safetensors", allow_download=False)
    with pytest.raises(LayerStackError, match="LayerStackSDXLForegroundToBlended: input 'resize_mode'"):
        sdxl.SDXLForegroundToBlended.execute(None, None, None, 64, 64, "garbage", 1.0, 0.0, 1.0)


def test_valid_values_and_positional_calls_pass_through(comfy_host):
    from layerstack.nodes import stack
    from layerstack.nodes.common import MASK_IS_LOADIMAGE

    image, mask = torch.rand(1, 8, 8, 3), torch.rand(1, 8, 8)
    out = stack.LayerStackAddLayer.execute(image, MASK_IS_LOADIMAGE, "a", True, None, mask).result[0]
    assert torch.allclose(out.layers[0].alpha, 1 - mask)


def test_execute_is_wrapped_once_even_on_comfyui_class_clones(comfy_host):
    from comfy_api.internal import lock_class, shallow_clone_class

    from layerstack.nodes.stack import LayerStackAddLayer

    clone = lock_class(shallow_clone_class(LayerStackAddLayer))
    assert clone.execute.__func__ is LayerStackAddLayer.execute.__func__


def test_schema_helper_drops_only_known_newer_host_fields(comfy_host):
    from comfy_api.latest import io

    from layerstack.nodes.common import NEWER_HOST_SCHEMA_FIELDS, schema

    host_fields = {f.name for f in dataclasses.fields(io.Schema)}
    made = schema(node_id="X", search_aliases=["y"])
    assert made.node_id == "X"
    if "search_aliases" in host_fields:  # the caller's words first, then the pack's search words for the node
        assert made.search_aliases[0] == "y" and len(made.search_aliases) > 1
    assert "search_aliases" in NEWER_HOST_SCHEMA_FIELDS
    with pytest.raises(TypeError, match="serch_aliases"):
        schema(node_id="X", serch_aliases=["y"])  # a typo must not vanish


# Inputs artists rarely touch, folded away by newer frontends: decoder pass counts and sub-batch sizes, the encode
# offset scale, the schedule's start (Forge has only 'Stop At'), and defaults that are right for nearly everyone.
ADVANCED_INPUTS = {
    "LayerStackTransparentDecode": {"passes", "sub_batch_size"},
    "LayerStackTransparentEncode": {"offset_multiplier"},
    "LayerStackSD15SplitLayers": {"passes"},
    "LayeredDiffusionDecode": {"sub_batch_size"},
    "LayeredDiffusionDecodeRGBA": {"sub_batch_size"},
    "LayeredDiffusionDecodeSplit": {"sub_batch_size"},
    "LayerStackFromText2Layer": {"include_mask_layer"},
    "LayerStackToBatch": {"include_hidden"},
    "LayerStackSplitByMask": {"hole_threshold"},
    "LayerStackCleanEdges": {"fill_transparent"},
    **{node: {"start_percent"} for node in (
        "LayerStackSDXLTransparentForeground", "LayerStackSDXLForegroundToBlended", "LayerStackSDXLBackgroundToBlended",
        "LayerStackSDXLForegroundBlendedToBackground", "LayerStackSDXLBackgroundBlendedToForeground",
        "LayerStackSD15TransparentForeground", "LayerStackSD15JointLayers", "LayerStackSD15ForegroundToBackground",
        "LayerStackSD15BackgroundToForeground")},
}


def _served_inputs(node) -> dict:
    """The node's inputs as /object_info serves them: name -> options dict."""
    info = node.GET_NODE_INFO_V1()
    return {name: (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            for section in ("required", "optional") for name, spec in (info["input"].get(section) or {}).items()}


def test_rarely_touched_inputs_are_advanced_where_the_host_has_the_field(comfy_host):
    from comfy_api.latest import io

    from layerstack.nodes.common import is_advanced

    host_has_advanced = "advanced" in inspect.signature(io.Int.Input.__init__).parameters
    declared, served = {}, {}
    for node in _nodes():
        inputs = _served_inputs(node)
        if marked := {spec.id for spec in node.define_schema().inputs if is_advanced(spec)}:
            declared[node.NODE_ID] = marked
        if advanced := {name for name, options in inputs.items() if options.get("advanced")}:
            served[node.NODE_ID] = advanced
        assert not any("advanced" in options and options["advanced"] is not True for options in inputs.values())
    assert declared == ADVANCED_INPUTS
    # 0.33.0 serves the flag (the frontend folds those inputs away); 0.3.75 has no such field and gets plain inputs.
    assert served == (ADVANCED_INPUTS if host_has_advanced else {})


def test_advanced_inputs_keep_their_place_and_default(comfy_host):
    """Folding is display only: input order (UI files store widget values by position) and defaults are unchanged."""
    from layerstack.nodes.transparent_vae import TransparentDecode

    info = TransparentDecode.GET_NODE_INFO_V1()
    assert info["input_order"]["required"] == ["layer_vae", "samples", "images", "passes", "sub_batch_size"]
    assert info["input"]["required"]["sub_batch_size"][1]["default"] == 0
    assert info["input"]["required"]["passes"][1]["default"] == "8"


def test_input_helper_drops_only_known_newer_host_fields(comfy_host):
    from comfy_api.latest import io

    from layerstack.nodes.common import NEWER_HOST_INPUT_FIELDS, advanced, declare

    assert "advanced" in NEWER_HOST_INPUT_FIELDS
    spec = advanced(io.Int.Input, "n", default=3, min=1)
    assert spec.id == "n" and spec.default == 3 and spec.min == 1
    with pytest.raises(TypeError, match=r"the INT input 'n' has no field\(s\) \['advancd'\]"):
        declare(io.Int.Input, "n", advancd=True)  # a typo must not vanish
