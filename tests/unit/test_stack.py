"""The layer stack type, Porter-Duff compositing (Text2Layer's formula and general "over"), and the stack nodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.rgba_images import rand
from layerstack.errors import LayerStackError
from layerstack.layer_stack import compositing
from layerstack.layer_stack.stack import Layer, LayerStack, make_layer
from layerstack.layer_stack.text2layer import text2layer_stack


def reference_over(layers):
    """Independent reference: premultiplied-space "over" in float64 numpy (P_out = P_top + P_bottom * (1 - a_top))."""
    premultiplied = np.zeros(layers[0][0].shape, dtype=np.float64)
    coverage = np.zeros(layers[0][1].shape, dtype=np.float64)
    for rgb, alpha in layers:
        a = alpha.double().numpy()
        premultiplied = rgb.double().numpy() * a[..., None] + premultiplied * (1 - a[..., None])
        coverage = a + coverage * (1 - a)
    with np.errstate(invalid="ignore", divide="ignore"):
        straight = np.where(coverage[..., None] > 0, premultiplied / coverage[..., None], 0.0)
    return straight, coverage


def test_stack_orders_bottom_to_top_and_finds_layers_by_name():
    s = text2layer_stack(rand(2, 8, 12, 3, seed=1), rand(2, 8, 12, seed=2), background=rand(2, 8, 12, 3, seed=3),
                         blended=rand(2, 8, 12, 3, seed=4), include_mask_layer=True)
    assert s.names == ["background", "foreground", "blended", "mask"]
    assert [layer.visible for layer in s.layers] == [True, True, False, False]
    assert (s.batch_size, s.height, s.width) == (2, 8, 12)
    assert torch.equal(s.get("mask").rgb[..., 1], s.get("foreground").alpha)
    with pytest.raises(LayerStackError, match=r"no layer named 'fg'.*\['background', 'foreground'"):
        s.get("fg")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LayerStack(()), "at least one layer"),
        (lambda: LayerStack((make_layer("a", torch.zeros(1, 4, 4, 3)), make_layer("a", torch.zeros(1, 4, 4, 3)))),
         r"unique, got \['a'\]"),
        (lambda: LayerStack((make_layer("a", torch.zeros(1, 4, 4, 3)), make_layer("b", torch.zeros(1, 4, 5, 3)))),
         r"layer 'a' has \[1, 4, 4\], layer 'b' has \[1, 4, 5\]"),
        (lambda: Layer("a", torch.zeros(1, 4, 4, 3, dtype=torch.float64), torch.zeros(1, 4, 4)), "rgb expected"),
        (lambda: Layer("a", torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 5)), r"alpha expected .*\[1, 4, 4\]"),
        (lambda: make_layer(" ", torch.zeros(1, 4, 4, 3)), "non-empty"),
        (lambda: make_layer("x" * 256, torch.zeros(1, 4, 4, 3)), "at most 255"),
    ],
)
def test_invalid_stacks_are_refused_with_a_clear_message(make, message):
    with pytest.raises(LayerStackError, match=message):
        make()


def test_make_layer_clamps_and_moves_to_float32_cpu():
    layer = make_layer("x", torch.tensor([[[[1.5, -0.2, 0.5]]]], dtype=torch.float64))
    assert layer.rgb.dtype == torch.float32 and layer.rgb.tolist() == [[[[1.0, 0.0, 0.5]]]]
    assert layer.alpha.tolist() == [[[1.0]]]


def test_stacks_are_immutable_values():
    base = LayerStack((make_layer("a", torch.zeros(1, 2, 2, 3)),))
    grown = base.with_layer_on_top(make_layer("b", torch.ones(1, 2, 2, 3)))
    assert base.names == ["a"] and grown.names == ["a", "b"]
    with pytest.raises(AttributeError):
        base.layers = ()


def test_batch_item_takes_one_picture_of_every_layer():
    s = text2layer_stack(rand(3, 4, 5, 3, seed=1), rand(3, 4, 5, seed=2), background=rand(3, 4, 5, 3, seed=3))
    one = s.batch_item(2)
    assert one.batch_size == 1 and one.names == s.names
    assert torch.equal(one.get("foreground").alpha[0], s.get("foreground").alpha[2])
    with pytest.raises(LayerStackError, match="outside 0..2"):
        s.batch_item(3)


def test_composite_is_text2layers_formula():
    fg, bg, m = rand(2, 16, 20, 3, seed=1), rand(2, 16, 20, 3, seed=2), rand(2, 16, 20, seed=3)
    m[:, :4] = 0.0  # pure background
    m[:, -4:] = 1.0  # pure foreground
    rgb, alpha = compositing.composite(text2layer_stack(fg, m, background=bg, blended=rand(2, 16, 20, 3, seed=4),
                                                        include_mask_layer=True))
    expected = m[..., None] * fg + (1 - m[..., None]) * bg
    assert torch.allclose(rgb, expected, atol=1e-6)
    assert torch.equal(alpha, torch.ones_like(alpha))
    assert torch.equal(rgb[:, :4], bg[:, :4]) and torch.allclose(rgb[:, -4:], fg[:, -4:], atol=1e-7)


def test_composite_matches_porter_duff_over_for_any_alphas():
    layers = [(rand(2, 8, 9, 3, seed=10 + i), rand(2, 8, 9, seed=20 + i)) for i in range(4)]
    layers[1][1][:, :2] = 0.0  # fully transparent regions in every layer at the top rows
    for _, a in layers:
        a[:, 0, :] = 0.0
    stack = LayerStack(tuple(make_layer(f"l{i}", rgb, a) for i, (rgb, a) in enumerate(layers)))
    rgb, alpha = compositing.composite(stack)
    ref_rgb, ref_alpha = reference_over(layers)
    assert np.abs(alpha.numpy() - ref_alpha).max() < 1e-6
    assert np.abs(rgb.numpy() - ref_rgb).max() < 1e-5
    assert torch.equal(rgb[:, 0], torch.zeros_like(rgb[:, 0]))  # nothing covers row 0: transparent black


def test_over_is_associative():
    (a, aa), (b, ba), (c, ca) = [(rand(1, 6, 6, 3, seed=s), rand(1, 6, 6, seed=s + 1)) for s in (1, 3, 5)]
    left = compositing.over(*compositing.over(a, aa, b, ba), c, ca)
    right = compositing.over(a, aa, *compositing.over(b, ba, c, ca))
    assert torch.allclose(left[0], right[0], atol=1e-5) and torch.allclose(left[1], right[1], atol=1e-6)


def test_hidden_layers_do_not_enter_the_composite():
    fg, m, bg = rand(1, 5, 5, 3, seed=1), rand(1, 5, 5, seed=2), rand(1, 5, 5, 3, seed=3)
    plain = compositing.composite(text2layer_stack(fg, m, background=bg))
    with_hidden = compositing.composite(text2layer_stack(fg, m, background=bg, blended=torch.ones(1, 5, 5, 3),
                                                         include_mask_layer=True))
    assert torch.equal(plain[0], with_hidden[0]) and torch.equal(plain[1], with_hidden[1])


def test_backdrops_and_flatten():
    board = compositing.backdrop("checkerboard", 64, 96)
    assert board.shape == (64, 96, 3)
    square = compositing.checker_square_size(64, 96)
    assert square == 4
    assert board[0, 0, 0] == compositing.CHECKER_DARK and board[0, square, 0] == compositing.CHECKER_LIGHT
    assert board[square, square, 0] == compositing.CHECKER_DARK
    rgb, a = torch.full((1, 64, 96, 3), 0.2), torch.zeros(1, 64, 96)
    a[:, :, :48] = 1.0
    white = compositing.flatten(rgb, a, "white")
    assert torch.allclose(white[:, :, :48], rgb[:, :, :48]) and torch.equal(white[:, :, 48:], torch.ones(1, 64, 48, 3))
    assert torch.equal(compositing.flatten(rgb, a, "black")[:, :, 48:], torch.zeros(1, 64, 48, 3))
    assert compositing.backdrop("checkerboard", 1024, 1024)[0, 63, 0] == compositing.CHECKER_DARK
    assert compositing.backdrop("checkerboard", 1024, 1024)[0, 64, 0] == compositing.CHECKER_LIGHT  # Forge's 64 px
    with pytest.raises(ValueError, match="backdrop"):
        compositing.backdrop("pink", 4, 4)

