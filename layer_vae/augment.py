"""The test-time augmentations of the transparent decode (docs/FORMATS.md#decode-passes).

A pass is (flip, k): flip along width, then rotate by k quarter turns; undone in reverse order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Pass(NamedTuple):
    flip: bool
    k: int


# The reference order; the 8-pass median over exactly these is the reference result.
REFERENCE_PASSES = tuple(Pass(flip, k) for flip in (False, True) for k in range(4))

# Fewer passes trade quality for speed. Subsets keep the image orientation (k even) so a
# non-square image needs one batch shape, and stay symmetric: identity, + mirror, + 180 turns.
PASS_SETS: dict[int, tuple[Pass, ...]] = {
    1: (Pass(False, 0),),
    2: (Pass(False, 0), Pass(True, 0)),
    4: (Pass(False, 0), Pass(False, 2), Pass(True, 0), Pass(True, 2)),
    8: REFERENCE_PASSES,
}


def apply(x: torch.Tensor, p: Pass) -> torch.Tensor:
    if p.flip:
        x = torch.flip(x, dims=(3,))
    return torch.rot90(x, k=p.k, dims=(2, 3)) if p.k else x


def undo(x: torch.Tensor, p: Pass) -> torch.Tensor:
    if p.k:
        x = torch.rot90(x, k=-p.k, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if p.flip else x


def swaps_axes(p: Pass) -> bool:
    return p.k % 2 == 1
