"""The Flux TransparentVAE.pth: registry entry, safe reading (plain tensors only, a code-carrying pickle is refused
before anything runs), the kept parts and strict checks, and the one-time conversion to safetensors."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import pytest
import safetensors.torch
import torch

from fixtures.flux import VAE_GROUPS_OF_PREFIX, transparent_vae_state_dict
from fixtures.sdxl_testing import private_layer_folder
from layerstack.errors import LayerStackError
from layerstack.layer_vae import LatentTransparencyOffsetEncoder, UNet1024, runtime
from layerstack.models import files, registry
from layerstack.models.registry import Family, Kind
from layerstack.models.transparent_vae import TransparentVAE

ENTRY = registry.get("TransparentVAE")


@pytest.fixture(scope="module")
def official_like() -> OrderedDict:
    return transparent_vae_state_dict(seed=7)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    with private_layer_folder(monkeypatch, tmp_path / "layer_model") as f:
        yield f


def _save(folder, state_dict, name="TransparentVAE.pth"):
    path = folder / name
    torch.save(state_dict, str(path))
    return path


def test_registry_entry():
    assert ENTRY.family is Family.FLUX and ENTRY.kind is Kind.TRANSPARENT_VAE
    assert ENTRY.filename == "TransparentVAE.pth" and ENTRY.converted_filename == "TransparentVAE.safetensors"
    assert ENTRY.url == "https://huggingface.co/RedAIGC/Flux-version-LayerDiffuse/resolve/main/TransparentVAE.pth"
    assert registry.decoder_for(Family.FLUX) is ENTRY and registry.encoder_for(Family.FLUX) is ENTRY
    assert registry.get("TransparentVAE.pth") is registry.get("TransparentVAE.safetensors") is ENTRY
    assert "Flux" in Family.FLUX.value
    assert "Non-Commercial" in ENTRY.licence


def test_fixture_has_the_official_layout(official_like):
    assert isinstance(official_like, OrderedDict) and len(official_like) == 800
    counts = {p: sum(k.startswith(p) for k in official_like) for p in VAE_GROUPS_OF_PREFIX}
    assert counts == VAE_GROUPS_OF_PREFIX
    assert {v.dtype for v in official_like.values()} == {torch.bfloat16}
    assert registry.identify(official_like) == (ENTRY,)


def test_reads_only_decoder_and_encoder(folder, official_like):
    path = _save(folder, official_like)
    loaded = files.load_layer_file(ENTRY)
    state_dict = loaded.state_dict
    assert loaded.path == files.find_layer_file(ENTRY) == str(path)
    assert len(state_dict) == 538 + 18
    assert all(k.startswith(("decoder.", "encoder.")) for k in state_dict)
    assert all(torch.equal(state_dict[k], official_like[k]) for k in state_dict)


class _Payload:
    """Pickles as a call to os.mkdir: a file that runs code when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("writer", ["torch_zip", "plain_pickle"])
def test_code_carrying_pickle_is_refused_and_nothing_runs(folder, tmp_path, writer):
    marker = tmp_path / "payload_ran"
    content = {"decoder.conv_in.weight": torch.zeros(32, 3, 3, 3), "payload": _Payload(marker)}
    path = folder / "TransparentVAE.pth"
    if writer == "torch_zip":
        torch.save(content, str(path))
    else:
        path.write_bytes(pickle.dumps(content))
    with pytest.raises(LayerStackError, match=r"TransparentVAE\.pth: refused.*never runs code from a pickle"):
        TransparentVAE(Family.FLUX).decoder()
    assert not marker.exists()


def test_pickle_of_something_else_is_refused(folder):
    _save(folder, [torch.zeros(3)])
    with pytest.raises(LayerStackError, match=r"TransparentVAE\.pth: expected a state dict .* got list"):
        files.load_layer_file(ENTRY)


def test_foreign_keys_are_named(folder, official_like):
    sd = OrderedDict(official_like)
    sd["extra.weight"] = torch.zeros(2)
    _save(folder, sd)
    with pytest.raises(LayerStackError, match=r"1 keys outside decoder\.\*, encoder\.\*, sd_vae\.\* .*'extra.weight'"):
        files.load_layer_file(ENTRY)


