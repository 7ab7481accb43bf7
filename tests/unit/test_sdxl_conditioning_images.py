"""Condition images: grey composite, the three resize modes, VAE encoding (models/conditioning_images.py)."""

from __future__ import annotations

import pytest
import torch

from layerstack.errors import LayerStackError
from layerstack.models.conditioning_images import (
    ResizeMode,
    composite_on_grey,
    encode_condition_image,
    fit_image_to_size,
)


def test_composite_on_grey_flattens_straight_alpha_over_half_grey():
    rgba = torch.tensor([[[[1.0, 0.0, 0.2, 1.0], [1.0, 0.0, 0.2, 0.0], [1.0, 0.0, 0.2, 0.5]]]])  # [1, 1, 3, 4]
    rgb = composite_on_grey(rgba)
    assert rgb.shape == (1, 1, 3, 3)
    torch.testing.assert_close(rgb[0, 0, 0], torch.tensor([1.0, 0.0, 0.2]))  # opaque: unchanged
    torch.testing.assert_close(rgb[0, 0, 1], torch.tensor([0.5, 0.5, 0.5]))  # transparent: grey
    torch.testing.assert_close(rgb[0, 0, 2], torch.tensor([0.75, 0.25, 0.35]))  # half: halfway


def test_composite_on_grey_passes_rgb_through_and_rejects_other_channel_counts():
    rgb = torch.rand(2, 4, 4, 3)
    assert composite_on_grey(rgb) is rgb
    with pytest.raises(ValueError, match="3 \\(RGB\\) or 4 \\(RGBA\\) channels, got 2"):
        composite_on_grey(torch.rand(1, 4, 4, 2))


def _quadrants(height: int, width: int) -> torch.Tensor:
    """Left half black, right half white: where the edge lands shows how the image was scaled and cropped."""
    image = torch.zeros(1, height, width, 3)
    image[:, :, width // 2:, :] = 1.0
    return image


def test_fit_keeps_an_image_of_the_right_size_untouched():
    image = torch.rand(1, 16, 24, 3)
    for mode in ResizeMode:
        assert fit_image_to_size(image, 24, 16, mode) is image


def test_just_resize_stretches_to_the_target():
    image = _quadrants(16, 64)
    out = fit_image_to_size(image, 32, 32, "just resize")
    assert out.shape == (1, 32, 32, 3)
    assert out[0, :, :12].max() < 0.05 and out[0, :, 20:].min() > 0.95  # halves stay halves, only squeezed


def test_crop_and_resize_covers_the_target_and_crops_the_centre():
    # 16 x 64 (wide) into 32 x 32: scale 2 -> 32 x 128, centre crop keeps columns 48..80 of 128, i.e. the middle,
    # where the black/white edge sits at column 16 of the crop.
    image = _quadrants(16, 64)
    out = fit_image_to_size(image, 32, 32, ResizeMode.CROP_AND_RESIZE)
    assert out.shape == (1, 32, 32, 3)
    assert out[0, :, :14].max() < 0.05 and out[0, :, 18:].min() > 0.95


def test_resize_and_fill_fits_inside_and_fills_with_the_median_border_colour():
    image = torch.full((2, 16, 64, 3), 0.25)
    image[1] = 0.75
    image[:, 6:10, 30:34, :] = 1.0  # an inner detail that must not decide the fill colour
    out = fit_image_to_size(image, 32, 32, "resize and fill")
    assert out.shape == (2, 32, 32, 3)
    # scale 0.5 -> 8 x 32, centred vertically: rows 12..20 hold the image, the rest is the per-image fill colour
    torch.testing.assert_close(out[0, :12], torch.full((12, 32, 3), 0.25))
    torch.testing.assert_close(out[1, 20:], torch.full((12, 32, 3), 0.75))
    assert out[0, 12:20].max() > 0.5  # the detail survived inside the fitted area


def test_fit_handles_rgba_and_rejects_unknown_modes():
    image = torch.rand(1, 10, 20, 4)
    assert fit_image_to_size(image, 16, 16, "crop and resize").shape == (1, 16, 16, 4)
    with pytest.raises(ValueError, match="not a valid ResizeMode"):
        fit_image_to_size(image, 16, 16, "stretch")


class _RecordingVae:
    """Stands in for comfy.sd.VAE: records the pixels it is given, returns a latent of the usual shape."""

    def __init__(self):
        self.pixels = None

    def encode(self, pixels):
        self.pixels = pixels
        return torch.zeros(pixels.shape[0], 4, pixels.shape[1] // 8, pixels.shape[2] // 8)


def test_encode_condition_image_composites_then_fits_then_encodes():
    vae = _RecordingVae()
    rgba = torch.zeros(1, 32, 48, 4)  # fully transparent: must reach the VAE as pure grey
    latent = encode_condition_image(vae, rgba, 64, 64, "crop and resize", node="N", input_name="foreground")
    assert latent.shape == (1, 4, 8, 8)
    assert vae.pixels.shape == (1, 64, 64, 3)
    torch.testing.assert_close(vae.pixels, torch.full((1, 64, 64, 3), 0.5))


def test_encode_condition_image_errors_name_node_and_input():
    with pytest.raises(LayerStackError, match="N: input 'vae' expected a VAE to encode 'background'"):
        encode_condition_image(None, torch.rand(1, 8, 8, 3), 8, 8, "just resize", node="N", input_name="background")
    with pytest.raises(LayerStackError, match=r"N: input 'background' expected an IMAGE .*got a tensor of shape \[8, 8\]"):
        encode_condition_image(_RecordingVae(), torch.rand(8, 8), 8, 8, "just resize", node="N",
                               input_name="background")
