"""The Flux templates' API twins in a real server, on the fixtures.

FLUX.1-dev and its T5-XXL text encoder cannot be fixtures here (ComfyUI detects only full-width Flux models, and
T5-XXL has a fixed size), so the sampling part of each twin is swapped: the KSampler's LATENT comes from LoadLatent
(a random Flux latent) or, for the refine template, straight from Transparent Encode (what denoise 0 would give).
Everything after it — VAE decode with a Flux VAE, Load Transparent VAE (Flux), Transparent Decode (8 passes), RGBA
preview/save, layer stack and PSD — runs as the template has it. The Apply Flux Layer LoRA node is tested in-process
on a tiny Flux model (tests/host/test_flux_layer_lora.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from fixtures.flux import FLUX_VAE_NAME
from fixtures.server import SERVER_RUN_TIMEOUT_S
from fixtures.workflows import api_workflow, prefixed, saved_images

GENERATION = {"1", "2", "4", "5", "6", "7", "8"}  # UNETLoader, DualCLIPLoader, LoRA, prompts, guidance, latent source


def _without_generation(prompt: dict, latent_source: list) -> dict:
    """The twin with its sampling part swapped for `latent_source` (see the module docstring)."""
    out = {}
    for nid, node in prompt.items():
        if nid in GENERATION - {"8"} or nid == "9":
            continue
        inputs = dict(node["inputs"])
        for name, value in node["inputs"].items():
            if value == ["9", 0]:
                inputs[name] = latent_source
        if node["class_type"] == "LayerStackLoadTransparentVAE":
            inputs.pop("model", None)  # no Flux MODEL here; the family widget says Flux
            assert inputs["family"] == "Flux"
        if node["class_type"] == "VAELoader":
            inputs["vae_name"] = FLUX_VAE_NAME
        if node["class_type"] == "EmptyImage":  # the background layer: the size of the 64x64 fixture latent's image
            inputs.update(width=64, height=64)
        out[nid] = {**node, "inputs": inputs}
    return out


@pytest.fixture
def flux_latent(comfy_server):
    name = "layerstack_e2e_flux_template.latent"
    latent = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    safetensors.torch.save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])},
                                str(comfy_server.input_dir / name))
    return name


@pytest.mark.parametrize("slug", ["flux_transparent", "stack_flux_transparent_psd"])
def test_flux_text_to_image_templates_decode_and_save(comfy_server, flux_latent, slug):
    twin = api_workflow(slug)
    assert twin["9"]["class_type"] == "KSampler" and twin["9"]["inputs"]["steps"] == 50
    assert twin["9"]["inputs"]["cfg"] == 1.0 and twin["6"]["inputs"]["guidance"] == 3.5
    assert twin["4"]["class_type"] == "LayerStackApplyFluxLayerLoRA" and twin["9"]["inputs"]["model"] == ["4", 0]
    prompt = _without_generation(twin, ["9", 0])
    prompt = {k: v for k, v in prompt.items() if k != "8"}
    prompt["9"] = {"class_type": "LoadLatent", "inputs": {"latent": flux_latent}}
    prompt = prefixed(prompt, f"{slug}_")
    for node in prompt.values():
        if "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] = f"{slug}/{node['inputs']['filename_prefix'].split('/')[-1]}"
    history = comfy_server.run(prompt, timeout=SERVER_RUN_TIMEOUT_S)

    rgba = saved_images(comfy_server, history, f"{slug}_14")
    assert len(rgba) == 1 and rgba[0].mode == "RGBA" and rgba[0].size == (64, 64)
    assert np.asarray(rgba[0])[..., 3].std() > 0
    if slug == "stack_flux_transparent_psd":
        psd = history["outputs"][f"{slug}_18"]
        assert [f for f in psd["psd"] if f["filename"].endswith(".psd")]


def test_flux_refine_template_encodes_decodes_and_saves(comfy_server, scratch_dir):
    twin = api_workflow("flux_transparent_refine")
    assert twin["9"]["inputs"]["denoise"] == 0.8 and twin["6"]["inputs"]["guidance"] == 7.0
    assert twin["9"]["inputs"]["latent_image"] == ["16", 0]
    rgb = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    alpha = ((np.mgrid[0:64, 0:64][1] < 40) * 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(scratch_dir / "layerstack_rgba_asset.png")
    assert twin["8"]["inputs"]["image"] == "layerstack_rgba_asset.png"  # the shipped sample it loads
    twin["8"]["inputs"]["image"] = comfy_server.upload_image(scratch_dir / "layerstack_rgba_asset.png")
    prompt = prefixed(_without_generation(twin, ["16", 0]), "flux_refine_")
    prompt["flux_refine_14"]["inputs"]["filename_prefix"] = "flux_refine/rgba"
    history = comfy_server.run(prompt, timeout=SERVER_RUN_TIMEOUT_S)
    saved = saved_images(comfy_server, history, "flux_refine_14")
    assert len(saved) == 1 and saved[0].mode == "RGBA" and saved[0].size == (64, 64)
    assert history["outputs"]["flux_refine_13"]["images"]
