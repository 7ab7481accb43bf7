"""The batched augmented decode equals the reference procedure (docs/FORMATS.md#decode), written plainly here.

A tiny network with the decoder's call signature keeps these fast; it is deliberately not flip/rotation
equivariant (position ramp, random asymmetric kernels), so a wrongly undone augmentation changes the result.
The official-shape UNet1024 runs the same comparison in test_layer_vae_official.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from layerstack.layer_vae import augment
from layerstack.layer_vae.decode import decode_augmented, pad_to_multiple, plan_forward_calls

TOLERANCE = 1e-5


class TinyDecoder(torch.nn.Module):
    """(pixel [B,3,H,W], latent [B,4,H/8,W/8]) -> [B,4,H,W], spread around [0,1] so clipping matters."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(8, 7, 3, 3, generator=g) * 0.5)
        self.w2 = torch.nn.Parameter(torch.randn(4, 8, 3, 3, generator=g) * 0.5)
        self.calls: list[int] = []

    def forward(self, pixel, latent):
        self.calls.append(pixel.shape[0])
        b, _, h, w = pixel.shape
        lat = F.interpolate(latent, size=(h, w), mode="nearest")
        ramp = torch.linspace(-1, 1, w, dtype=pixel.dtype).expand(b, 1, h, w)
        x = torch.tanh(F.conv2d(torch.cat([pixel, lat[:, :3], ramp], dim=1), self.w1, padding=1))
        return F.conv2d(x, self.w2, padding=1) * 0.8 + 0.5 + 0.3 * ramp


def reference_decode(net, pixel, latent, passes=augment.REFERENCE_PASSES):
    """The reference estimate_augmented: one pass after another, clip, median over passes, clip."""
    results = []
    for flip, k in passes:
        p, lat = pixel.clone(), latent.clone()
        if flip:
            p, lat = torch.flip(p, dims=(3,)), torch.flip(lat, dims=(3,))
        p, lat = torch.rot90(p, k=k, dims=(2, 3)), torch.rot90(lat, k=k, dims=(2, 3))
        y = net(p, lat).clip(0, 1)
        y = torch.rot90(y, k=-k, dims=(2, 3))
        if flip:
            y = torch.flip(y, dims=(3,))
        results.append(y)
    return torch.median(torch.stack(results, dim=0), dim=0).values.clip(0, 1)


