"""LoadImage's 64x64 all-zero mask for a picture without alpha is "no mask" for every node taking IMAGE + MASK.

Each such node runs twice on an RGB picture of another size: with the placeholder connected and with nothing
connected; both runs must end the same way (same outputs, or the same error). A node added later with an IMAGE and a
MASK input is picked up from the schemas, so it cannot be missed.
"""

from __future__ import annotations

import pytest
import torch

from layerstack.errors import LayerStackError
from layerstack.layer_stack.inputs import is_placeholder_mask, rgb_and_alpha

RGB = torch.rand(1, 72, 96, 3, generator=torch.Generator().manual_seed(0))
PLACEHOLDER = torch.zeros(1, 64, 64)  # what LoadImage returns for an RGB picture


def test_helper_treats_only_the_placeholder_as_no_mask():
    assert is_placeholder_mask(PLACEHOLDER, RGB)
    assert not is_placeholder_mask(torch.zeros(1, 64, 64), torch.rand(1, 64, 64, 3))  # same size: a real mask
    assert not is_placeholder_mask(torch.ones(1, 64, 64), RGB)  # not empty: a real (wrong-size) mask
    rgb, alpha = rgb_and_alpha(RGB, PLACEHOLDER, "Node", mask_is_inverted=True)
    assert torch.equal(rgb, RGB) and torch.equal(alpha, torch.ones(1, 72, 96))
    rgba = torch.cat([RGB, torch.rand(1, 72, 96, 1)], dim=-1)  # an RGBA IMAGE keeps its own alpha
    assert torch.equal(rgb_and_alpha(rgba, PLACEHOLDER, "Node")[1], rgba[..., 3])
    with pytest.raises(LayerStackError, match="64x64"):  # a real mask of the wrong size is still refused
        rgb_and_alpha(RGB, torch.ones(1, 64, 64), "Node")


def _image_and_mask_nodes():
    from layerstack.nodes import all_nodes

    found = []
    for node in all_nodes():
        schema = node.define_schema()
        kinds = {i.get_io_type() for i in schema.inputs}
        if {"IMAGE", "MASK"} <= kinds:
            found.append(node)
    return found


def _inputs(schema, mask, stack, meaning):
    values = {}
    for spec in schema.inputs:
        kind = spec.get_io_type()
        if kind == "IMAGE":
            values[spec.id] = RGB
        elif kind == "MASK":
            if mask is not None or not spec.optional:
                values[spec.id] = mask
        elif spec.id == "mask_meaning":
            values[spec.id] = meaning
        elif kind == "LAYER_STACK":
            values[spec.id] = stack
        elif kind == "COMBO":
            values[spec.id] = spec.default if spec.default is not None else spec.options[0]
        elif getattr(spec, "default", None) is not None:
            values[spec.id] = spec.default
        elif kind == "STRING":
            values[spec.id] = "background"
        else:
            values[spec.id] = None  # a model input: the node must refuse it the same way both times
    return values


def _outcome(node, values):
    try:
        out = node.execute(**values)
    except LayerStackError as e:
        return ("error", str(e))
    return ("ok", [a for a in out.args if isinstance(a, torch.Tensor)])


@pytest.mark.parametrize("meaning", ["LoadImage mask (1 = transparent)", "alpha (1 = opaque)"])
def test_every_image_and_mask_node_takes_the_placeholder_as_no_mask(comfy_host, tmp_path, monkeypatch, meaning):
    import folder_paths

    from layerstack.nodes.stack import LayerStackAddLayer

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path / "temp"))
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "output"))
    stack = LayerStackAddLayer.execute(image=RGB, mask_meaning="alpha (1 = opaque)", name="background",
                                       visible=True).args[0]
    nodes = _image_and_mask_nodes()
    assert len(nodes) >= 14
    for node in nodes:
        schema = node.define_schema()
        with_placeholder = _outcome(node, _inputs(schema, PLACEHOLDER, stack, meaning))
        without = _outcome(node, _inputs(schema, None, stack, meaning))
        assert with_placeholder[0] == without[0], (schema.node_id, with_placeholder, without)
        if without[0] == "error":
            assert with_placeholder[1] == without[1], schema.node_id
            assert "64x64 (" not in without[1], schema.node_id
        else:
            assert all(torch.equal(a, b) for a, b in zip(with_placeholder[1], without[1], strict=True)), schema.node_id
