"""Alpha tools for straight-alpha layers: premultiply, unpremultiply, colour extension, edge cleanup, resize.

Shapes follow ComfyUI: rgb [B,H,W,3] and alpha [B,H,W], float in [0,1], alpha 1 = opaque.

Why resizing needs care: resampling straight colour mixes in whatever colour sits under the transparent pixels
(often black or white), so the visible edge pixels come out darker or lighter (a halo). Here the transparent pixels
are first filled with colours extended from the visible ones (like LayerDiffuse's "padded RGB"), and then colour
and alpha are resampled with the same filter: every colour the filter can mix is a visible colour or a smooth
continuation of one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

RESIZE_METHODS = ("lanczos", "bicubic", "bilinear", "area", "nearest")


def premultiply(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return rgb * alpha.unsqueeze(-1)


def unpremultiply(premultiplied: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Straight colour from premultiplied colour; 0 where alpha is 0 (the colour there is lost)."""
    a = alpha.unsqueeze(-1)
    straight = premultiplied / a.clamp_min(1e-12)
    return torch.where(a > 0, straight, torch.zeros_like(straight)).clamp(0.0, 1.0)


def extend_colors(rgb: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Colours spread from where `weight` is high into where it is low, smoothly, by a pull-push pyramid.

    weight [B,H,W] in [0,1] says how much each pixel's colour is trusted. Pixels of weight 1 keep their colour;
    pixels of weight 0 get a smooth continuation of the nearest trusted colours. Pull: each coarser level holds the
    weighted mean colour of its 2x2 children and a trust of min(1, sum of their weights), so a cell with any trusted
    child is trusted (this is what keeps the continuation local instead of a wide average). Push: from the
    coarsest level down, fill = colour·trust + upsampled coarser fill·(1 − trust). The same idea as LayerDiffuse's
    padded RGB, tuned to follow the nearest visible colours. A picture with no trusted pixel gets black.
    """
    colors = rgb.movedim(-1, 1)
    trust = weight.clamp(0.0, 1.0).unsqueeze(1).to(colors.dtype)
    levels = [(colors, trust)]
    while min(levels[-1][1].shape[-2:]) > 1:
        c, w = levels[-1]
        h, wd = w.shape[-2:]
        size = ((h + 1) // 2, (wd + 1) // 2)
        mean_w = F.interpolate(w, size=size, mode="area")
        mean_cw = F.interpolate(c * w, size=size, mode="area")
        coarse_c = torch.where(mean_w > 0, mean_cw / mean_w.clamp_min(1e-12), torch.zeros_like(mean_cw))
        coarse_w = (mean_w * (h * wd) / (size[0] * size[1])).clamp(max=1.0)  # sum of the children's weights
        levels.append((coarse_c, coarse_w))

    fill = levels[-1][0] * (levels[-1][1] > 0)
    for c, w in reversed(levels[:-1]):
        fill = F.interpolate(fill, size=w.shape[-2:], mode="bilinear", align_corners=False)
        fill = c * w + fill * (1.0 - w)
    return fill.movedim(1, -1).clamp(0.0, 1.0)


def fill_transparent(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Every visible pixel (alpha > 0) keeps its straight colour; fully transparent pixels get extended colours."""
    extended = extend_colors(rgb, alpha)
    return torch.where(alpha.unsqueeze(-1) > 0, rgb, extended)


def clean_edge_colors(
    rgb: torch.Tensor, alpha: torch.Tensor, threshold: float = 0.9, strength: float = 1.0
) -> torch.Tensor:
    """Replace the colours of partly transparent pixels by colours extended from the solid interior.

    Edge pixels of a matte often carry the old background's colour (a fringe). Pixels with alpha >= threshold are
    trusted and kept; the others take the colour extended from the trusted ones (mixed with their own colour by
    strength: 1 = replaced, 0 = unchanged). The extended colour continues the nearby interior smoothly, so there is
    no step at the threshold. Pictures without any trusted pixel are returned unchanged.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"clean_edge_colors: threshold expected in (0, 1], got {threshold}")
    trusted = (alpha >= threshold).to(rgb.dtype)
    extended = extend_colors(rgb, trusted)
    mix = (strength * (1.0 - trusted)).unsqueeze(-1)
    cleaned = rgb + (extended - rgb) * mix
    has_trusted = trusted.flatten(1).amax(dim=1).view(-1, 1, 1, 1) > 0
    return torch.where(has_trusted, cleaned, rgb).clamp(0.0, 1.0)


def _resize_channels(x: torch.Tensor, height: int, width: int, method: str) -> torch.Tensor:
    """x [B,C,H,W] -> [B,C,height,width] with one resampling filter for every channel."""
    if method == "lanczos":
        # torch has no Lanczos; PIL resamples float ("F") images without 8-bit rounding.
        out = np.empty((x.shape[0], x.shape[1], height, width), dtype=np.float32)
        array = x.detach().cpu().numpy().astype(np.float32)
        for b in range(x.shape[0]):
            for c in range(x.shape[1]):
                image = Image.fromarray(array[b, c])  # float32 2-D -> mode "F"
                out[b, c] = np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))
        return torch.from_numpy(out).to(x.dtype)
    if method == "nearest":
        return F.interpolate(x, size=(height, width), mode="nearest-exact")
    if method == "area":
        return F.interpolate(x, size=(height, width), mode="area")
    if method in ("bilinear", "bicubic"):
        # Antialiasing only matters (and only exists in torch) when shrinking.
        shrinking = height < x.shape[-2] or width < x.shape[-1]
        return F.interpolate(x, size=(height, width), mode=method, align_corners=False, antialias=shrinking)
    raise ValueError(f"resize: method expected one of {RESIZE_METHODS}, got {method!r}")


def resize_rgba(
    rgb: torch.Tensor, alpha: torch.Tensor, height: int, width: int, method: str = "lanczos"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize straight RGBA without edge halos: fill transparent colours first, resample colour and alpha alike."""
    if height < 1 or width < 1:
        raise ValueError(f"resize: expected a positive size, got {height}x{width}")
    padded = fill_transparent(rgb, alpha)
    stacked = torch.cat([padded, alpha.unsqueeze(-1)], dim=-1).movedim(-1, 1)
    resized = _resize_channels(stacked, height, width, method).movedim(1, -1).clamp(0.0, 1.0)
    return resized[..., :3].contiguous(), resized[..., 3].contiguous()
