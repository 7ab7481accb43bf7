"""The decoder/encoder at the official shapes: key/shape equality with the fact sheet, strict loading of the
official-format fixture files (and loud errors for wrong ones), agreement with the diffusers-built reference
network, and the full augmented decode with the official-shape UNet1024 (fp32, tiny sizes).
"""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from fixtures.build import random_state_dict
from fixtures.official_keys import official_shapes
from layerstack.errors import LayerStackError
from layerstack.layer_vae import LatentTransparencyOffsetEncoder, UNet1024, runtime
from layerstack.models import registry
from layerstack.models.registry import Family
from layerstack.models.transparent_vae import TransparentVAE


def _decoder_sd():
    return random_state_dict(official_shapes("vae_transparent_decoder"), seed=3, dtype=torch.float16)


def test_fixture_files_load_strictly_through_the_runtime(fixture_paths):
    for family in ("SD15", "SDXL"):
        tvae = TransparentVAE(Family(family))
        decoder, encoder = tvae.decoder(), tvae.encoder()
        assert isinstance(decoder.model, UNet1024) and isinstance(encoder.model, LatentTransparencyOffsetEncoder)
        file_sd = safetensors.torch.load_file(str(fixture_paths["layer_model_dir"] / tvae.decoder_file.filename))
        loaded = decoder.model.state_dict()
        assert loaded.keys() == file_sd.keys()
        assert all(torch.equal(loaded[k].float(), file_sd[k].float()) for k in file_sd)
        assert not any(p.is_meta for p in decoder.model.parameters())
        assert tvae.decoder() is decoder  # read once per LAYER_VAE


def test_truncated_file_is_reported_by_name(fixture_paths, tmp_path, monkeypatch):
    import folder_paths

    bad = tmp_path / "vae_transparent_decoder.safetensors"
    good = (fixture_paths["layer_model_dir"] / "vae_transparent_decoder.safetensors").read_bytes()
    bad.write_bytes(good[: len(good) // 3])
    monkeypatch.setattr(folder_paths, "get_folder_paths", lambda name: [str(tmp_path)])
    with pytest.raises(LayerStackError, match="vae_transparent_decoder.safetensors.*cannot be read"):
        TransparentVAE(Family.SDXL).decoder()


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
        runtime.decoder_from_state_dict(sd, source="f", hint=registry.looks_like)  # as TransparentVAE reads files


def test_encoder_file_given_to_the_decoder():
    sd = random_state_dict(official_shapes("vae_transparent_encoder"), seed=4)
    with pytest.raises(LayerStackError, match="transparent offset-encoder file"):
        runtime.decoder_from_state_dict(sd, source="f", hint=registry.looks_like)
    with pytest.raises(LayerStackError, match="transparent decoder file"):
        runtime.encoder_from_state_dict(_decoder_sd(), source="f", hint=registry.looks_like)


def test_integer_tensors_are_refused():
    sd = random_state_dict(official_shapes("vae_transparent_encoder"), seed=4)
    sd["blocks.0.bias"] = torch.zeros(32, dtype=torch.int64)
    with pytest.raises(LayerStackError, match="floating point"):
        runtime.encoder_from_state_dict(sd, source="f")

