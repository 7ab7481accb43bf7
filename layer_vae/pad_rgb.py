"""RGB padding for transparent images (docs/FORMATS.md#pad-rgb), in torch.

Colours under transparent pixels are replaced by smooth colours spread outward from the
visible ones: an alpha-weighted pyramid is built by area downscaling by 1/1.2 per level, then
filled coarse to fine (bilinear upsampling; each level keeps its own premultiplied colour and
adds the coarser fill where it is transparent). All LayerDiffuse models were trained on RGB
padded this way. Fully opaque pixels keep their colour exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PYRAMID_STEP = 1.2


def _area_matrix(size_in: int, size_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[size_out, size_in] weights of an exact area (box) resample: each output pixel averages
    the input span it covers, fractional pixels weighted by their covered length."""
    scale = size_in / size_out
    lo = torch.arange(size_out, dtype=torch.float64) * scale
    hi = lo + scale
    edges = torch.arange(size_in + 1, dtype=torch.float64)
    overlap = (torch.minimum(hi[:, None], edges[None, 1:]) - torch.maximum(lo[:, None], edges[None, :-1])).clamp_(min=0)
    return (overlap / scale).to(dtype=dtype, device=device)


def area_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area downscale of [B,C,H,W] to (height, width)."""
    rows = _area_matrix(x.shape[-2], height, x.dtype, x.device)
    cols = _area_matrix(x.shape[-1], width, x.dtype, x.device)
    return rows @ x @ cols.T


def alpha_pyramid(color: torch.Tensor, alpha: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Levels (premultiplied colour, alpha), coarsest first; the coarsest has a side of 1 px."""
    levels = []
    premultiplied = color * alpha
    while True:
        levels.append((premultiplied, alpha))
        h, w = alpha.shape[-2:]
        if min(h, w) == 1:
            break
        h, w = max(1, int(h / PYRAMID_STEP)), max(1, int(w / PYRAMID_STEP))
        premultiplied = area_resize(premultiplied, h, w)
        alpha = area_resize(alpha, h, w)
    return levels[::-1]


def pad_rgb(color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """color [B,3,H,W], alpha [B,1,H,W], both in [0,1] -> padded colour [B,3,H,W].

    An image with no visible pixel gets black (the alpha-weighted mean of nothing is 0).
    """
    color = color.float()
    alpha = alpha.float()
    levels = alpha_pyramid(color, alpha)
    top_color, top_alpha = levels[0]
    fill = top_color.sum(dim=(2, 3), keepdim=True) / top_alpha.sum(dim=(2, 3), keepdim=True).clamp(min=1e-8)
    for level_color, level_alpha in levels:
        size = level_color.shape[-2:]
        if fill.shape[-2:] != size:
            fill = F.interpolate(fill, size=size, mode="bilinear", align_corners=False)
        fill = level_color + fill * (1.0 - level_alpha)
    return fill
