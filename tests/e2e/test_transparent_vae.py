"""Transparent encode -> sample -> decode through a real ComfyUI server, with the fixture checkpoints and the
official-shape (random) decoder/encoder files: the graph a user builds to refine an RGBA asset."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.server import PromptFailed
from fixtures.workflows import api_workflow

ROOT = Path(__file__).resolve().parents[2]


def _rgba_png(path, width=64, height=64):
    yy, xx = np.mgrid[-1:1:height * 1j, -1:1:width * 1j]
    alpha = (((yy**2 + xx**2) < 0.5) * 255).astype(np.uint8)
    rgb = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)


def _refine_prompt(checkpoint: str, image_name: str, family: str, prefix: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        # 'family' deliberately wrong: the connected MODEL decides
        "3": {"class_type": "LayerStackLoadTransparentVAE",
              "inputs": {"family": "SDXL" if family == "SD15" else "SD15", "allow_download": False,
                         "model": ["1", 0]}},
        "4": {"class_type": "LayerStackTransparentEncode", "inputs": {
            "layer_vae": ["3", 0], "vae": ["1", 2], "image": ["2", 0], "mask": ["2", 1],
            "mask_meaning": "LoadImage mask (1 = transparent)", "offset_multiplier": 1.0}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a glass bottle"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["4", 0], "seed": 3,
            "steps": 2, "cfg": 3.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.5}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "LayerStackTransparentDecode", "inputs": {
            "layer_vae": ["3", 0], "samples": ["7", 0], "images": ["8", 0], "passes": "8", "sub_batch_size": 0}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 2], "filename_prefix": f"{prefix}_rgba"}},
        "11": {"class_type": "LayerStackPreviewRGBA", "inputs": {"image": ["9", 0], "alpha": ["9", 1]}},
        # the old pack's node id on the same latent: must give the same RGBA
        "12": {"class_type": "LayeredDiffusionDecodeRGBA", "inputs": {
            "samples": ["7", 0], "images": ["8", 0], "sd_version": family, "sub_batch_size": 16}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": f"{prefix}_legacy"}},
    }


def _png(server, history, node):
    images = history["outputs"][node]["images"]
    assert len(images) == 1
    return Image.open(io.BytesIO(server.fetch(images[0])))


# SD1.5 with a size that is no multiple of 8: encode crops it (rgb and alpha alike) as VAEEncode does.
@pytest.mark.parametrize("family, size", [("SD15", (83, 70)), ("SDXL", (64, 64))])
def test_rgba_refine_end_to_end(comfy_server, fixture_paths, scratch_dir, family, size):
    _rgba_png(scratch_dir / "asset.png", *size)
    cropped = (size[0] // 8 * 8, size[1] // 8 * 8)
    name = comfy_server.upload_image(scratch_dir / "asset.png", f"layerstack_asset_{family}.png")
    checkpoint = fixture_paths[f"{family.lower()}_checkpoint"].name
    history = comfy_server.run(_refine_prompt(checkpoint, name, family, f"tvae_{family}"), timeout=900)

    rgba = _png(comfy_server, history, "10")
    assert rgba.mode == "RGBA" and rgba.size == cropped
    pixels = np.asarray(rgba)
    assert pixels[..., 3].std() > 0 and pixels[..., :3].std() > 0  # a real decode, not a flat image

    legacy = np.asarray(_png(comfy_server, history, "13"))
    assert np.abs(legacy.astype(int) - pixels.astype(int)).max() <= 1  # 8-bit rounding at most

    preview = np.asarray(_png(comfy_server, history, "11")).astype(int)
    assert preview.shape == (cropped[1], cropped[0], 3)
    # every pixel is its colour over a 0.45 or 0.55 grey square, weighted by alpha (8-bit rounding allowed)
    alpha = pixels[..., 3:] / 255.0
    over_dark = pixels[..., :3] * alpha + 0.45 * 255 * (1 - alpha)
    over_light = pixels[..., :3] * alpha + 0.55 * 255 * (1 - alpha)
    error = np.minimum(np.abs(preview - over_dark), np.abs(preview - over_light)).max()
    assert error <= 2.5


def test_size_mismatch_is_reported_with_both_sizes(comfy_server, fixture_paths):
    checkpoint = fixture_paths["sd15_checkpoint"].name
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 64, "batch_size": 1, "color": 0}},
        "4": {"class_type": "LayerStackLoadTransparentVAE", "inputs": {"family": "SD15", "allow_download": False}},
        "5": {"class_type": "LayerStackTransparentDecode", "inputs": {
            "layer_vae": ["4", 0], "samples": ["2", 0], "images": ["3", 0], "passes": "1", "sub_batch_size": 0}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    with pytest.raises(PromptFailed, match=r"the image is 128x64 but the latent is 8x8 \(= 64x64 pixels\)"):
        comfy_server.run(prompt)


def test_transparent_refine_template_runs(comfy_server, fixture_paths, scratch_dir):
    """The refine template (tests/data/workflows_api/transparent_refine.json) made tiny (1 step, 1 decoder pass) on the SDXL fixture."""
    prompt = api_workflow("transparent_refine")
    _rgba_png(scratch_dir / "layerstack_rgba_asset.png")
    assert prompt["2"]["inputs"]["image"] == "layerstack_rgba_asset.png"  # the shipped sample it loads
    prompt["2"]["inputs"]["image"] = comfy_server.upload_image(scratch_dir / "layerstack_rgba_asset.png")
    prompt["1"]["inputs"]["ckpt_name"] = fixture_paths["sdxl_checkpoint"].name
    prompt["8"]["inputs"]["steps"] = 1
    prompt["10"]["inputs"]["passes"] = "1"
    prompt["12"]["inputs"]["filename_prefix"] = "tvae_template/refine"
    history = comfy_server.run(prompt, timeout=900)
    saved = _png(comfy_server, history, "12")
    assert saved.mode == "RGBA" and saved.size == (64, 64)
    assert history["outputs"]["11"]["images"]  # the checkerboard preview
