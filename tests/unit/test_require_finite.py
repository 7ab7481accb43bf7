"""errors.require_finite and the IMAGE/MASK contract checks: non-finite values are counted and refused."""

from __future__ import annotations

import pytest
import torch

from layerstack.errors import FROM_VAE, LayerStackError, require_finite
from layerstack.layer_stack.inputs import rgb_and_alpha


def test_finite_tensors_pass_unchanged():
    t = torch.rand(2, 3)
    assert require_finite(t, "N", "x", FROM_VAE) is t


def test_nan_and_inf_are_counted_and_named():
    t = torch.zeros(4, 5)
    t[0, 0], t[1, 1], t[2, 2] = float("nan"), float("inf"), float("-inf")
    with pytest.raises(LayerStackError, match=r"^N: output 'x' holds 3 non-finite value\(s\) \(NaN or inf\) out of "
                                              r"20\. Likely cause: the VAE overflowed in fp16"):
        require_finite(t, "N", "x", FROM_VAE, kind="output")


def test_image_and_mask_inputs_are_checked():
    image, mask = torch.rand(1, 4, 4, 3), torch.rand(1, 4, 4)
    mask[0, 1, 1] = float("nan")
    with pytest.raises(LayerStackError, match=r"Node: input 'alpha' holds 1 non-finite"):
        rgb_and_alpha(image, mask, "Node")
    image[0, 0, 0, 0] = float("inf")
    with pytest.raises(LayerStackError, match=r"Node: input 'image' holds 1 non-finite"):
        rgb_and_alpha(image, None, "Node")


def test_a_sum_that_merely_overflows_is_not_an_error():
    t = torch.full((4096,), 60000.0, dtype=torch.float16)  # finite, but their fp16 sum is inf
    assert not bool(t.sum().isfinite())
    assert require_finite(t, "N", "x", FROM_VAE) is t
