"""The layered templates run end to end on a real server: the split template as shipped (sample picture + mask), and
the Qwen-Image-Layered template with its generative part (loaders, sampler, VAE decode) replaced by a synthetic
RGBA batch of the decoder's shape, loaded from an animated PNG, so everything after the decode runs as shipped."""

from __future__ import annotations

import io
import uuid

import numpy as np
from PIL import Image
from psd_tools import PSDImage

from fixtures.layered_files import psd_layer_on_canvas, read_ora
from fixtures.workflows import TEMPLATE_DIR, api_workflow

SAMPLES = TEMPLATE_DIR / "input"


def unique_prefixes(prompt: dict) -> dict:
    tag = uuid.uuid4().hex[:8]
    for node in prompt.values():
        if "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] += f"_{tag}"
    return prompt


def test_split_template_cuts_the_sample_picture_into_psd_and_ora(comfy_server):
    prompt = unique_prefixes(api_workflow("stack_split_by_mask"))
    outputs = comfy_server.run(prompt, timeout=600)["outputs"]
    with Image.open(SAMPLES / "layerstack_mask.png") as im:
        mask = np.asarray(im.convert("RGB"))[..., 0]
    psd = PSDImage.open(io.BytesIO(comfy_server.fetch(outputs["4"]["psd"][0])))
    assert [layer.name for layer in psd] == ["background", "foreground"] and psd.size == (1024, 1024)
    foreground = psd_layer_on_canvas(psd, psd[1])
    background = psd_layer_on_canvas(psd, psd[0])
    assert np.abs(foreground[..., 3].astype(int) - mask).max() <= 1  # the mask is the foreground's alpha
    assert (background[..., 3][mask == 255] == 0).all() and (background[..., 3][mask < 255] == 255).all()  # hole
    ora = read_ora(comfy_server.fetch(outputs["5"]["ora"][0]))
    assert [layer["name"] for layer in ora["layers"]] == ["background", "foreground"]
    assert np.array_equal(ora["layers"][1]["pixels"][..., 3], foreground[..., 3])
    with Image.open(SAMPLES / "layerstack_blended.png") as im:
        picture = np.asarray(im.convert("RGB"), dtype=np.float64)
    merged = ora["merged"].astype(np.float64)
    assert (merged[..., 3] == 255).all() and np.abs(merged[..., :3] - picture).mean() < 0.5  # recomposes


def synthetic_layers(count: int, height: int, width: int) -> np.ndarray:
    """What the layered VAE decode hands out: `count` RGBA frames, bottom first, an opaque bottom layer."""
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (count, height, width, 4), dtype=np.uint8)
    frames[0, ..., 3] = 255
    frames[1:, : height // 3, ..., 3] = 0  # holes, as cut-out layers have
    return frames


def test_qwen_template_after_the_decode_writes_the_layers_bottom_first(comfy_server, tmp_path):
    prompt = unique_prefixes(api_workflow("qwen_layered_to_psd_ora"))
    layers = prompt["12"]["inputs"]["layers"]
    frames = synthetic_layers(layers, 48, 64)
    path = tmp_path / "qwen_layers.png"
    images = [Image.fromarray(f, "RGBA") for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], format="PNG")  # an animated PNG, one frame each
    name = comfy_server.upload_image(path, f"layerstack_qwen_frames_{uuid.uuid4().hex[:8]}.png")
    # The decode (node 16) and everything feeding it give way to the synthetic batch: LoadImage yields the frames'
    # colours and LoadImage's inverted alpha, JoinImageWithAlpha makes them the RGBA IMAGE the decode would give.
    generative = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"}
    assert prompt["16"]["class_type"] == "VAEDecode" and prompt["17"]["inputs"]["images"] == ["16", 0]
    tail = {k: v for k, v in prompt.items() if k not in generative}
    assert all(ref[0] not in generative for node in tail.values() for ref in node["inputs"].values()
               if isinstance(ref, list) and ref != ["16", 0])
    tail["90"] = {"class_type": "LoadImage", "inputs": {"image": name}}
    tail["91"] = {"class_type": "JoinImageWithAlpha", "inputs": {"image": ["90", 0], "alpha": ["90", 1]}}
    tail["17"]["inputs"]["images"] = ["91", 0]
    outputs = comfy_server.run(tail, timeout=600)["outputs"]

    psd = PSDImage.open(io.BytesIO(comfy_server.fetch(outputs["18"]["psd"][0])))
    assert [layer.name for layer in psd] == [f"layer_{i}" for i in range(layers)]
    for layer, frame in zip(psd, frames):
        stored = psd_layer_on_canvas(psd, layer)
        visible = frame[..., 3] > 0
        assert np.array_equal(stored[..., 3], frame[..., 3]) and np.array_equal(stored[visible], frame[visible])
    ora = read_ora(comfy_server.fetch(outputs["19"]["ora"][0]))
    assert [layer["name"] for layer in ora["layers"]] == [f"layer_{i}" for i in range(layers)]
    for stored, frame in zip(ora["layers"], frames):
        assert np.array_equal(stored["pixels"][..., 3], frame[..., 3])

