"""Porter–Duff "over" on straight alpha, stack compositing, and the backdrops RGBA previews are shown on.

With straight colour C and alpha a (1 = opaque), top t over bottom b gives
    a_out = a_t + a_b·(1 − a_t)
    C_out = (C_t·a_t + C_b·a_b·(1 − a_t)) / a_out        (0 where a_out = 0)
For an opaque bottom this is Text2Layer's composite m·F + (1 − m)·B with m = a_t.
"""

from __future__ import annotations

import torch

from .stack import LayerStack

BACKDROPS = ("checkerboard", "black", "white", "grey")

# Forge's LayerDiffuse preview uses 0.45/0.55 squares of 64 px at 1024²; keeping its look (and its 1/16 of the short
# side) makes our previews comparable with the ones users already know.
CHECKER_DARK = 0.45
CHECKER_LIGHT = 0.55


def over(
    top_rgb: torch.Tensor, top_alpha: torch.Tensor, bottom_rgb: torch.Tensor, bottom_alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-alpha Porter–Duff "over": rgb [...,3] and alpha [...] in, the same out."""
    a_top = top_alpha.unsqueeze(-1)
    a_bottom = bottom_alpha.unsqueeze(-1)
    a_out = a_top + a_bottom * (1.0 - a_top)
    premultiplied = top_rgb * a_top + bottom_rgb * a_bottom * (1.0 - a_top)
    rgb = torch.where(a_out > 0, premultiplied / a_out.clamp_min(1e-12), torch.zeros_like(premultiplied))
    return rgb.clamp(0.0, 1.0), a_out.squeeze(-1).clamp(0.0, 1.0)


def composite(stack: LayerStack) -> tuple[torch.Tensor, torch.Tensor]:
    """The visible layers, bottom to top, each drawn "over" what lies below with alpha·opacity:
    (rgb [B,H,W,3], alpha [B,H,W])."""
    rgb = torch.zeros(stack.batch_size, stack.height, stack.width, 3)
    alpha = torch.zeros(stack.batch_size, stack.height, stack.width)
    for layer in stack.layers:
        if layer.visible:
            rgb, alpha = over(layer.rgb, layer.alpha * layer.opacity, rgb, alpha)
    return rgb, alpha


def checker_square_size(height: int, width: int) -> int:
    return max(4, round(min(height, width) / 16))


def backdrop(name: str, height: int, width: int) -> torch.Tensor:
    """An opaque [H,W,3] backdrop: checkerboard, black, white or grey."""
    if name == "checkerboard":
        square = checker_square_size(height, width)
        ys = torch.arange(height).div(square, rounding_mode="floor")
        xs = torch.arange(width).div(square, rounding_mode="floor")
        odd = (ys[:, None] + xs[None, :]) % 2 == 1
        value = torch.where(odd, torch.tensor(CHECKER_LIGHT), torch.tensor(CHECKER_DARK))
        return value.unsqueeze(-1).expand(height, width, 3).clone()
    solid = {"black": 0.0, "white": 1.0, "grey": 0.5}
    if name not in solid:
        raise ValueError(f"backdrop: expected one of {BACKDROPS}, got {name!r}")
    return torch.full((height, width, 3), solid[name])


def flatten(rgb: torch.Tensor, alpha: torch.Tensor, backdrop_name: str) -> torch.Tensor:
    """rgb [B,H,W,3] with alpha [B,H,W] drawn over an opaque backdrop: an RGB IMAGE [B,H,W,3]."""
    base = backdrop(backdrop_name, rgb.shape[1], rgb.shape[2]).to(rgb.dtype)
    a = alpha.unsqueeze(-1)
    return (rgb * a + base * (1.0 - a)).clamp(0.0, 1.0)
