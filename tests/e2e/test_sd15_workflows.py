"""Every SD1.5 attention-sharing mode's example workflow (tests/data/workflows_api/sd15_*.json, twins of the templates) through a real ComfyUI server.

The four workflows are made tiny (64 x 64 px, 1 step, 1 decoder pass) and run as one prompt, at N = 1 and N = 2 sets;
then old ComfyUI-layerdiffuse SD1.5 ids run in a workflow shaped like that pack's examples, and a wrong batch is
refused with the specific message. Random weights give random pictures, so the checks are on what came out: count,
size, mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.server import SERVER_RUN_TIMEOUT_S, PromptFailed
from fixtures.workflows import api_workflow, prefixed, saved_images

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
# mode -> save node title -> (expected PNG mode)
MODES = {
    "sd15_transparent": {"Save Foreground (RGBA)": "RGBA"},
    "sd15_joint": {"Save Foreground (RGBA)": "RGBA", "Save Background": "RGB", "Save Blended": "RGB"},
    "sd15_fg2bg": {"Save Background": "RGB", "Save Blended": "RGB"},
    "sd15_bg2fg": {"Save Foreground (RGBA)": "RGBA", "Save Blended": "RGB"},
}


@pytest.fixture(scope="module")
def control_images(comfy_server, tmp_path_factory):
    """Condition images of another size than the generation (fitted by the node), the foreground RGBA."""
    folder = tmp_path_factory.mktemp("sd15_layers")
    rng = np.random.default_rng(1)
    foreground = rng.integers(0, 256, (96, 48, 4), dtype=np.uint8)
    foreground[:20, :, 3] = 0
    images = {"layerstack_sd15_foreground.png": Image.fromarray(foreground, "RGBA"),
              "layerstack_sd15_background.png": Image.fromarray(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8))}
    names = {}
    for name, image in images.items():
        image.save(folder / name)
        names[name] = comfy_server.upload_image(folder / name)
    return {"layerstack_foreground.png": names["layerstack_sd15_foreground.png"],
            "layerstack_background.png": names["layerstack_sd15_background.png"]}


def tiny(prompt: dict, checkpoint: str, sets: int, images: dict) -> dict:
    """The example made test-sized; every other input stays as shipped."""
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = checkpoint
        elif kind == "EmptyLatentImage":
            inputs.update(width=SIZE, height=SIZE, batch_size=sets)
        elif kind == "KSampler":
            inputs["steps"] = 1
        elif kind == "LayerStackSD15SplitLayers":
            inputs["passes"] = "1"
        elif kind == "LoadImage":
            inputs["image"] = images[inputs["image"]]
    return prompt


@pytest.mark.parametrize("sets", [1, 2])
def test_every_sd15_mode_runs_end_to_end(comfy_server, fixture_paths, control_images, sets):
    merged, saves = {}, {}
    for mode, expected in MODES.items():
        prompt = tiny(api_workflow(mode),
                      fixture_paths["sd15_checkpoint"].name, sets, control_images)
        merged.update(prefixed(prompt, f"{mode}."))
        by_title = {n["_meta"]["title"]: nid for nid, n in prompt.items()}
        for title, image_mode in expected.items():
            saves[(mode, title)] = (f"{mode}.{by_title[title]}", image_mode)
    history = comfy_server.run(merged, timeout=SERVER_RUN_TIMEOUT_S)
    for (mode, title), (node_id, image_mode) in saves.items():
        images = saved_images(comfy_server, history, node_id)
        assert [(im.size, im.mode) for im in images] == [((SIZE, SIZE), image_mode)] * sets, (mode, title)


def _base(checkpoint: str, batch: int) -> dict:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dog sitting in a room", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad", "clip": ["ckpt", 1]}},
        "fg_text": {"class_type": "CLIPTextEncode", "inputs": {"text": "a sitting dog", "clip": ["ckpt", 1]}},
        "bg_text": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cozy room", "clip": ["ckpt", 1]}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": batch}},
    }


def _sample_and_decode(prefix: str, model: str, latent: str) -> dict:
    return {
        f"{prefix}_sample": {"class_type": "KSampler",
                             "inputs": {"model": [model, 0], "positive": ["pos", 0], "negative": ["neg", 0],
                                        "latent_image": [latent, 0], "seed": 1, "steps": 1, "cfg": 2.0,
                                        "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        f"{prefix}_decode": {"class_type": "VAEDecode",
                             "inputs": {"samples": [f"{prefix}_sample", 0], "vae": ["ckpt", 2]}},
    }


def _save(images: list, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}


def test_old_layerdiffuse_sd15_ids_run_a_workflow_made_for_that_pack(comfy_server, fixture_paths, control_images):
    """CondJointApply (batch 2N, an image, a per-layer cond) and Apply's SD15 config, decoded with the old split /
    RGBA decode ids. (JointApply and the old pack's own SD1.5 examples run in test_legacy_workflows.py.)"""
    prompt = _base(fixture_paths["sd15_checkpoint"].name, 2)
    prompt.update({
        "empty1": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        "bg_image": {"class_type": "LoadImage", "inputs": {"image": control_images["layerstack_background.png"]}},
        "cond": {"class_type": "LayeredDiffusionCondJointApply",
                 "inputs": {"model": ["ckpt", 0], "image": ["bg_image", 0],
                            "config": "SD15, Background, attn_sharing, Batch size (2N)", "cond": ["fg_text", 0]}},
        **_sample_and_decode("cond", "cond", "empty"),
        "cond_split": {"class_type": "LayeredDiffusionDecodeSplit",
                       "inputs": {"samples": ["cond_sample", 0], "images": ["cond_decode", 0], "frames": 2,
                                  "sd_version": "SD15", "sub_batch_size": 16}},
        "cond_save": _save(["cond_split", 0], "old_cond_fg"),
        "cond_save_blended": _save(["cond_split", 1], "old_cond_blended"),
        "fg": {"class_type": "LayeredDiffusionApply",
               "inputs": {"model": ["ckpt", 0], "config": "SD15, Attention Injection, attn_sharing", "weight": 1.0}},
        **_sample_and_decode("fg", "fg", "empty1"),
        "fg_rgba": {"class_type": "LayeredDiffusionDecodeRGBA",
                    "inputs": {"samples": ["fg_sample", 0], "images": ["fg_decode", 0], "sd_version": "SD15",
                               "sub_batch_size": 16}},
        "fg_save": _save(["fg_rgba", 0], "old_fg"),
    })
    history = comfy_server.run(prompt, timeout=SERVER_RUN_TIMEOUT_S)
    expected = {"cond_save": "RGBA", "cond_save_blended": "RGB", "fg_save": "RGBA"}
    for node_id, image_mode in expected.items():
        assert [(im.size, im.mode) for im in saved_images(comfy_server, history, node_id)] == [((SIZE, SIZE), image_mode)]


def test_batch_that_is_not_a_multiple_is_refused_through_the_server(comfy_server, fixture_paths):
    prompt = _base(fixture_paths["sd15_checkpoint"].name, 2)
    prompt.update({
        "joint": {"class_type": "LayeredDiffusionJointApply",
                  "inputs": {"model": ["ckpt", 0], "config": "SD15, attn_sharing, Batch size (3N)"}},
        **_sample_and_decode("joint", "joint", "empty"),
        "save": _save(["joint_decode", 0], "never"),
    })
    with pytest.raises(PromptFailed) as info:
        comfy_server.run(prompt, timeout=900)
    message = str(info.value)
    assert "LayeredDiffusionJointApply: input 'latent batch' expected a multiple of 3" in message and "got 2" in message
