"""The decoder/encoder at the official shapes: key/shape equality with the fact sheet, strict loading of the
official-format fixture files (and loud errors for wrong ones), agreement with the diffusers-built reference
network, and the full augmented decode with the official-shape UNet1024 (fp32, tiny sizes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from fixtures.build import random_state_dict
from fixtures.official_keys import official_shapes
from layerstack.errors import LayerStackError
from layerstack.layer_vae import LatentTransparencyOffsetEncoder, UNet1024, decode_augmented, load_strict, runtime

ROOT = Path(__file__).resolve().parents[2]
SPEC_KEYS = ROOT.parent / "shared" / "spec" / "weight-keys.txt"
REFERENCE_OUTPUT = ROOT / "tests" / "data" / "layer_vae_unet1024_reference.json"
TOLERANCE = 1e-5


def spec_sections() -> dict[str, dict[str, tuple[int, ...]]]:
    """Sections A (UNet1024) and B (offset encoder) of the fact sheet's key dump."""
    assert SPEC_KEYS.is_file(), f"{SPEC_KEYS} is missing: the key/shape check needs the shared spec beside the repo"
    sections: dict[str, dict[str, tuple[int, ...]]] = {}
    current = None
    for line in SPEC_KEYS.read_text().splitlines():
        if line.startswith("########## "):
            current = None
            if "SECTION C" in line:
                break
        elif line.startswith("# UNet1024("):
            current = sections.setdefault("A", {})
        elif line.startswith("# LatentTransparencyOffsetEncoder("):
            current = sections.setdefault("B", {})
        elif current is not None and "\t" in line:
            key, shape = line.split("\t")
            current[key] = tuple(int(x) for x in shape.strip("[]").split(",") if x.strip())
    return sections


def shapes_of(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def official_decoder() -> UNet1024:
    """The official-shape decoder with random fp32 weights, built once for this module."""
    net = UNet1024().eval()
    load_strict(net, random_state_dict(official_shapes("vae_transparent_decoder"), seed=2024, dtype=torch.float32),
                source="test", what="decoder")
    return net


def test_keys_and_shapes_equal_the_fact_sheet():
    spec = spec_sections()
    assert len(spec["A"]) == 538 and len(spec["B"]) == 18
    decoder, encoder = UNet1024(), LatentTransparencyOffsetEncoder()
    assert shapes_of(decoder) == spec["A"]
    assert shapes_of(encoder) == spec["B"]
    assert sum(v.numel() for v in decoder.state_dict().values()) == 104_104_804
    assert sum(v.numel() for v in encoder.state_dict().values()) == 1_181_764
    # the repo's copy that builds the fixtures is the same list
    assert shapes_of(decoder) == official_shapes("vae_transparent_decoder")
    assert shapes_of(encoder) == official_shapes("vae_transparent_encoder")


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


# --- strict loading ---------------------------------------------------------------------------------------------------

def test_fixture_files_load_strictly_through_the_runtime(fixture_paths):
    for family in ("SD15", "SDXL"):
        tvae = runtime.TransparentVAE(runtime.Family(family))
        decoder, encoder = tvae.decoder(), tvae.encoder()
        assert isinstance(decoder.model, UNet1024) and isinstance(encoder.model, LatentTransparencyOffsetEncoder)
        file_sd = safetensors.torch.load_file(str(fixture_paths["layer_model_dir"] / tvae.decoder_file.filename))
        loaded = decoder.model.state_dict()
        assert loaded.keys() == file_sd.keys()
        assert all(torch.equal(loaded[k].float(), file_sd[k].float()) for k in file_sd)
        assert not any(p.is_meta for p in decoder.model.parameters())
        assert tvae.decoder() is decoder  # read once per LAYER_VAE


def _decoder_sd():
    return random_state_dict(official_shapes("vae_transparent_decoder"), seed=3, dtype=torch.float16)


def test_missing_tensor_is_named():
    sd = _decoder_sd()
    del sd["mid_block.attentions.0.to_q.weight"]
    with pytest.raises(LayerStackError, match=r"my_file: .*1 missing tensors \(mid_block.attentions.0.to_q.weight\)"):
        runtime.decoder_from_state_dict(sd, source="my_file")


def test_wrong_shape_is_named():
    sd = _decoder_sd()
    sd["conv_out.weight"] = torch.zeros(3, 32, 3, 3)
    with pytest.raises(LayerStackError, match=r"conv_out.weight \[3, 32, 3, 3\] \(expected \[4, 32, 3, 3\]\)"):
        runtime.decoder_from_state_dict(sd, source="f")


def test_unexpected_tensor_is_named():
    sd = _decoder_sd()
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(LayerStackError, match=r"1 unexpected tensors \(extra.weight\)"):
        runtime.decoder_from_state_dict(sd, source="f")


@pytest.mark.parametrize("sd,hint", [
    ({"diffusion_model.input_blocks.0.0.weight::diff::0": torch.zeros(1)}, "SDXL weight-patch file"),
    ({"hookers.layers.0.temporal_i.weight": torch.zeros(1)}, "attention-sharing file"),
    ({"decoder.conv_in.weight": torch.zeros(1), "sd_vae.x": torch.zeros(1)}, "Flux TransparentVAE"),
])
def test_other_files_are_recognised_in_the_error(sd, hint):
    with pytest.raises(LayerStackError, match=hint):
        runtime.decoder_from_state_dict(sd, source="f")


def test_encoder_file_given_to_the_decoder():
    sd = random_state_dict(official_shapes("vae_transparent_encoder"), seed=4)
    with pytest.raises(LayerStackError, match="transparent offset-encoder file"):
        runtime.decoder_from_state_dict(sd, source="f")
    with pytest.raises(LayerStackError, match="transparent decoder file"):
        runtime.encoder_from_state_dict(_decoder_sd(), source="f")


def test_integer_tensors_are_refused():
    sd = random_state_dict(official_shapes("vae_transparent_encoder"), seed=4)
    sd["blocks.0.bias"] = torch.zeros(32, dtype=torch.int64)
    with pytest.raises(LayerStackError, match="floating point"):
        runtime.encoder_from_state_dict(sd, source="f")


def test_truncated_file_is_reported_by_name(fixture_paths, tmp_path, monkeypatch):
    import folder_paths

    bad = tmp_path / "vae_transparent_decoder.safetensors"
    good = (fixture_paths["layer_model_dir"] / "vae_transparent_decoder.safetensors").read_bytes()
    bad.write_bytes(good[: len(good) // 3])
    monkeypatch.setattr(folder_paths, "get_folder_paths", lambda name: [str(tmp_path)])
    with pytest.raises(LayerStackError, match="vae_transparent_decoder.safetensors.*cannot be read"):
        runtime.TransparentVAE(runtime.Family.SDXL).decoder()