def test_missing_decoder_tensor_is_named(folder, official_like):
    sd = OrderedDict(official_like)
    del sd["decoder.conv_out.bias"]
    _save(folder, sd)
    with pytest.raises(LayerStackError, match=r"TransparentVAE\.pth \(decoder\.\* tensors\).*1 missing tensors "
                                              r"\(conv_out\.bias\)"):
        TransparentVAE(Family.FLUX).decoder()


def test_sd_shaped_decoder_is_recognised(folder, official_like):
    sd = OrderedDict(official_like)
    sd["decoder.latent_conv_in.weight"] = torch.zeros(64, 4, 1, 1, dtype=torch.bfloat16)
    _save(folder, sd)
    with pytest.raises(LayerStackError, match=r"latent_conv_in.weight \[64, 4, 1, 1\] \(expected \[64, 16, 1, 1\]\)"
                                              r".*4-channel latents, as in an SD1.5/SDXL file"):
        TransparentVAE(Family.FLUX).decoder()


def test_flux_decoder_part_given_as_sd_decoder_is_recognised(official_like):
    sd = {k[len("decoder."):]: v for k, v in official_like.items() if k.startswith("decoder.")}
    with pytest.raises(LayerStackError, match="16-channel latents, as in the Flux TransparentVAE"):
        runtime.decoder_from_state_dict(sd, source="vae_transparent_decoder.safetensors")


def test_runtime_builds_both_networks_from_one_read(folder, official_like, monkeypatch):
    _save(folder, official_like)
    reads = []
    original = files.read_layer_file
    monkeypatch.setattr(files, "read_layer_file", lambda *a, **k: reads.append(a) or original(*a, **k))
    tvae = TransparentVAE(Family.FLUX)
    decoder, encoder = tvae.decoder(), tvae.encoder()
    assert len(reads) == 1
    assert isinstance(decoder.model, UNet1024) and isinstance(encoder.model, LatentTransparencyOffsetEncoder)
    assert decoder.model.latent_conv_in.weight.shape == (64, 16, 1, 1)
    assert encoder.model.blocks[-1].weight.shape == (16, 256, 3, 3)
    loaded = decoder.model.state_dict()
    assert all(torch.equal(loaded[k].float(), official_like[f"decoder.{k}"].float()) for k in loaded)


def test_conversion_writes_a_safetensors_copy_once_and_never_overwrites(folder, official_like):
    from layerstack.nodes.layer_files import FetchLayerFile

    pth = _save(folder, official_like)
    out = FetchLayerFile.execute(file="TransparentVAE.pth", allow_download=False, convert_to_safetensors=True)
    converted = folder / "TransparentVAE.safetensors"
    assert out.result[0] == str(converted)
    written = safetensors.torch.load_file(str(converted))
    assert len(written) == 556 and all(torch.equal(written[k], official_like[k]) for k in written)
    assert files.find_layer_file(ENTRY) == str(converted)  # later loads need no pickle
    assert pth.exists()  # the original stays
    tvae = TransparentVAE(Family.FLUX)
    loaded = tvae.decoder().model.state_dict()
    assert all(torch.equal(loaded[k].float(), official_like[f"decoder.{k}"].float()) for k in loaded)

    # An existing file of that name is never replaced.
    converted.write_bytes(b"user file")
    assert files.convert_to_safetensors(ENTRY, str(pth)) == str(converted)
    assert converted.read_bytes() == b"user file"
    assert not [p for p in folder.iterdir() if ".part" in p.name]


def test_missing_file_names_folder_and_url(folder):
    with pytest.raises(LayerStackError, match=r"(?s)TransparentVAE\.pth \(Flux .*was not found.*"
                                              r"RedAIGC/Flux-version-LayerDiffuse/resolve/main/TransparentVAE\.pth"):
        TransparentVAE(Family.FLUX).decoder()
