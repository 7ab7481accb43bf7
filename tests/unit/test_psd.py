"""PSD files written from stacks, read back with psd-tools (and the merged image with Pillow).

Pillow's layer reader is not used: it assumes channel data padded to even lengths, which the format does not
require. test_psd_spec.py reads the layers with a reader written from the specification instead.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from psd_tools import PSDImage

from fixtures.rgba_images import rgba_picture
from layerstack.layer_stack import compositing, psd_png
from layerstack.layer_stack.stack import LayerStack, make_layer
from layerstack.layer_stack.text2layer import text2layer_stack

HALF_STEP = 0.5 / 255 + 1e-6  # 8-bit rounding


def sample_stack(batch: int = 1, height: int = 48, width: int = 64) -> LayerStack:
    """Background, anti-aliased foreground, a semi-transparent wash, a hidden blended layer and a hidden mask."""
    g = torch.Generator().manual_seed(7)
    fg, alpha, _ = rgba_picture(height, width, soft=True, junk="noise")
    wash_alpha = torch.zeros(batch, height, width)
    wash_alpha[:, height // 3 :, : width // 2] = 0.35
    stack = text2layer_stack(
        fg.expand(batch, -1, -1, -1), alpha.expand(batch, -1, -1), background=torch.rand(batch, height, width, 3,
                                                                                           generator=g),
        blended=torch.rand(batch, height, width, 3, generator=g), include_mask_layer=True,
    )
    wash = make_layer("Lasur – wash ü", torch.rand(batch, height, width, 3, generator=g), wash_alpha, opacity=0.6)
    return LayerStack(stack.layers[:2] + (wash,) + stack.layers[2:])


def test_psd_layers_read_back_with_names_order_opacity_offsets_and_pixels():
    stack = sample_stack(batch=2)
    for index in range(stack.batch_size):
        psd = PSDImage.open(io.BytesIO(psd_png.psd_bytes(stack, index)))
        assert (psd.width, psd.height) == (stack.width, stack.height)
        assert [layer.name for layer in psd] == stack.names  # bottom to top in both
        assert [layer.visible for layer in psd] == [layer.visible for layer in stack.layers]
        assert [layer.opacity for layer in psd] == [255, 255, 153, 255, 255]
        for psd_layer, layer in zip(psd, stack.layers):
            assert psd_layer.kind == "pixel"
            expected = layer.rgba()[index].numpy()
            visible = np.argwhere(psd_png.to_uint8(layer.alpha[index]) > 0)
            (top, left), (bottom, right) = visible.min(axis=0), visible.max(axis=0) + 1
            # Each layer holds the box around its visible pixels, at that box's offset.
            assert (psd_layer.offset, psd_layer.size) == ((left, top), (right - left, bottom - top)), layer.name
            pixels = np.zeros_like(expected)
            pixels[top:bottom, left:right] = psd_layer.numpy()  # straight RGBA as stored
            assert np.abs(pixels[..., 3] - expected[..., 3]).max() <= HALF_STEP, layer.name
            assert np.abs(pixels - expected)[top:bottom, left:right].max() <= HALF_STEP, layer.name
    assert stack.layers[1].alpha.amin() == 0 and psd[1].size != (stack.width, stack.height)  # cropping happened


def test_a_layer_without_visible_pixels_keeps_the_full_canvas():
    stack = LayerStack((make_layer("empty", torch.rand(1, 6, 9, 3), torch.full((1, 6, 9), 0.001)),))
    psd = PSDImage.open(io.BytesIO(psd_png.psd_bytes(stack, 0)))
    assert (psd[0].offset, psd[0].size) == ((0, 0), (9, 6))


def test_psd_merged_image_is_the_composite():
    stack = sample_stack()
    rgb, alpha = compositing.composite(stack)
    psd = PSDImage.open(io.BytesIO(psd_png.psd_bytes(stack, 0)))
    merged = np.asarray(psd.topil(), dtype=np.float64) / 255  # psd-tools undoes the white matte
    assert merged.shape == (stack.height, stack.width, 4)
    assert np.abs(merged[..., 3] - alpha[0].numpy()).max() <= 1 / 255
    assert np.abs(merged[..., :3] - rgb[0].numpy()).max() <= 1.5 / 255  # composited from 8-bit layers


def test_psd_merged_transparency_when_nothing_is_opaque():
    fg, alpha, _ = rgba_picture(32, 40, soft=True)
    stack = LayerStack((make_layer("only", fg, alpha),))
    data = psd_png.psd_bytes(stack, 0)
    merged = np.asarray(PSDImage.open(io.BytesIO(data)).topil(), dtype=np.float64) / 255
    assert np.abs(merged[..., 3] - alpha[0].numpy()).max() <= 1 / 255
    # Pillow reads the stored merged image as is: colours matted on white, as Photoshop stores them.
    with Image.open(io.BytesIO(data)) as im:
        stored = np.asarray(im.convert("RGBA"), dtype=np.float64) / 255
    on_white = compositing.flatten(fg, alpha, "white")[0].numpy()
    covered = alpha[0].numpy() > 0  # psd-tools leaves the colour of fully transparent pixels as composited (0)
    assert np.abs(stored[..., :3] - on_white)[covered].max() <= 1.5 / 255
    assert np.abs(stored[..., 3] - alpha[0].numpy()).max() <= 1 / 255


@pytest.mark.parametrize("name", ["Vordergrund – ü", "前景", "x" * 255])
def test_layer_names_survive(name):
    stack = LayerStack((make_layer(name, torch.rand(1, 4, 4, 3)),))
    psd = PSDImage.open(io.BytesIO(psd_png.psd_bytes(stack, 0)))
    assert [layer.name for layer in psd] == [name]
