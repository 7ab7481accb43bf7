"""The layer stack type, Porter-Duff compositing (Text2Layer's formula and general "over"), and the stack nodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerstack.errors import LayerStackError
from layerstack.layer_stack import compositing
from layerstack.layer_stack.stack import Layer, LayerStack, make_layer
from layerstack.layer_stack.text2layer import text2layer_stack
from layerstack.nodes import stack as stack_nodes
from layerstack.nodes.common import MASK_IS_ALPHA, MASK_IS_LOADIMAGE


def rand(*shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


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


# --- the type -------------------------------------------------------------------------------------------------------

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


# --- compositing ----------------------------------------------------------------------------------------------------

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


# --- nodes ----------------------------------------------------------------------------------------------------------

def test_text2layer_node_accepts_decode_outputs_and_loadimage_masks():
    fg, bg, alpha = rand(1, 8, 8, 3, seed=1), rand(1, 8, 8, 3, seed=2), rand(1, 8, 8, seed=3)
    node = stack_nodes.LayerStackFromText2Layer
    from_decode = node.execute(foreground=fg, mask=alpha, mask_meaning=MASK_IS_ALPHA,
                               include_mask_layer=False, background=bg)[0]
    from_load_image = node.execute(foreground=fg, mask=1 - alpha, mask_meaning=MASK_IS_LOADIMAGE,
                                   include_mask_layer=False, background=bg)[0]
    from_rgba = node.execute(foreground=torch.cat([fg, alpha[..., None]], -1),
                             mask_meaning=MASK_IS_ALPHA, include_mask_layer=True, background=bg)[0]
    assert torch.equal(from_decode.get("foreground").alpha, alpha)
    assert torch.allclose(from_load_image.get("foreground").alpha, alpha, atol=1e-7)
    assert torch.equal(from_rgba.get("foreground").alpha, alpha) and from_rgba.names[-1] == "mask"


def test_text2layer_node_repeats_a_single_background_over_the_batch():
    out = stack_nodes.LayerStackFromText2Layer.execute(
        foreground=rand(3, 8, 8, 3, seed=1), mask=rand(3, 8, 8, seed=2), mask_meaning=MASK_IS_ALPHA,
        include_mask_layer=False, background=rand(1, 8, 8, 3, seed=3))[0]
    assert out.batch_size == 3
    assert torch.equal(out.get("background").rgb[0], out.get("background").rgb[2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"foreground": torch.zeros(1, 8, 8, 3)}, r"input 'mask' expected a MASK, or an RGBA"),
        ({"foreground": torch.zeros(1, 8, 8, 4), "mask": torch.zeros(1, 8, 8)}, r"input 'mask' expected no MASK"),
        ({"foreground": torch.zeros(1, 8, 8, 3), "mask": torch.zeros(1, 8, 9)}, r"input 'mask' expected height x width 8x8 \(the size of 'foreground'\), got 8x9"),
        ({"foreground": torch.zeros(1, 8, 8, 3), "mask": torch.zeros(1, 8, 8), "background": torch.zeros(1, 4, 8, 3)},
         r"input 'background' expected height x width 8x8 \(the size of 'foreground'\), got 4x8"),
        ({"foreground": torch.zeros(2, 8, 8, 3), "mask": torch.zeros(2, 8, 8), "background": torch.zeros(3, 8, 8, 3)},
         r"input 'foreground' expected batch size 1 or 3 \(the batch size of 'background'\), got 2"),
        ({"foreground": torch.zeros(8, 8, 3), "mask": torch.zeros(8, 8)}, r"input 'foreground' expected an IMAGE of shape \[batch, height, width, 3 or 4\], got shape \[8, 8, 3\]"),
    ],
)
def test_text2layer_node_names_the_bad_input(kwargs, message):
    with pytest.raises(LayerStackError, match=r"LayerStackFromText2Layer: " + message):
        stack_nodes.LayerStackFromText2Layer.execute(mask_meaning=MASK_IS_ALPHA, include_mask_layer=False,
                                                     **kwargs)


def test_add_layer_chains_into_a_stack_and_checks_it():
    add = stack_nodes.LayerStackAddLayer.execute
    first = add(image=rand(1, 6, 7, 3, seed=1), mask_meaning=MASK_IS_ALPHA, name="paper", visible=True)[0]
    assert first.names == ["paper"] and torch.equal(first.layers[0].alpha, torch.ones(1, 6, 7))
    second = add(stack=first, image=rand(2, 6, 7, 4, seed=2), mask_meaning=MASK_IS_ALPHA, name="ink",
                 visible=False)[0]
    assert second.names == ["paper", "ink"] and second.batch_size == 2 and not second.layers[1].visible
    assert first.names == ["paper"]  # the input stack is untouched
    with pytest.raises(LayerStackError, match=r"LayerStackAddLayer: input 'name' expected a name not already"):
        add(stack=second, image=rand(1, 6, 7, 3, seed=3), mask_meaning=MASK_IS_ALPHA, name="ink",
            visible=True)
    with pytest.raises(LayerStackError, match=r"input 'image' expected height x width 6x7 \(the stack's size\)"):
        add(stack=second, image=rand(1, 7, 6, 3, seed=3), mask_meaning=MASK_IS_ALPHA, name="x",
            visible=True)
    with pytest.raises(LayerStackError, match=r"input 'image' expected batch size 1 or 2"):
        add(stack=second, image=rand(3, 6, 7, 3, seed=3), mask_meaning=MASK_IS_ALPHA, name="x",
            visible=True)
    with pytest.raises(LayerStackError, match=r"input 'stack' expected a LAYER_STACK, got a Tensor"):
        add(stack=torch.zeros(1), image=rand(1, 6, 7, 3, seed=3), mask_meaning=MASK_IS_ALPHA, name="x",
            visible=True)


def test_composite_and_get_layer_nodes():
    fg, m, bg = rand(2, 8, 8, 3, seed=1), rand(2, 8, 8, seed=2), rand(2, 8, 8, 3, seed=3)
    s = text2layer_stack(fg, m, background=bg)
    image, alpha = stack_nodes.LayerStackComposite.execute(stack=s).result
    assert image.shape == (2, 8, 8, 3) and alpha.shape == (2, 8, 8)
    assert torch.allclose(image, m[..., None] * fg + (1 - m[..., None]) * bg, atol=1e-6)
    layer_rgb, layer_alpha = stack_nodes.LayerStackGetLayer.execute(stack=s, name="foreground").result
    assert torch.equal(layer_rgb, fg) and torch.equal(layer_alpha, m)
    with pytest.raises(LayerStackError, match=r"LayerStackGetLayer: input 'name' expected one of the stack's layer "
                                              r"names \['background', 'foreground'\], got 'blended'"):
        stack_nodes.LayerStackGetLayer.execute(stack=s, name="blended")


def test_preview_node_shows_composite_then_layers(comfy_host, tmp_path, monkeypatch):
    import folder_paths

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path))
    s = text2layer_stack(rand(2, 8, 8, 3, seed=1), rand(2, 8, 8, seed=2), background=rand(2, 8, 8, 3, seed=3))
    out = stack_nodes.LayerStackPreview.execute(stack=s, backdrop="checkerboard")
    images = out.ui.as_dict()["images"]
    assert len(images) == 2 * 3  # per picture: composite, foreground, background
    assert all((tmp_path / i["subfolder"] / i["filename"]).is_file() for i in images)


def test_node_schemas_validate(comfy_host):
    for node in stack_nodes.NODES:
        info = node.GET_NODE_INFO_V1()
        assert info["category"].startswith("LayerStack")
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node.__name__}.{name} has no tooltip"
