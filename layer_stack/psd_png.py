"""Layered PSD and RGBA PNG encoding of stacks and straight-alpha images (8 bits per channel).

PSD: one pixel layer per stack layer, bottom first, with the layer's name, opacity, visibility and alpha as the
layer's transparency channel. Each layer holds only the box around its visible pixels, placed at that box's offset
(docs/FORMATS.md#psd); a layer with no visible pixel keeps the full canvas. The merged image is the composite of the visible layers:
psd-tools renders it from the layers on save (Porter–Duff "over" for normal layers, the same as compositing.py) and
stores it the way Photoshop does (matted on white, with the composite's alpha flagged by the 'Mtrn' block), so
viewers and thumbnails that read only the merged image see the composite with its transparency.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from psd_tools import PSDImage
from psd_tools.api.layers import PixelLayer
from psd_tools.constants import Tag

from .stack import LayerStack


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[0,1] floats to 8 bits, rounded to nearest (so a read-back differs by at most half a step)."""
    return np.rint(x.detach().cpu().clamp(0.0, 1.0).numpy() * 255.0).astype(np.uint8)


def rgba_image(rgb: torch.Tensor, alpha: torch.Tensor) -> Image.Image:
    """One picture: rgb [H,W,3] + alpha [H,W] (straight, 1 = opaque) as an 8-bit PIL RGBA image."""
    return Image.fromarray(to_uint8(torch.cat([rgb, alpha.unsqueeze(-1)], dim=-1)))


def content_box(alpha: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels of alpha [H,W] that are visible at 8 bits; the whole picture when
    none is (editors handle empty layers differently, a full transparent one everywhere the same)."""
    visible = torch.from_numpy(to_uint8(alpha) > 0)
    rows, cols = visible.any(dim=1).nonzero(), visible.any(dim=0).nonzero()
    if rows.numel() == 0:
        return 0, 0, alpha.shape[0], alpha.shape[1]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def cropped_layers(stack: LayerStack, index: int):
    """(layer, 8-bit RGBA PIL image of its content box, top, left) per layer of picture `index`, bottom first."""
    for layer in stack.layers:
        top, left, bottom, right = content_box(layer.alpha[index])
        crop = rgba_image(layer.rgb[index, top:bottom, left:right], layer.alpha[index, top:bottom, left:right])
        yield layer, crop, top, left


def psd_document(stack: LayerStack, index: int) -> PSDImage:
    """The PSD document of picture `index` of the stack."""
    document = PSDImage.new("RGBA", (stack.width, stack.height))
    for layer, image, top, left in cropped_layers(stack, index):
        pixel_layer = PixelLayer.frompil(image, document, top=top, left=left)
        pixel_layer.opacity = round(layer.opacity * 255)
        # The setter writes the Unicode name block, with a legacy name fallback for names MacRoman cannot hold.
        pixel_layer.name = layer.name
        pixel_layer.visible = layer.visible
        document.append(pixel_layer)
    # Without this block psd-tools (like Photoshop) treats the merged image's fourth channel as a spare channel
    # and writes no composite transparency.
    document.tagged_blocks.set_data(Tag.SAVING_MERGED_TRANSPARENCY)
    return document


def write_psd(stack: LayerStack, index: int, out: BinaryIO) -> None:
    psd_document(stack, index).save(out)


def psd_bytes(stack: LayerStack, index: int) -> bytes:
    buffer = io.BytesIO()
    write_psd(stack, index, buffer)
    return buffer.getvalue()


def write_rgba_png(
    rgb: torch.Tensor, alpha: torch.Tensor, out: BinaryIO, text: Mapping[str, str] | None = None, compress_level: int = 4
) -> None:
    """One picture as an RGBA PNG (straight alpha, the PNG convention) with optional tEXt chunks."""
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    rgba_image(rgb, alpha).save(out, format="PNG", pnginfo=info, compress_level=compress_level)
