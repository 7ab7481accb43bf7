"""Splitting an image by a mask into a foreground layer and a background layer, without a halo.

A pixel on a soft edge is a mix I = α·F + (1 − α)·B of the object's colour F and the background's colour B. Cutting
the image out with α alone keeps I as the foreground colour, so the old background shows as a fringe wherever the
cut-out is placed. The split here estimates F and B at such pixels with blur-fusion (Forte and Pitié, "Approximate
Fast Foreground Colour Estimation", ICIP 2021; docs/FORMATS.md#foreground-estimation): local alpha-weighted means
of the foreground and background colours, corrected so the compositing equation holds, run twice (a wide window,
then a narrow one that starts from the first result). It is a few box filters, so it runs at any size on CPU or
GPU in plain torch and needs no new dependency.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .stack import BACKGROUND, FOREGROUND, LayerStack, make_layer

# The window sizes of the two passes, in pixels (the method's published settings).
WIDE_WINDOW = 91
NARROW_WINDOW = 7
EPSILON = 1e-5


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """x [B,C,H,W] averaged over a size×size window around each pixel; at the borders over the part inside the
    picture. Summed-area tables make the cost independent of the window size."""
    r = size // 2

    def window_sums(t: torch.Tensor) -> torch.Tensor:
        padded = F.pad(t, (r + 1, r, r + 1, r))
        table = padded.cumsum(-1).cumsum(-2)
        h, w = t.shape[-2:]
        return (table[..., size:, size:] - table[..., :h, size:] - table[..., size:, :w] + table[..., :h, :w])

    ones = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
    return window_sums(x) / window_sums(ones)


def _blur_fusion_pass(image, foreground, background, alpha, size):
    """One pass on [B,C,H,W] colours and [B,1,H,W] alpha; returns the new (foreground, background) estimates."""
    mean_alpha = box_mean(alpha, size)
    local_f = box_mean(foreground * alpha, size) / (mean_alpha + EPSILON)
    local_b = box_mean(background * (1 - alpha), size) / (1 - mean_alpha + EPSILON)
    # Move the local foreground colour along the residual of the compositing equation, in proportion to alpha.
    residual = image - alpha * local_f - (1 - alpha) * local_b
    return (local_f + alpha * residual).clamp(0, 1), local_b.clamp(0, 1)


def estimate_colors(rgb: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground and background colours [B,H,W,3] for an image rgb [B,H,W,3] and its foreground alpha [B,H,W].

    Where alpha is 1 the foreground is the image; where it is 0 the background is. Computed in float64 so the
    summed-area tables of large pictures stay exact enough.
    """
    image = rgb.movedim(-1, 1).double()
    a = alpha.unsqueeze(1).double()
    fg, bg = _blur_fusion_pass(image, image, image, a, WIDE_WINDOW)
    fg, bg = _blur_fusion_pass(image, fg, bg, a, NARROW_WINDOW)
    fg = torch.where(a >= 1, image, fg)
    bg = torch.where(a <= 0, image, bg)
    return fg.movedim(1, -1).to(rgb.dtype), bg.movedim(1, -1).to(rgb.dtype)


def split_by_mask(
    rgb: torch.Tensor, alpha: torch.Tensor, estimate: bool = True, hole_threshold: float = 1.0
) -> LayerStack:
    """[background, foreground]: the foreground has the mask as alpha and (with `estimate`) estimated colours; the
    background has estimated colours on the edge and a hole (alpha 0) where alpha >= hole_threshold.

    Without `estimate` both layers keep the image's own colours (the naive cut). With hole_threshold 1 the hole is
    exactly where the foreground is opaque, so the foreground over the background gives back the image up to the
    estimate's error on the edge.
    """
    if not 0.0 < hole_threshold <= 1.0:
        raise ValueError(f"split_by_mask: hole_threshold expected in (0, 1], got {hole_threshold}")
    fg, bg = estimate_colors(rgb, alpha) if estimate else (rgb, rgb)
    hole = alpha >= hole_threshold
    return LayerStack((
        make_layer(BACKGROUND, bg, (~hole).to(alpha.dtype)),
        make_layer(FOREGROUND, fg, alpha),
    ))
