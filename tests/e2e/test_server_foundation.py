"""A real ComfyUI server loads the pack cleanly and runs workflows on the fixture checkpoints."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fixtures.server import PromptFailed


def test_pack_loads_without_import_failure_or_warning(comfy_server):
    log = comfy_server.startup_log
    assert "IMPORT FAILED" not in log  # neither the pack nor any ComfyUI node failed to import
    pack_lines = [line for line in log.splitlines() if "layerstack" in line.lower()]
    assert pack_lines, "the start-up log does not mention the pack at all"
    assert not [line for line in pack_lines if "warning" in line.lower() or "error" in line.lower()], pack_lines
    info = comfy_server.object_info()
    assert "LayerStackFetchLayerFile" in info
    assert len(info) > 400  # ComfyUI's own nodes are there too


def test_layer_model_folder_keeps_the_yaml_entry_first(comfy_server, fixture_paths):
    import requests

    listed = requests.get(f"{comfy_server.url}/models/layer_model", timeout=30).json()
    assert "vae_transparent_decoder.safetensors" in listed


def _txt2img(checkpoint: str, prefix: str, batch: int = 1) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a glass bottle"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "seed": 1,
            "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }


@pytest.mark.parametrize("family", ["SD15", "SDXL"])
def test_fixture_checkpoint_samples_end_to_end(comfy_server, fixture_paths, family):
    checkpoint = fixture_paths[f"{family.lower()}_checkpoint"].name
    history = comfy_server.run(_txt2img(checkpoint, f"foundation_{family}"))
    images = history["outputs"]["7"]["images"]
    assert len(images) == 1
    image = Image.open(io.BytesIO(comfy_server.fetch(images[0])))
    assert image.size == (64, 64)
    assert np.asarray(image).std() > 0  # a real decode of a random model, not a flat image


def test_fetch_layer_file_node_validates_present_files(comfy_server):
    prompt = {"1": {"class_type": "LayerStackFetchLayerFile",
                    "inputs": {"file": "vae_transparent_encoder.safetensors", "allow_download": False}}}
    history = comfy_server.run(prompt)
    assert "vae_transparent_encoder.safetensors" in str(history["outputs"]["1"])


def test_bad_prompt_reports_comfyui_error_and_server_keeps_serving(comfy_server):
    bad = _txt2img("no_such_checkpoint.safetensors", "never_written")
    with pytest.raises(PromptFailed, match="no_such_checkpoint"):
        comfy_server.run(bad)
    assert comfy_server.object_info("LayerStackFetchLayerFile")
