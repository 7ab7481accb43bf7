"""The shared declaration path (nodes/common.py): every node's id declared once, every combo value checked, and the
Schema helper dropping only the newer-host fields it knows."""

from __future__ import annotations

import dataclasses

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
