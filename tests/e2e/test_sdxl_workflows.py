"""Every SDXL layer mode's example workflow (workflows/api/sdxl_*.json) through a real ComfyUI server.

Each workflow is made tiny (64 x 64 px, 1 step, 1 decoder pass) and all six run as one prompt, at batch 1 and at
batch 3, on the random-weight SDXL fixture; then the old ComfyUI-layerdiffuse ids run in a workflow shaped like
that pack's examples. Random weights give random pictures, so the checks are on what came out: count, size, mode.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MODES = ("sdxl_transparent_attn", "sdxl_transparent_conv", "sdxl_fg2ble", "sdxl_bg2ble", "sdxl_fgble2bg",
         "sdxl_bgble2fg")
TRANSPARENT = {"sdxl_transparent_attn", "sdxl_transparent_conv", "sdxl_bgble2fg"}
SIZE = 64


@pytest.fixture(scope="module")
def layer_images(comfy_server, tmp_path_factory):
    """The condition images the workflows load, in another size than the generation (so they are fitted)."""
    folder = tmp_path_factory.mktemp("sdxl_layers")
    rng = np.random.default_rng(0)
    foreground = rng.integers(0, 256, (48, 96, 4), dtype=np.uint8)
    foreground[:, :30, 3] = 0  # a transparent strip: grey-composited by the node
    images = {"layerstack_foreground.png": Image.fromarray(foreground, "RGBA"),
              "layerstack_background.png": Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)),
              "layerstack_blended.png": Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))}
    for name, image in images.items():
        image.save(folder / name)
        assert comfy_server.upload_image(folder / name) == name
    return images


def tiny(prompt: dict, checkpoint: str, batch: int) -> dict:
    """The example made test-sized (and its prompts shared); every other input stays as shipped."""
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = checkpoint
        elif kind == "EmptyLatentImage":
            inputs.update(width=SIZE, height=SIZE, batch_size=batch)
        elif kind == "CLIPTextEncode":  # one text for all modes: ComfyUI's cache then encodes it once
            inputs["text"] = "test" if inputs["text"] != "bad, ugly, blurry" else "bad"
        elif kind == "KSampler":
            inputs["steps"] = 1
        elif kind == "LayerStackTransparentDecode":
            inputs["passes"] = "1"
        elif kind.startswith("LayerStackSDXL") and "width" in inputs:
            inputs.update(width=SIZE, height=SIZE)
    return prompt


def prefixed(prompt: dict, prefix: str) -> dict:
    """Node ids made unique across workflows merged into one prompt."""
    out = {}
    for nid, node in prompt.items():
        inputs = {k: [f"{prefix}{v[0]}", v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
        out[f"{prefix}{nid}"] = {**node, "inputs": inputs}
    return out


def saved_images(comfy_server, history: dict, node_id: str) -> list[Image.Image]:
    files = history["outputs"][node_id]["images"]
    return [Image.open(io.BytesIO(comfy_server.fetch(f))) for f in files]


@pytest.mark.parametrize("batch", [1, 3])
def test_every_sdxl_mode_runs_end_to_end(comfy_server, fixture_paths, layer_images, batch):
    merged = {}
    save_nodes = {}
    for mode in MODES:
        prompt = tiny(json.loads((ROOT / "workflows" / "api" / f"{mode}.json").read_text()),
                      fixture_paths["sdxl_checkpoint"].name, batch)
        merged.update(prefixed(prompt, f"{mode}."))
        (save_id,) = [nid for nid, n in prompt.items() if n["class_type"] in ("SaveImage", "LayerStackSaveRGBA")]
        save_nodes[mode] = f"{mode}.{save_id}"
    history = comfy_server.run(merged, timeout=1500)
    for mode, node_id in save_nodes.items():
        images = saved_images(comfy_server, history, node_id)
        assert len(images) == batch, mode
        for image in images:
            assert image.size == (SIZE, SIZE), mode
            assert image.mode == ("RGBA" if mode in TRANSPARENT else "RGB"), mode


def test_old_layerdiffuse_ids_run_a_workflow_made_for_that_pack(comfy_server, fixture_paths, layer_images):
    """Apply (attention injection, which the old pack silently drops today), Cond and Diff Apply with VAE-encoded
    layers, decoded with the old decode id, exactly as ComfyUI-layerdiffuse's example workflows wire them."""
    checkpoint = fixture_paths["sdxl_checkpoint"].name
    prompt = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a man sitting", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad", "clip": ["ckpt", 1]}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 2}},
        "bg_img": {"class_type": "LoadImage", "inputs": {"image": "layerstack_blended.png"}},
        "bg": {"class_type": "VAEEncode", "inputs": {"pixels": ["bg_img", 0], "vae": ["ckpt", 2]}},
        # transparent foreground by attention injection -> old RGBA decode
        "fg_apply": {"class_type": "LayeredDiffusionApply",
                     "inputs": {"model": ["ckpt", 0], "config": "SDXL, Attention Injection", "weight": 1.0}},
        "fg_sample": _ksampler("fg_apply", 0, "pos", 0, "neg", 0),
        "fg_decode": {"class_type": "VAEDecode", "inputs": {"samples": ["fg_sample", 0], "vae": ["ckpt", 2]}},
        "fg_rgba": {"class_type": "LayeredDiffusionDecodeRGBA",
                    "inputs": {"samples": ["fg_sample", 0], "images": ["fg_decode", 0], "sd_version": "SDXL",
                               "sub_batch_size": 16}},
        "fg_save": {"class_type": "SaveImage", "inputs": {"images": ["fg_rgba", 0], "filename_prefix": "old_fg"}},
        # background -> blended, then background + that blended -> transparent foreground (cond_fg_all.json)
        "ble_apply": {"class_type": "LayeredDiffusionCondApply",
                      "inputs": {"model": ["ckpt", 0], "cond": ["pos", 0], "uncond": ["neg", 0], "latent": ["bg", 0],
                                 "config": "SDXL, Background", "weight": 1.0}},
        "ble_sample": _ksampler("ble_apply", 0, "ble_apply", 1, "ble_apply", 2),
        "diff_apply": {"class_type": "LayeredDiffusionDiffApply",
                       "inputs": {"model": ["ckpt", 0], "cond": ["pos", 0], "uncond": ["neg", 0],
                                  "blended_latent": ["ble_sample", 0], "latent": ["bg", 0],
                                  "config": "SDXL, Background", "weight": 1.0}},
        "diff_sample": _ksampler("diff_apply", 0, "diff_apply", 1, "diff_apply", 2),
        "diff_decode": {"class_type": "VAEDecode", "inputs": {"samples": ["diff_sample", 0], "vae": ["ckpt", 2]}},
        "diff_rgba": {"class_type": "LayeredDiffusionDecodeRGBA",
                      "inputs": {"samples": ["diff_sample", 0], "images": ["diff_decode", 0], "sd_version": "SDXL",
                                 "sub_batch_size": 16}},
        "diff_save": {"class_type": "SaveImage", "inputs": {"images": ["diff_rgba", 0], "filename_prefix": "old_diff"}},
    }
    history = comfy_server.run(prompt, timeout=1200)
    for node_id in ("fg_save", "diff_save"):
        images = saved_images(comfy_server, history, node_id)
        assert [(im.size, im.mode) for im in images] == [((SIZE, SIZE), "RGBA")] * 2


def _ksampler(model: str, model_slot: int, positive: str, positive_slot: int, negative: str, negative_slot: int):
    return {"class_type": "KSampler",
            "inputs": {"model": [model, model_slot], "positive": [positive, positive_slot],
                       "negative": [negative, negative_slot], "latent_image": ["empty", 0], "seed": 1, "steps": 1,
                       "cfg": 2.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}
