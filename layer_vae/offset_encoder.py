"""LatentTransparencyOffsetEncoder: alpha + padded RGB -> a latent offset (docs/FORMATS.md#offset-encoder-architecture).

18 tensors, 1,181,764 parameters; loads the official SD1.5 and SDXL encoder files strictly. With
``latent_channels=16`` it is the Flux encoder (docs/FORMATS.md#flux): only the last conv differs.
"""

from __future__ import annotations

import torch
from torch import nn

# (in, out, stride) of the nine 3x3 convs; SiLU between them, none after the last.
CONVS = (
    (4, 32, 1),
    (32, 32, 1),
    (32, 64, 2),
    (64, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 4, 1),  # out = latent channels
)
# Spatial reduction of the encoder: matches the SD VAE's latent grid.
DOWNSCALE = 8


class LatentTransparencyOffsetEncoder(nn.Module):
    def __init__(self, ops=nn, latent_channels: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout, stride) in enumerate(CONVS):
            if i == len(CONVS) - 1:
                cout = latent_channels
            if i > 0:
                layers.append(nn.SiLU())
            layers.append(ops.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1))
        self.blocks = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B,4,H,W] alpha + padded RGB in [0,1] (order per family) -> offset [B,C,H/8,W/8]."""
        return self.blocks(x)
