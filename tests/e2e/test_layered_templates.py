"""The layered templates run end to end on a real server: the split template as shipped (sample picture + mask), the
Qwen-Image-Layered template with its generative part (loaders, sampler, VAE decode) replaced by a synthetic
RGBA batch of the decoder's shape, loaded from an animated PNG, so everything after the decode runs as shipped; and
the SDXL -> core LAYERS -> Create Layered Image template, as shipped on the random-weight SDXL fixture (made small) and
once more with its transparent decode replaced by a hard-edged synthetic cut-out, so the composite can be checked
pixel by pixel. The last needs core's LAYERS type and Create Layered Image (the newest host); elsewhere it is
skipped with that reason."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image
from psd_tools import PSDImage

from fixtures.layered_files import psd_layer_on_canvas, read_ora
from fixtures.workflows import TEMPLATE_DIR, api_workflow, not_on_this_host, prefixed

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
    name = comfy_server.upload_image(path, "layerstack_qwen_frames.png")
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



def test_sdxl_core_layers_template_composites_the_stack_in_create_layered_image(comfy_server, fixture_paths, tmp_path):
    reason = not_on_this_host("stack_sdxl_core_layers", comfy_server.object_info())
    if reason:
        pytest.skip(reason)
    twin = api_workflow("stack_sdxl_core_layers")
    assert [twin[n]["class_type"] for n in ("9", "11", "12", "13", "14")] == [
        "LayerStackTransparentDecode", "LayerStackFromText2Layer", "LayerStackToCoreLayers", "ImageCompositor",
        "SaveImage"]
    assert twin["13"]["inputs"] == {"compositor": {}, "layers": ["12", 0]}  # the widget-only input, as sent
    # As shipped, on the SDXL fixture at 64 x 64, 2 steps, 1 decoder pass.
    shipped = unique_prefixes(api_workflow("stack_sdxl_core_layers"))
    shipped["1"]["inputs"]["ckpt_name"] = fixture_paths["sdxl_checkpoint"].name
    shipped["5"]["inputs"].update(width=64, height=64)
    shipped["6"]["inputs"]["steps"] = 2
    shipped["9"]["inputs"]["passes"] = "1"
    shipped["10"]["inputs"].update(width=64, height=64)
    # The decode (and the sampling feeding it) replaced by a hard-edged cut-out: colours and LoadImage's inverted
    # alpha from an RGBA PNG, the alpha made 1 = opaque again by core's InvertMask; the rest runs as shipped, and
    # the LAYERS document is also read back into a stack and saved as PSD.
    rng = np.random.default_rng(7)
    cutout = rng.integers(0, 256, (48, 64, 4), dtype=np.uint8)
    cutout[..., 3] = 0
    cutout[20:44, 10:50, 3] = 255
    path = tmp_path / "cutout.png"
    Image.fromarray(cutout, "RGBA").save(path)
    name = comfy_server.upload_image(path, "layerstack_core_layers.png")
    synthetic = unique_prefixes({k: v for k, v in api_workflow("stack_sdxl_core_layers").items()
                                 if k in {"10", "11", "12", "13", "14"}})
    synthetic["10"]["inputs"].update(width=64, height=48)
    synthetic["90"] = {"class_type": "LoadImage", "inputs": {"image": name}}
    synthetic["91"] = {"class_type": "InvertMask", "inputs": {"mask": ["90", 1]}}
    synthetic["11"]["inputs"].update(foreground=["90", 0], mask=["91", 0])
    synthetic["92"] = {"class_type": "LayerStackFromCoreLayers", "inputs": {"layers": ["12", 0], "bake_transforms": False}}
    synthetic["93"] = {"class_type": "LayerStackSavePSD", "inputs": {"stack": ["92", 0],
                                                                     "filename_prefix": f"LayerStack/core_{uuid.uuid4().hex[:8]}"}}
    outputs = comfy_server.run({**prefixed(shipped, "a"), **prefixed(synthetic, "b")}, timeout=900)["outputs"]

    for prefix, size in (("a", (64, 64)), ("b", (64, 48))):
        compositor = outputs[f"{prefix}13"]
        assert len(compositor["compositor_layers"]) == 2, prefix  # background and foreground, as editor layers
        with Image.open(io.BytesIO(comfy_server.fetch(outputs[f"{prefix}14"]["images"][0]))) as im:
            assert im.size == size and im.mode == "RGB", prefix  # the opaque background: an RGB composite
            composite = np.asarray(im).astype(int)
    background = np.array([0xE8, 0xE0, 0xD0])  # the template's background colour
    opaque = cutout[..., 3] == 255
    assert np.abs(composite[~opaque] - background).max() <= 1
    assert np.abs(composite[opaque] - cutout[opaque][:, :3]).max() <= 1
    psd = PSDImage.open(io.BytesIO(comfy_server.fetch(outputs["b93"]["psd"][0])))
    assert [layer.name for layer in psd] == ["background", "foreground"] and psd.size == (64, 48)
    assert psd[1].bbox == (10, 20, 50, 44)  # crop_to_content: the box around the visible pixels, at its place
    foreground = psd_layer_on_canvas(psd, psd[1])
    assert np.array_equal(foreground[..., 3], cutout[..., 3]) and np.array_equal(foreground[opaque], cutout[opaque])