def inputs(batch, h, w, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, h, w, generator=g), torch.randn(batch, 4, h // 8, w // 8, generator=g)


@pytest.fixture(scope="module")
def net():
    return TinyDecoder().eval()


@pytest.mark.parametrize("batch,h,w", [(1, 64, 64), (3, 64, 64), (2, 64, 128), (2, 192, 128), (1, 128, 192)])
@pytest.mark.parametrize("max_batch", [None, 3, 8])
def test_equals_reference_eight_pass_median(net, batch, h, w, max_batch):
    pixel, latent = inputs(batch, h, w)
    with torch.no_grad():
        expected = reference_decode(net, pixel, latent)
    got = decode_augmented(net, pixel, latent, passes=8, max_batch=max_batch)
    assert got.shape == (batch, 4, h, w) and got.dtype == torch.float32
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_reference_comparison_is_sensitive(net):
    """The passes really disagree here, so the equality above checks which value the median picks."""
    pixel, latent = inputs(2, 64, 128)
    with torch.no_grad():
        mean_of_passes = torch.stack([
            augment.undo(net(augment.apply(pixel, p), augment.apply(latent, p)).clip(0, 1), p)
            for p in augment.REFERENCE_PASSES
        ]).mean(dim=0)
        stacked = torch.stack([
            augment.undo(net(augment.apply(pixel, p), augment.apply(latent, p)).clip(0, 1), p)
            for p in augment.REFERENCE_PASSES
        ])
    got = decode_augmented(net, pixel, latent)
    upper_middle = stacked.sort(dim=0).values[4]
    assert (got - mean_of_passes).abs().max().item() > 1e-2
    assert (got - upper_middle).abs().max().item() > 1e-2


@pytest.mark.parametrize("passes", [1, 2, 4, 8])
@pytest.mark.parametrize("max_batch", [None, 1, 5])
def test_every_passes_option_is_the_median_of_its_subset(net, passes, max_batch):
    pixel, latent = inputs(2, 64, 128, seed=3)
    with torch.no_grad():
        expected = reference_decode(net, pixel, latent, augment.PASS_SETS[passes])
    got = decode_augmented(net, pixel, latent, passes=passes, max_batch=max_batch)
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_pass_sets():
    assert augment.PASS_SETS[8] == tuple(augment.Pass(f, k) for f in (False, True) for k in range(4))
    for n, subset in augment.PASS_SETS.items():
        assert len(subset) == n and len(set(subset)) == n and set(subset) <= set(augment.REFERENCE_PASSES)
        assert subset[0] == augment.Pass(False, 0)


@pytest.mark.parametrize("h,w", [(72, 64), (64, 136), (80, 200), (8, 8)])
def test_sizes_not_multiple_of_64_pad_and_crop(net, h, w):
    pixel, latent = inputs(2, h, w, seed=5)
    padded_pixel, padded_latent = pad_to_multiple(pixel, latent)
    assert padded_pixel.shape[-2] % 64 == 0 and padded_pixel.shape[-1] % 64 == 0
    assert padded_latent.shape[-2:] == (padded_pixel.shape[-2] // 8, padded_pixel.shape[-1] // 8)
    with torch.no_grad():
        expected = reference_decode(net, padded_pixel, padded_latent)[..., :h, :w]
    for max_batch in (None, 4):
        got = decode_augmented(net, pixel, latent, max_batch=max_batch)
        assert got.shape == (2, 4, h, w)
        assert (got - expected).abs().max().item() <= TOLERANCE


def test_pad_is_replicate_and_keeps_the_image():
    pixel, latent = inputs(1, 72, 80, seed=6)
    p, lat = pad_to_multiple(pixel, latent)
    assert torch.equal(p[..., :72, :80], pixel) and torch.equal(lat[..., :9, :10], latent)
    assert torch.equal(p[..., 100, 30], pixel[..., 71, 30]) and torch.equal(p[..., 10, 127], pixel[..., 10, 79])


@pytest.mark.parametrize("batch,passes,square,max_batch,per_chunk,calls", [
    (3, 8, True, None, 3, 1),      # everything in one call
    (3, 8, False, None, 3, 2),     # one call per shape group
    (3, 8, True, 16, 2, 2),        # 2 images x 8 passes, then 1 image
    (3, 8, True, 3, 1, 9),         # 8 passes split 3+3+2, per image
    (2, 4, False, None, 2, 1),     # the 4-pass set keeps the orientation: one shape
    (5, 1, True, 2, 2, 3),
])
def test_plan_forward_calls(net, batch, passes, square, max_batch, per_chunk, calls):
    assert plan_forward_calls(batch, passes, square, max_batch) == (per_chunk, calls)
    net.calls.clear()
    h, w = (64, 64) if square else (64, 128)
    pixel, latent = inputs(batch, h, w)
    progress = []
    decode_augmented(net, pixel, latent, passes=passes, max_batch=max_batch, on_forward=lambda: progress.append(1))
    assert len(net.calls) == calls == len(progress)
    assert max_batch is None or max(net.calls) <= max_batch
    assert sum(net.calls) == batch * passes


def test_interrupt_stops_before_the_next_call(net):
    class Stop(Exception):
        pass

    seen = []

    def check():
        if len(seen) == 2:
            raise Stop
        seen.append(1)

    pixel, latent = inputs(1, 64, 64)
    net.calls.clear()
    with pytest.raises(Stop):
        decode_augmented(net, pixel, latent, max_batch=2, check_interrupt=check)
    assert len(net.calls) == 2


def test_runs_in_the_given_dtype_and_returns_fp32():
    net = TinyDecoder().to(torch.bfloat16)
    pixel, latent = inputs(1, 64, 64)
    got = decode_augmented(net, pixel, latent, dtype=torch.bfloat16)
    assert got.dtype == torch.float32
    with torch.no_grad():
        expected = reference_decode(lambda p, lat: net(p.bfloat16(), lat.bfloat16()).float(), pixel, latent)
    assert (got - expected).abs().max().item() <= TOLERANCE
    assert got.min() >= 0 and got.max() <= 1


def test_rejects_bad_options(net):
    pixel, latent = inputs(1, 64, 64)
    with pytest.raises(ValueError, match="passes must be one of"):
        decode_augmented(net, pixel, latent, passes=3)
    with pytest.raises(ValueError, match="max_batch"):
        decode_augmented(net, pixel, latent, max_batch=0)
