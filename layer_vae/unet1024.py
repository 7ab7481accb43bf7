"""UNet1024: the LayerDiffuse transparent decoder (RGB + latent -> alpha + RGB).

Same architecture and state-dict keys as the reference ``UNet1024(in_channels=3, out_channels=4)``
(docs/FORMATS.md#decoder): 538 tensors, 104,104,804 parameters; loads the official SD1.5 and SDXL
decoder files strictly. With ``latent_channels=16`` it is the Flux decoder (docs/FORMATS.md#flux):
only ``latent_conv_in`` differs (104,105,572 parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import NORM_EPS, NORM_GROUPS, DownBlock, MidBlock, UpBlock

BLOCK_CHANNELS = (32, 32, 64, 128, 256, 512, 512)
ATTENTION_DOWN = (False, False, False, False, True, True, True)
LATENT_CHANNELS = 4  # SD1.5/SDXL; Flux latents have 16
# The latent joins the image features after this many down blocks (at 1/8 resolution).
LATENT_INJECT_AFTER = 3
# Inputs must be multiples of this (six stride-2 stages).
SIZE_MULTIPLE = 64


class UNet1024(nn.Module):
    def __init__(self, in_channels: int = 3, out_channels: int = 4, ops=nn, latent_channels: int = LATENT_CHANNELS):
        super().__init__()
        ch = BLOCK_CHANNELS
        self.conv_in = ops.Conv2d(in_channels, ch[0], kernel_size=3, padding=1)
        self.latent_conv_in = ops.Conv2d(latent_channels, ch[LATENT_INJECT_AFTER - 1], kernel_size=1)

        skip_channels = [ch[0]]
        self.down_blocks = nn.ModuleList()
        prev = ch[0]
        for i, out in enumerate(ch):
            last = i == len(ch) - 1
            self.down_blocks.append(DownBlock(prev, out, attention=ATTENTION_DOWN[i], downsample=not last, ops=ops))
            skip_channels += [out] * (2 if last else 3)
            prev = out

        self.mid_block = MidBlock(ch[-1], ops)

        self.up_blocks = nn.ModuleList()
        for i, out in enumerate(reversed(ch)):
            popped = [skip_channels.pop() for _ in range(3)]
            self.up_blocks.append(
                UpBlock(
                    prev,
                    out,
                    popped,
                    attention=ATTENTION_DOWN[len(ch) - 1 - i],
                    upsample=i < len(ch) - 1,
                    ops=ops,
                )
            )
            prev = out

        self.conv_norm_out = ops.GroupNorm(NORM_GROUPS, ch[0], eps=NORM_EPS, affine=True)
        self.conv_out = ops.Conv2d(ch[0], out_channels, kernel_size=3, padding=1)

    def forward(self, pixel: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """pixel: [B,3,H,W] in [0,1] (ordinary VAE decode); latent: raw latent [B,C,H/8,W/8].

        Returns [B,4,H,W], unclipped: alpha, R, G, B for the SD files; R, G, B, alpha for Flux.
        """
        latent_features = self.latent_conv_in(latent)
        x = self.conv_in(pixel)
        skips = [x]
        for i, block in enumerate(self.down_blocks):
            if i == LATENT_INJECT_AFTER:
                x = x + latent_features
            x, block_skips = block(x)
            skips += block_skips
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x, skips)
        return self.conv_out(F.silu(self.conv_norm_out(x)))
