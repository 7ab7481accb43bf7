"""The registry of official files and the file access layer (find, parse, validate, download)."""

from __future__ import annotations

import http.server
import os
import threading

import pytest
import safetensors.torch
import torch

from layerstack.errors import LayerStackError
from layerstack.models import files, registry


def test_registry_lists_the_official_files():
    # 14 of LayerDiffusion/layerdiffusion-v1, 2 of RedAIGC/Flux-version-LayerDiffuse
    assert len(registry.FILES) == 16
    assert {f.id for f in registry.files_of(registry.Family.FLUX)} == {"TransparentVAE", "layerlora"}
    assert len([f for f in registry.FILES if f.base_url == registry.BASE_URL]) == 14
    assert registry.get("layer_sd15_joint").frames == 3
    assert registry.get("layer_xl_fgble2bg.safetensors").extra_channels == 8
    assert registry.get("vae_transparent_decoder").url == (
        "https://huggingface.co/LayerDiffusion/layerdiffusion-v1/resolve/main/vae_transparent_decoder.safetensors")
    with pytest.raises(KeyError, match="unknown LayerDiffuse file"):
        registry.get("layer_xl_nonexistent")


def test_sd15_attention_layer_order_matches_the_facts():
    layers = registry.SD15_ATTENTION_LAYERS
    assert len(layers) == 32
    assert layers[0] == "input_blocks.1.1.transformer_blocks.0.attn1"
    assert layers[13] == "output_blocks.3.1.transformer_blocks.0.attn2"
    assert layers[30] == "middle_block.1.transformer_blocks.0.attn1"


def _official_like(file_id: str) -> dict[str, torch.Tensor]:
    from fixtures.official_keys import official_shapes

    return {k: torch.zeros(s, dtype=torch.float16) for k, s in official_shapes(file_id).items()}


@pytest.mark.parametrize("file_id", ["layer_sd15_transparent_attn", "layer_sd15_joint", "layer_sd15_fg2bg",
                                     "vae_transparent_decoder", "vae_transparent_encoder"])
def test_identify_recognises_official_layouts(file_id):
    found = {f.id for f in registry.identify(_official_like(file_id))}
    assert file_id in found


def test_identify_sdxl_patch_files_by_grammar_and_conv_in_channels():
    lora = {"diffusion_model.x.attn1.to_q.weight::lora::0": torch.zeros(4, 2),
            "diffusion_model.x.attn1.to_q.weight::lora::1": torch.zeros(2, 4)}
    assert [f.id for f in registry.identify(lora)] == ["layer_xl_transparent_attn"]
    cond = {"diffusion_model.input_blocks.0.0.weight::diff::0": torch.zeros(320, 12, 3, 3)}
    assert {f.id for f in registry.identify(cond)} == {"layer_xl_fgble2bg", "layer_xl_bgble2fg"}


def _write(path, sd):
    safetensors.torch.save_file(sd, str(path))
    return path


def test_wrong_file_is_refused_naming_file_and_what_it_looks_like(scratch_dir):
    path = _write(scratch_dir / "layer_sd15_transparent_attn.safetensors", _official_like("layer_sd15_joint"))
    with pytest.raises(LayerStackError) as e:
        files.read_layer_file(registry.get("layer_sd15_transparent_attn"), str(path))
    message = str(e.value)
    assert str(path) in message
    assert "expected 640 tensors, found 1152" in message
    assert "3 frame(s), expected 1" in message
    assert "layer_sd15_joint.safetensors" in message


def test_sd15_file_where_sdxl_patch_file_expected(scratch_dir):
    path = _write(scratch_dir / "layer_xl_fg2ble.safetensors", _official_like("layer_sd15_transparent_attn"))
    with pytest.raises(LayerStackError, match=r"layer_xl_fg2ble.*SDXL foreground to blended.*<model_key>::<patch_type>::<index>.*layer_sd15_transparent_attn"):
        files.read_layer_file(registry.get("layer_xl_fg2ble"), str(path))


def test_sdxl_conditional_file_with_wrong_channel_count(scratch_dir):
    sd = {"diffusion_model.input_blocks.0.0.weight::diff::0": torch.zeros(320, 8, 3, 3),
          "diffusion_model.out.2.bias::diff::0": torch.zeros(4)}
    path = _write(scratch_dir / "x.safetensors", sd)
    with pytest.raises(LayerStackError, match="conv_in delta has 8 input channels, expected 12.*layer_xl_fg2ble"):
        files.read_layer_file(registry.get("layer_xl_fgble2bg"), str(path))


def test_truncated_file_is_refused(scratch_dir):
    good = _write(scratch_dir / "good.safetensors", _official_like("vae_transparent_encoder"))
    data = good.read_bytes()
    bad = scratch_dir / "vae_transparent_encoder.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(LayerStackError, match="cannot be read as a safetensors file.*truncated"):
        files.read_layer_file(registry.get("vae_transparent_encoder"), str(bad))


def test_nan_or_inf_weights_are_refused_naming_the_file_and_tensors(scratch_dir):
    state_dict = _official_like("vae_transparent_encoder")
    key = sorted(state_dict)[0]
    state_dict[key] = state_dict[key].clone()
    state_dict[key].view(-1)[:2] = torch.tensor([float("nan"), float("inf")])
    bad = _write(scratch_dir / "vae_transparent_encoder.safetensors", state_dict)
    with pytest.raises(LayerStackError, match=rf"{bad}: is not a usable .*: 1 tensor\(s\) hold NaN or inf values: "
                                              rf"{key} \(2 of \d+\)\. The file is damaged"):
        files.read_layer_file(registry.get("vae_transparent_encoder"), str(bad))


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_file_server(scratch_dir):
    served = scratch_dir / "served"
    served.mkdir()
    handler = lambda *a, **k: _Files(*a, directory=str(served), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_download_is_opt_in_validated_and_atomic(scratch_dir, loopback_file_server, monkeypatch):
    served, base_url = loopback_file_server
    entry = registry.get("vae_transparent_encoder")
    _write(served / entry.filename, _official_like(entry.id))
    (served / "wrong.safetensors").write_bytes((served / entry.filename).read_bytes()[:100])
    target_dir = scratch_dir / "layer_model"
    monkeypatch.setattr(files, "layer_model_folders", lambda: [str(target_dir)])
    monkeypatch.delenv(files.DOWNLOAD_ENV, raising=False)

    # A broken download leaves nothing behind.
    with pytest.raises(LayerStackError, match="cannot be read as a safetensors file"):
        files.download_layer_file(entry, url=base_url + "wrong.safetensors")
    assert os.listdir(target_dir) == []

    path = files.download_layer_file(entry, url=base_url + entry.filename)
    assert os.path.basename(path) == entry.filename
    assert sorted(os.listdir(target_dir)) == [entry.filename]
    assert set(files.load_layer_file(entry).state_dict) == set(_official_like(entry.id))

    # Never overwrites.
    with pytest.raises(LayerStackError, match="never overwrites"):
        files.download_layer_file(entry, url=base_url + entry.filename)


def test_download_needs_the_option_or_the_environment_variable(monkeypatch):
    monkeypatch.delenv(files.DOWNLOAD_ENV, raising=False)
    assert not files.download_allowed()
    assert files.download_allowed(True)
    monkeypatch.setenv(files.DOWNLOAD_ENV, "1")
    assert files.download_allowed()


