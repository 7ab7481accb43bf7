"""RGBA batches <-> stacks, and the stack edits of the decompose -> edit -> recompose loop (helpers and nodes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.rgba_images import rand, rgba_frames
from layerstack.errors import LayerStackError
from layerstack.layer_stack import compositing, editing
from layerstack.layer_stack.stack import LayerStack, make_layer

HALF_STEP = 0.5 / 255 + 1e-6


def reference_over(layers):
    """Premultiplied-space "over" in float64 numpy, layers = [(rgb, alpha·opacity)] bottom first."""
    premultiplied = np.zeros(layers[0][0].shape)
    coverage = np.zeros(layers[0][1].shape)
    for rgb, alpha in layers:
        a = alpha.double().numpy()
        premultiplied = rgb.double().numpy() * a[..., None] + premultiplied * (1 - a[..., None])
        coverage = a + coverage * (1 - a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(coverage[..., None] > 0, premultiplied / coverage[..., None], 0.0), coverage


@pytest.mark.parametrize("order", editing.ORDERS)
def test_rgba_batch_to_stack_and_back_is_identical(order):
    frames = rgba_frames()
    stack = editing.stack_from_frames(frames[..., :3], frames[..., 3], "sky, hill, tree, bird", order)
    assert stack.batch_size == 1 and len(stack) == 4
    bottom_first = frames if order == editing.BOTTOM_TO_TOP else frames.flip(0)
    assert stack.names == (["sky", "hill", "tree", "bird"])
    assert torch.equal(stack.layers[0].rgba()[0], bottom_first[0])
    back, names = editing.stack_to_frames(stack, order)
    assert torch.equal(back, frames)
    assert names == (stack.names if order == editing.BOTTOM_TO_TOP else stack.names[::-1])


def test_drop_first_frame_and_default_names():
    frames = rgba_frames(n=3)
    stack = editing.stack_from_frames(frames[..., :3], frames[..., 3], drop_first_frame=True)
    assert stack.names == ["layer_0", "layer_1"]
    assert torch.equal(editing.stack_to_frames(stack)[0], frames[1:])
    with pytest.raises(LayerStackError, match=r"input 'names' expected 3 comma-separated names .*got 2"):
        editing.stack_from_frames(frames[..., :3], frames[..., 3], "a, b")
    with pytest.raises(LayerStackError, match=r"'drop_first_frame' expected at least 2 frames .*got 1"):
        editing.stack_from_frames(frames[:1, ..., :3], frames[:1, ..., 3], drop_first_frame=True)


def test_unedited_decomposition_recomposes_to_the_source_within_8_bit_rounding():
    """Qwen-Image-Layered's convention: frame 0 = the whole picture, the layers (bottom first) composite to it."""
    layers = rgba_frames(n=3, seed=3)
    layers[0, ..., 3] = 1.0  # an opaque bottom layer, as a decomposition has
    rgb, alpha = reference_over([(layers[i, ..., :3], layers[i, ..., 3]) for i in range(3)])
    whole = torch.cat([torch.from_numpy(rgb), torch.from_numpy(alpha)[..., None]], dim=-1).float()
    decoded = (torch.cat([whole[None], layers]) * 255).round() / 255  # what an 8-bit decode hands out
    stack = editing.stack_from_frames(decoded[..., :3], decoded[..., 3], drop_first_frame=True)
    out_rgb, out_alpha = compositing.composite(stack)
    # Each 8-bit layer is off by half a step; the composite of three such layers by at most that much per layer.
    assert (out_rgb[0] - decoded[0, ..., :3]).abs().max() <= 3 * HALF_STEP
    assert torch.equal(out_alpha[0], torch.ones(12, 16))


def test_opacity_and_visibility_enter_the_composite():
    frames = rgba_frames(n=3, seed=5)
    stack = editing.stack_from_frames(frames[..., :3], frames[..., 3], "a, b, c")
    edited = editing.set_properties(editing.set_properties(stack, "b", opacity=0.4), "c", visible=False)
    assert [(layer.opacity, layer.visible) for layer in edited.layers] == [(1.0, True), (0.4, True), (1.0, False)]
    assert stack.get("b").opacity == 1.0  # the given stack is unchanged
    rgb, alpha = compositing.composite(edited)
    ref_rgb, ref_alpha = reference_over([(frames[0, ..., :3], frames[0, ..., 3]),
                                         (frames[1, ..., :3], frames[1, ..., 3] * 0.4)])
    assert np.abs(rgb[0].numpy() - ref_rgb).max() < 1e-5 and np.abs(alpha[0].numpy() - ref_alpha).max() < 1e-6
    out, _ = editing.stack_to_frames(edited, include_hidden=False)
    assert out.shape[0] == 2 and torch.allclose(out[1, ..., 3], frames[1, ..., 3] * 0.4)
    renamed = editing.set_properties(edited, "a", new_name="base")
    assert renamed.names == ["base", "b", "c"] and renamed.layers[0].opacity == 1.0
    with pytest.raises(LayerStackError, match=r"opacity expected a number in \[0, 1\], got 1.5"):
        editing.set_properties(stack, "a", opacity=1.5)
    with pytest.raises(LayerStackError, match=r"input 'name' expected one of .*\['a', 'b', 'c'\], got 'd'"):
        editing.set_properties(stack, "d", opacity=0.5)


def test_replace_and_reorder():
    frames = rgba_frames(n=3, seed=6)
    stack = editing.stack_from_frames(frames[..., :3], frames[..., 3], "a, b, c")
    new = make_layer("b", rand(1, 12, 16, 3, seed=9), frames[1:2, ..., 3])
    replaced = editing.with_layer(stack, "b", new)
    assert replaced.names == stack.names and replaced.layers[1] is new and replaced.layers[0] is stack.layers[0]
    with pytest.raises(LayerStackError, match=r"input 'image' expected \[batch, height, width\] \[1, 12, 16\] "
                                              r"\(layer 'b'\), got \[1, 12, 15\]"):
        editing.with_layer(stack, "b", make_layer("b", rand(1, 12, 15, 3, seed=1)))
    assert editing.reordered(stack, "c,a , b").names == ["c", "a", "b"]
    assert editing.reversed_stack(stack).names == ["c", "b", "a"]
    with pytest.raises(LayerStackError, match=r"each of the stack's layer names \['a', 'b', 'c'\] exactly once, "
                                              r"got \['a', 'b'\]"):
        editing.reordered(stack, "a, b")


def test_batched_stack_to_frames_goes_picture_by_picture():
    layers = (make_layer("a", rand(2, 4, 5, 3, seed=1)), make_layer("b", rand(2, 4, 5, 3, seed=2), rand(2, 4, 5, seed=3)))
    frames, names = editing.stack_to_frames(LayerStack(layers), editing.TOP_TO_BOTTOM)
    assert names == ["b", "a"] and frames.shape == (4, 4, 5, 4)
    assert torch.equal(frames[1], layers[0].rgba()[0]) and torch.equal(frames[2], layers[1].rgba()[1])


# --- the nodes ------------------------------------------------------------------------------------------------------
