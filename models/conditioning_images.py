"""Condition images (foreground / background / blended layers) made ready for a VAE: grey composite, fit, encode.

Forge's behaviour (docs/FORMATS.md#condition-images): an RGBA condition is flattened onto 50 % grey, then fitted to the generation
size with one of three resize modes. Plain torch on ComfyUI IMAGE tensors ([B, H, W, C], float in [0, 1]); the only
ComfyUI object touched is the VAE passed in, so this module imports no ComfyUI code.
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F

from ..errors import node_error
from ..layer_vae.encode import composite_on_grey as on_grey


class ResizeMode(str, enum.Enum):
    """Forge's three ways to fit a condition image of another size (the strings are the combo values)."""

    CROP_AND_RESIZE = "crop and resize"  # cover the target, centre-crop the overflow
    JUST_RESIZE = "just resize"  # stretch to the target, aspect ratio not kept
    RESIZE_AND_FILL = "resize and fill"  # fit inside the target, fill the margins with the median border colour


RESIZE_MODE_NAMES: tuple[str, ...] = tuple(m.value for m in ResizeMode)


def composite_on_grey(image: torch.Tensor) -> torch.Tensor:
    """RGB of an IMAGE; an RGBA one is flattened over 50 % grey (straight alpha), as Forge's `rgba2rgbfp32`.

    Grey, not black or white, because the layer models were trained with transparent areas that read as neutral.
    """
    channels = image.shape[-1]
    if channels == 3:
        return image
    if channels != 4:
        raise ValueError(f"an IMAGE must have 3 (RGB) or 4 (RGBA) channels, got {channels}")
    return on_grey(image[..., :3], image[..., 3:4])


def fit_image_to_size(image: torch.Tensor, width: int, height: int, mode: ResizeMode | str) -> torch.Tensor:
    """An IMAGE [B, H, W, C] (any C) fitted to [B, height, width, C] by `mode`; unchanged if the size already fits."""
    mode = ResizeMode(mode)
    old_h, old_w = image.shape[1], image.shape[2]
    if (old_h, old_w) == (height, width):
        return image
    if mode is ResizeMode.JUST_RESIZE:
        return _resize(image, width, height)
    scale_h, scale_w = height / old_h, width / old_w
    if mode is ResizeMode.CROP_AND_RESIZE:
        scale = max(scale_h, scale_w)
        # max(..., target) guards rounding just below the target, which would leave a margin to crop from
        resized = _resize(image, max(round(old_w * scale), width), max(round(old_h * scale), height))
        top = (resized.shape[1] - height) // 2
        left = (resized.shape[2] - width) // 2
        return resized[:, top:top + height, left:left + width, :]
    scale = min(scale_h, scale_w)
    resized = _resize(image, min(round(old_w * scale), width), min(round(old_h * scale), height))
    canvas = _median_border_colour(image)[:, None, None, :].expand(-1, height, width, -1).clone()
    top = (height - resized.shape[1]) // 2
    left = (width - resized.shape[2]) // 2
    canvas[:, top:top + resized.shape[1], left:left + resized.shape[2], :] = resized
    return canvas


def encode_condition_image(vae, image: torch.Tensor, width: int, height: int, mode: ResizeMode | str,
                           *, node: str, input_name: str) -> torch.Tensor:
    """Raw VAE latent [B, 4, height/8, width/8] of a condition IMAGE: grey composite, fit, encode.

    `node`/`input_name` only name the culprit in errors.
    """
    if image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise node_error(node, input_name, "an IMAGE [batch, height, width, 3 or 4 channels]",
                         f"a tensor of shape {list(image.shape)}")
    if vae is None:
        raise node_error(node, "vae", f"a VAE to encode '{input_name}' (or give that layer as a LATENT instead)",
                         "nothing")
    pixels = fit_image_to_size(composite_on_grey(image), width, height, mode)
    return vae.encode(pixels)


def _resize(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    # Antialiased bicubic stands in for Forge's INTER_AREA (shrink) / LANCZOS4 (enlarge); overshoot is clipped.
    nchw = image.movedim(-1, 1).float()
    out = F.interpolate(nchw, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0).movedim(1, -1).to(image.dtype)


def _median_border_colour(image: torch.Tensor) -> torch.Tensor:
    """Per-image median colour of the outermost pixel ring, [B, C] (Forge's fill colour for resize-and-fill)."""
    border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=1)  # [B, 2W+2H, C]
    return border.median(dim=1).values
