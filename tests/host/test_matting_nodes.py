"""Split Image by Mask as a node (the matting itself is tested in tests/unit/test_matting.py)."""

from __future__ import annotations

import pytest
import torch

from fixtures.rgba_images import emoji, on_contrasting_background
from layerstack.errors import LayerStackError


def test_split_node(comfy_host):
    from layerstack.nodes import stack as nodes
    from layerstack.nodes.common import MASK_IS_ALPHA, MASK_IS_LOADIMAGE

    true_rgb, alpha = emoji("1f332")
    image, _, _ = on_contrasting_background(true_rgb, alpha)
    stack = nodes.LayerStackSplitByMask.execute(image=image, mask=1 - alpha, mask_meaning=MASK_IS_LOADIMAGE,
                                                method=nodes.ESTIMATE_COLORS, hole_threshold=1.0).result[0]
    assert torch.allclose(stack.get("foreground").alpha, alpha) and stack.names == ["background", "foreground"]
    with pytest.raises(LayerStackError, match=r"^LayerStackSplitByMask: input 'mask' expected height x width 64x64"):
        nodes.LayerStackSplitByMask.execute(image=image, mask=alpha[:, :10], mask_meaning=MASK_IS_ALPHA,
                                            method=nodes.NAIVE_CUT, hole_threshold=1.0)
