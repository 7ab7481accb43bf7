"""Every SDXL layer mode's example workflow (tests/data/workflows_api/sdxl_*.json, twins of the templates) through a real ComfyUI server.

Each workflow is made tiny (64 x 64 px, 1 step, 1 decoder pass) and all of them (the six modes, background ->
blended -> transparent foreground in two passes, and fg + blended -> background stopped at 0.5) run as one prompt, at
batch 1 and at batch 3, on the random-weight SDXL fixture; then the old id's attention injection. Random weights give
random pictures, so the checks are on what came out: count, size, mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.server import SERVER_RUN_TIMEOUT_S
from fixtures.workflows import api_workflow, prefixed, saved_images

ROOT = Path(__file__).resolve().parents[2]
# workflow -> save node title -> PNG mode it writes
WORKFLOWS = {
    "sdxl_transparent_attn": {"Save Transparent Foreground": "RGBA"},
    "sdxl_transparent_conv": {"Save Transparent Foreground": "RGBA"},
    "sdxl_fg2ble": {"Save Blended": "RGB"},
    "sdxl_bg2ble": {"Save Blended": "RGB"},
    "sdxl_fgble2bg": {"Save Background": "RGB"},
    "sdxl_bgble2fg": {"Save Transparent Foreground": "RGBA"},
    "sdxl_bg2ble2fg": {"Save Blended": "RGB", "Save Transparent Foreground": "RGBA"},
    "sdxl_fgble2bg_stop_at": {"Save Background": "RGB"},
}
SIZE = 64


@pytest.fixture(scope="module")
def layer_images(comfy_server, tmp_path_factory):
    """The condition images the workflows load, in another size than the generation (so they are fitted): the
    workflow's image name -> the uploaded copy's name."""
    folder = tmp_path_factory.mktemp("sdxl_layers")
    rng = np.random.default_rng(0)
    foreground = rng.integers(0, 256, (48, 96, 4), dtype=np.uint8)
    foreground[:, :30, 3] = 0  # a transparent strip: grey-composited by the node
    images = {"layerstack_foreground.png": Image.fromarray(foreground, "RGBA"),
              "layerstack_background.png": Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)),
              "layerstack_blended.png": Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))}
    uploaded = {}
    for name, image in images.items():
        image.save(folder / name)
        uploaded[name] = comfy_server.upload_image(folder / name)
    return uploaded


def tiny(prompt: dict, checkpoint: str, batch: int, images: dict) -> dict:
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
        elif kind == "LoadImage":
            inputs["image"] = images[inputs["image"]]
    return prompt


@pytest.mark.parametrize("batch", [1, 3])
def test_every_sdxl_mode_runs_end_to_end(comfy_server, fixture_paths, layer_images, batch):
    merged = {}
    save_nodes = {}
    for name, saves in WORKFLOWS.items():
        prompt = tiny(api_workflow(name), fixture_paths["sdxl_checkpoint"].name, batch, layer_images)
        merged.update(prefixed(prompt, f"{name}."))
        by_title = {n["_meta"]["title"]: nid for nid, n in prompt.items()
                    if n["class_type"] in ("SaveImage", "LayerStackSaveRGBA")}
        assert sorted(by_title) == sorted(saves), name  # every save node of the template is checked
        for title, image_mode in saves.items():
            save_nodes[(name, title)] = (f"{name}.{by_title[title]}", image_mode)
    history = comfy_server.run(merged, timeout=SERVER_RUN_TIMEOUT_S)
    for (name, title), (node_id, image_mode) in save_nodes.items():
        images = saved_images(comfy_server, history, node_id)
        assert [(im.size, im.mode) for im in images] == [((SIZE, SIZE), image_mode)] * batch, (name, title)


def test_old_apply_runs_sdxl_attention_injection(comfy_server, fixture_paths):
    """The one old SDXL config none of the old pack's examples uses (tests/e2e/test_legacy_workflows.py runs those):
    attention injection, which that pack silently drops on current ComfyUI, wired like its examples. Beside it the
    same sampling on the unpatched model: a dropped injection would give exactly its pictures."""
    prompt = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": fixture_paths["sdxl_checkpoint"].name}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "test", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad", "clip": ["ckpt", 1]}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 2}},
        "apply": {"class_type": "LayeredDiffusionApply",
                  "inputs": {"model": ["ckpt", 0], "config": "SDXL, Attention Injection", "weight": 1.0}},
        "sample": {"class_type": "KSampler",
                   "inputs": {"model": ["apply", 0], "positive": ["pos", 0], "negative": ["neg", 0],
                              "latent_image": ["empty", 0], "seed": 1, "steps": 1, "cfg": 2.0,
                              "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "rgba": {"class_type": "LayeredDiffusionDecodeRGBA",
                 "inputs": {"samples": ["sample", 0], "images": ["decode", 0], "sd_version": "SDXL",
                            "sub_batch_size": 16}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["rgba", 0], "filename_prefix": "old_attn"}},
        "save_rgb": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "old_attn_rgb"}},
    }
    plain = {"plain_sample": {**prompt["sample"], "inputs": {**prompt["sample"]["inputs"], "model": ["ckpt", 0]}},
             "plain_decode": {"class_type": "VAEDecode", "inputs": {"samples": ["plain_sample", 0], "vae": ["ckpt", 2]}},
             "plain_save": {"class_type": "SaveImage",
                            "inputs": {"images": ["plain_decode", 0], "filename_prefix": "old_attn_plain"}}}
    history = comfy_server.run({**prompt, **plain}, timeout=900)
    images = saved_images(comfy_server, history, "save")
    assert [(im.size, im.mode) for im in images] == [((SIZE, SIZE), "RGBA")] * 2
    patched = [np.asarray(im) for im in saved_images(comfy_server, history, "save_rgb")]
    unpatched = [np.asarray(im) for im in saved_images(comfy_server, history, "plain_save")]
    assert len(patched) == len(unpatched) == 2
    assert not any(np.array_equal(a, b) for a, b in zip(patched, unpatched)), "the attention injection had no effect"
