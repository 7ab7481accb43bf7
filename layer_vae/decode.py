"""Augmented transparent decode (docs/FORMATS.md#decode), batched.

The reference runs 8 flip/rot90 passes one after another, clips each to [0,1], takes the
per-pixel ``torch.median`` over the passes (the lower of the two middle values) and clips
again. Here the passes of several images share forward calls: all passes of a square input
have one shape, a non-square input needs two shapes (quarter turns swap H and W). The network
treats batch items independently, so the result equals the reference up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F

from . import augment
from .unet1024 import SIZE_MULTIPLE

LATENT_SCALE = 8


def pad_to_multiple(
    pixel: torch.Tensor, latent: torch.Tensor, multiple: int = SIZE_MULTIPLE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replicate-pad image and latent at the bottom/right to a multiple of ``multiple`` pixels."""
    h, w = pixel.shape[-2:]
    pad_h = -h % multiple
    pad_w = -w % multiple
    if pad_h == 0 and pad_w == 0:
        return pixel, latent
    pixel = F.pad(pixel, (0, pad_w, 0, pad_h), mode="replicate")
    latent = F.pad(latent, (0, pad_w // LATENT_SCALE, 0, pad_h // LATENT_SCALE), mode="replicate")
    return pixel, latent


def shape_groups(passes: tuple[augment.Pass, ...], square: bool) -> list[list[int]]:
    """Pass indices grouped so each group's augmented inputs share one shape."""
    if square:
        return [list(range(len(passes)))]
    keep = [i for i, p in enumerate(passes) if not augment.swaps_axes(p)]
    swap = [i for i, p in enumerate(passes) if augment.swaps_axes(p)]
    return [g for g in (keep, swap) if g]


def plan_forward_calls(batch: int, passes: int, square: bool, max_batch: Optional[int]) -> tuple[int, int]:
    """(images per chunk, total forward calls) for a decode of ``batch`` images."""
    pass_set = augment.PASS_SETS[passes]
    if max_batch is None or max_batch >= batch * passes:
        per_chunk = batch
    else:
        per_chunk = max(1, max_batch // passes)
    calls = 0
    for start in range(0, batch, per_chunk):
        n = min(per_chunk, batch - start)
        for group in shape_groups(pass_set, square):
            samples = n * len(group)
            calls += 1 if max_batch is None else math.ceil(samples / max_batch)
    return per_chunk, calls


@torch.no_grad()
def decode_augmented(
    net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    pixel: torch.Tensor,
    latent: torch.Tensor,
    *,
    passes: int = 8,
    max_batch: Optional[int] = None,
    device: Optional[torch.device] = None,
    dtype: Optional[torch.dtype] = None,
    output_device: Optional[torch.device] = None,
    on_forward: Optional[Callable[[], None]] = None,
    check_interrupt: Optional[Callable[[], None]] = None,
) -> torch.Tensor:
    """Decode [B,3,H,W] pixels in [0,1] plus their raw latent [B,4,H/8,W/8] into [B,4,H,W] fp32.

    Channel 0 is alpha, 1..3 straight RGB, all in [0,1]. Any H, W that are multiples of 8 work
    (padded to 64 internally, cropped back). ``max_batch`` caps the samples per forward call
    (None: one call per shape group). ``device``/``dtype`` are where and how the network runs;
    the median is always taken in fp32.
    """
    if passes not in augment.PASS_SETS:
        raise ValueError(f"passes must be one of {sorted(augment.PASS_SETS)}, got {passes}")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
    device = device or pixel.device
    dtype = dtype or pixel.dtype
    output_device = output_device or pixel.device
    batch, _, height, width = pixel.shape
    pass_set = augment.PASS_SETS[passes]

    pixel, latent = pad_to_multiple(pixel, latent)
    square = pixel.shape[-2] == pixel.shape[-1]
    per_chunk, _ = plan_forward_calls(batch, passes, square, max_batch)
    groups = shape_groups(pass_set, square)

    out = torch.empty((batch, 4, height, width), dtype=torch.float32, device=output_device)
    for start in range(0, batch, per_chunk):
        chunk = slice(start, min(batch, start + per_chunk))
        pix = pixel[chunk].to(device=device, dtype=dtype)
        lat = latent[chunk].to(device=device, dtype=dtype)
        n = pix.shape[0]
        per_pass: list[Optional[torch.Tensor]] = [None] * len(pass_set)
        for group in groups:
            feed_pix = torch.cat([augment.apply(pix, pass_set[i]) for i in group])
            feed_lat = torch.cat([augment.apply(lat, pass_set[i]) for i in group])
            step = feed_pix.shape[0] if max_batch is None else max_batch
            results = []
            for s in range(0, feed_pix.shape[0], step):
                if check_interrupt is not None:
                    check_interrupt()
                y = net(feed_pix[s : s + step], feed_lat[s : s + step])
                results.append(y.float().clamp_(0.0, 1.0))
                if on_forward is not None:
                    on_forward()
            y = torch.cat(results)
            for j, i in enumerate(group):
                per_pass[i] = augment.undo(y[j * n : (j + 1) * n], pass_set[i])
        stacked = torch.stack(per_pass)  # [P, n, 4, H, W]
        if stacked.device.type == "mps":
            stacked = stacked.cpu()  # median is unreliable on MPS (reference pack does the same)
        median = torch.median(stacked, dim=0).values.clamp_(0.0, 1.0)
        out[chunk] = median[..., :height, :width].to(output_device)
        del stacked, per_pass, median
    return out
