"""Building blocks of the transparent decoder, written to reproduce the diffusers blocks the
official weights were trained with (ResnetBlock2D, deprecated-style Attention, Down/Upsample2D).

Every block takes an ``ops`` namespace (``Conv2d``, ``Linear``, ``GroupNorm``) so the runtime can
build it from ``comfy.ops`` layers (which support ComfyUI's low-VRAM weight streaming) while
tests use plain ``torch.nn``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORM_GROUPS = 4
NORM_EPS = 1e-5
HEAD_DIM = 8


class ResnetBlock(nn.Module):
    """GN -> SiLU -> conv3x3, twice, plus a 1x1 shortcut when the width changes (no time embedding)."""

    def __init__(self, in_channels: int, out_channels: int, ops=nn):
        super().__init__()
        self.norm1 = ops.GroupNorm(NORM_GROUPS, in_channels, eps=NORM_EPS, affine=True)
        self.conv1 = ops.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = ops.GroupNorm(NORM_GROUPS, out_channels, eps=NORM_EPS, affine=True)
        self.conv2 = ops.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_shortcut = (
            ops.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class SpatialSelfAttention(nn.Module):
    """Single-scale self-attention over the H*W tokens with a residual, head size 8."""

    def __init__(self, channels: int, ops=nn):
        super().__init__()
        self.heads = channels // HEAD_DIM
        self.group_norm = ops.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS, affine=True)
        self.to_q = ops.Linear(channels, channels)
        self.to_k = ops.Linear(channels, channels)
        self.to_v = ops.Linear(channels, channels)
        # A list keeps the state-dict key "to_out.0" of the original.
        self.to_out = nn.ModuleList([ops.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, h * w, self.heads, HEAD_DIM).transpose(1, 2)

        q = split_heads(self.to_q(tokens))
        k = split_heads(self.to_k(tokens))
        v = split_heads(self.to_v(tokens))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, h * w, c)
        out = self.to_out[0](out)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int, ops=nn):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, ops=nn):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16:
            # nearest upsampling lacks bf16 kernels on some backends; it is exact in fp32.
            x = F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(torch.bfloat16)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


class DownBlock(nn.Module):
    """Resnets (each optionally followed by attention), then an optional stride-2 conv.

    Returns the output and every intermediate the decoder's up path consumes as a skip.
    """

    def __init__(self, in_channels: int, out_channels: int, *, attention: bool, downsample: bool, ops=nn):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(in_channels, out_channels, ops), ResnetBlock(out_channels, out_channels, ops)]
        )
        if attention:
            self.attentions = nn.ModuleList([SpatialSelfAttention(out_channels, ops) for _ in range(2)])
        else:
            self.attentions = None
        self.downsamplers = nn.ModuleList([Downsample(out_channels, ops)]) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x)
            if self.attentions is not None:
                x = self.attentions[i](x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """Three resnets, each fed [current, popped skip] on channels, optionally with attention,
    then an optional nearest x2 upsample + conv."""

    def __init__(
        self,
        prev_channels: int,
        out_channels: int,
        skip_channels: list[int],
        *,
        attention: bool,
        upsample: bool,
        ops=nn,
    ):
        super().__init__()
        resnets = []
        current = prev_channels
        for skip in skip_channels:
            resnets.append(ResnetBlock(current + skip, out_channels, ops))
            current = out_channels
        self.resnets = nn.ModuleList(resnets)
        if attention:
            self.attentions = nn.ModuleList([SpatialSelfAttention(out_channels, ops) for _ in skip_channels])
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([Upsample(out_channels, ops)]) if upsample else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1))
            if self.attentions is not None:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    def __init__(self, channels: int, ops=nn):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, ops), ResnetBlock(channels, channels, ops)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, ops)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        x = self.attentions[0](x)
        return self.resnets[1](x)
