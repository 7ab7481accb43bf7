"""The layer stack type, Porter-Duff compositing (Text2Layer's formula and general "over"), and the stack nodes."""

from __future__ import annotations

import pytest
import torch

from fixtures.rgba_images import rand
from layerstack.errors import LayerStackError
from layerstack.layer_stack.text2layer import text2layer_stack
from layerstack.nodes import stack as stack_nodes
from layerstack.nodes.common import MASK_IS_ALPHA, MASK_IS_LOADIMAGE


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

