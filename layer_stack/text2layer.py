"""Text2Layer's two-layer image as a stack.

Text2Layer (arXiv:2307.09781) defines one generation as foreground F, background B, layer mask m and the composite
m·F + (1 − m)·B. As a stack that is, bottom to top:
    background  B, opaque                                  (only when a background is given)
    foreground  F, alpha m
    blended     the model's own composite, hidden          (only when given: LayerDiffuse fg2ble/bg2ble/joint
                                                            generate it, and it can differ from the formula)
    mask        m as a grey opaque layer, hidden           (only when asked: the matte as a deliverable)
The hidden layers are kept for the artist but never enter the composite, which therefore is exactly the formula.
"""

from __future__ import annotations

import torch

from .stack import BACKGROUND, BLENDED, FOREGROUND, MASK, LayerStack, make_layer


def text2layer_stack(
    foreground: torch.Tensor,
    mask: torch.Tensor,
    background: torch.Tensor | None = None,
    blended: torch.Tensor | None = None,
    include_mask_layer: bool = False,
) -> LayerStack:
    """foreground/background/blended: rgb [B,H,W,3]; mask [B,H,W], 1 = foreground (opaque). Same batch and size."""
    layers = []
    if background is not None:
        layers.append(make_layer(BACKGROUND, background))
    layers.append(make_layer(FOREGROUND, foreground, mask))
    if blended is not None:
        layers.append(make_layer(BLENDED, blended, visible=False))
    if include_mask_layer:
        layers.append(make_layer(MASK, mask.unsqueeze(-1).expand(*mask.shape, 3), visible=False))
    return LayerStack(tuple(layers))
