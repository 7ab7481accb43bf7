"""Transparent encode (docs/FORMATS.md#encode): an RGBA image -> a latent the transparent decoder
turns back into the same RGBA.

The ordinary VAE encodes the image composited on mid-grey (in the VAE's [-1, 1] range that is
``(2 * rgb - 1) * alpha``, the Flux reference's premultiplied input too); the offset encoder reads
alpha + padded RGB and moves the VAE posterior mean by ``std * offset * multiplier``.
"""

from __future__ import annotations

import torch

from .pad_rgb import pad_rgb

# Background the ordinary VAE sees under transparent pixels (0 in the VAE's [-1, 1] range).
GREY = 0.5


def composite_on_grey(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Straight-alpha colour over mid-grey, the neutral background LayerDiffuse models read transparency as.

    Any layout: ``alpha`` broadcasts against ``rgb`` (e.g. [B,3,H,W] with [B,1,H,W], or [B,H,W,3] with [B,H,W,1]),
    all in [0,1] (docs/FORMATS.md#encode, #condition-images).
    """
    return GREY + (rgb - GREY) * alpha


def offset_encoder_input(rgb: torch.Tensor, alpha: torch.Tensor, alpha_last: bool = False) -> torch.Tensor:
    """[B,4,H,W] = [alpha, padded R, G, B], the order the SD1.5/SDXL offset encoders were trained on;
    ``alpha_last`` gives [padded R, G, B, alpha], the Flux encoder's order."""
    parts = [alpha.float(), pad_rgb(rgb, alpha)]
    return torch.cat(parts[::-1] if alpha_last else parts, dim=1)


def offset_latent(mean: torch.Tensor, std: torch.Tensor, offset: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
    """Raw latent = posterior mean + posterior std * offset * multiplier (no sampling)."""
    if offset.shape != mean.shape:
        raise ValueError(f"offset {list(offset.shape)} does not match the VAE latent {list(mean.shape)}")
    return mean + std * offset.to(mean.dtype) * multiplier
