"""The decoder/encoder at the official shapes: key/shape equality with the official key lists, strict loading of the
official-format fixture files (and loud errors for wrong ones), agreement with the diffusers-built reference
network, and the full augmented decode with the official-shape UNet1024 (fp32, tiny sizes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fixtures.build import random_state_dict
from fixtures.official_keys import official_shapes
from layerstack.layer_vae import LatentTransparencyOffsetEncoder, UNet1024, decode_augmented, load_strict

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_OUTPUT = ROOT / "tests" / "data" / "layer_vae_unet1024_reference.json"


TOLERANCE = 1e-5


def shapes_of(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def official_decoder() -> UNet1024:
    """The official-shape decoder with random fp32 weights, built once for this module."""
    net = UNet1024().eval()
    load_strict(net, random_state_dict(official_shapes("vae_transparent_decoder"), seed=2024, dtype=torch.float32),
                source="test", what="decoder")
    return net


def test_keys_and_shapes_equal_the_official_key_lists():
    """tests/data/official_keys (the reference classes' key dump, docs/FORMATS.md#decoder) against our modules."""
    decoder_keys, encoder_keys = official_shapes("vae_transparent_decoder"), official_shapes("vae_transparent_encoder")
    assert len(decoder_keys) == 538 and len(encoder_keys) == 18
    decoder, encoder = UNet1024(), LatentTransparencyOffsetEncoder()
    assert shapes_of(decoder) == decoder_keys
    assert shapes_of(encoder) == encoder_keys
    assert sum(v.numel() for v in decoder.state_dict().values()) == 104_104_804
    assert sum(v.numel() for v in encoder.state_dict().values()) == 1_181_764
    # the SD1.5 files share the SDXL layout
    assert official_shapes("layer_sd15_vae_transparent_decoder") == decoder_keys
    assert official_shapes("layer_sd15_vae_transparent_encoder") == encoder_keys


def test_matches_the_diffusers_reference_output(official_decoder):
    """Output recorded from the reference class built from diffusers 0.32.2 blocks (see the JSON's provenance)."""
    ref = json.loads(REFERENCE_OUTPUT.read_text())
    g = torch.Generator().manual_seed(7)
    pixel = torch.rand((1, 3, 128, 192), generator=g)
    latent = torch.randn((1, 4, 16, 24), generator=g)
    with torch.no_grad():
        y = official_decoder(pixel, latent).double()
    assert list(y.shape) == ref["output_shape"]
    flat = y.flatten()
    samples = flat[:: ref["sample_stride"]]
    assert samples.numel() == len(ref["samples"])
    assert (samples - torch.tensor(ref["samples"], dtype=torch.float64)).abs().max().item() < 1e-4
    assert flat.sum().item() == pytest.approx(ref["sum"], rel=1e-5)
    assert flat.abs().sum().item() == pytest.approx(ref["abs_sum"], rel=1e-5)
    assert y.mean(dim=(0, 2, 3)).tolist() == pytest.approx(ref["channel_means"], abs=1e-5)


def plain_median_decode(net, pixel, latent):
    passes = [(False, 0), (False, 1), (False, 2), (False, 3), (True, 0), (True, 1), (True, 2), (True, 3)]
    results = []
    for flip, k in passes:
        p, lat = pixel, latent
        if flip:
            p, lat = torch.flip(p, dims=(3,)), torch.flip(lat, dims=(3,))
        y = net(torch.rot90(p, k, dims=(2, 3)), torch.rot90(lat, k, dims=(2, 3))).clip(0, 1)
        y = torch.rot90(y, -k, dims=(2, 3))
        results.append(torch.flip(y, dims=(3,)) if flip else y)
    return torch.median(torch.stack(results), dim=0).values.clip(0, 1)


@pytest.mark.slow  # the 104M-parameter decoder run 16 times on CPU
@pytest.mark.parametrize("batch,h,w", [(2, 64, 64), (1, 64, 128)])
def test_official_shape_decode_equals_plain_eight_pass_median(official_decoder, batch, h, w):
    g = torch.Generator().manual_seed(batch * h + w)
    pixel = torch.rand((batch, 3, h, w), generator=g)
    latent = torch.randn((batch, 4, h // 8, w // 8), generator=g)
    with torch.no_grad():
        expected = plain_median_decode(official_decoder, pixel, latent)
    for max_batch in (None, 3):
        got = decode_augmented(official_decoder, pixel, latent, max_batch=max_batch)
        assert (got - expected).abs().max().item() <= TOLERANCE
