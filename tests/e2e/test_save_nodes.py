"""The stack and save nodes through a real ComfyUI server: the example workflow writes a layered PSD and RGBA PNGs,
and they come back through /view with the layers, pixels and metadata they should have."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from psd_tools import PSDImage

from fixtures.layered_files import psd_layer_on_canvas
from fixtures.rgba_images import rgba_picture
from fixtures.server import PromptFailed
from fixtures.workflows import api_workflow, ui_workflow

ROOT = Path(__file__).resolve().parents[2]
UI_WORKFLOW = ui_workflow("stack_from_images")
API_WORKFLOW = api_workflow("stack_from_images")


def to_uint8(t: torch.Tensor) -> np.ndarray:
    return np.rint(t.clamp(0, 1).numpy() * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def inputs(comfy_server, tmp_path_factory):
    """An anti-aliased foreground (junk colours under its transparent pixels), its mask and a background, uploaded."""
    folder = tmp_path_factory.mktemp("stack_inputs")
    rgb, alpha, _ = rgba_picture(48, 64, soft=True, junk="noise")
    fg = np.concatenate([to_uint8(rgb[0]), to_uint8(alpha[0])[..., None]], axis=-1)
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    bg = np.stack([np.broadcast_to(ramp, (48, 64)), np.full((48, 64), 90.0), np.broadcast_to(ramp[::-1], (48, 64))],
                  axis=-1).round().astype(np.uint8)
    Image.fromarray(fg[..., :3], "RGB").save(folder / "fg.png")
    # The mask as grey RGB (LoadImageMask reads its red channel): newer hosts decode pictures with PyAV, whose grey
    # (L) to RGB conversion is not exact, while RGB pictures decode exactly on every host.
    Image.fromarray(np.repeat(fg[..., 3:], 3, axis=-1), "RGB").save(folder / "mask.png")
    Image.fromarray(bg, "RGB").save(folder / "bg.png")
    names = {"fg": comfy_server.upload_image(folder / "fg.png", "layerstack_save_nodes_fg.png"),
             "mask": comfy_server.upload_image(folder / "mask.png", "layerstack_save_nodes_mask.png"),
             "bg": comfy_server.upload_image(folder / "bg.png", "layerstack_save_nodes_bg.png")}
    return fg, bg, names


def example_prompt(names: dict) -> dict:
    prompt = copy.deepcopy(API_WORKFLOW)
    prompt["1"]["inputs"]["image"] = names["fg"]
    prompt["2"]["inputs"]["image"] = names["bg"]
    prompt["10"]["inputs"]["image"] = names["mask"]
    return prompt


def composite(fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = fg[..., 3:4] / 255.0
    return fg[..., :3] / 255.0 * a + bg / 255.0 * (1 - a)


def test_example_workflow_writes_psd_and_rgba_pngs_served_by_view(comfy_server, inputs):
    fg, bg, names = inputs
    prompt = example_prompt(names)
    outputs = comfy_server.run(prompt, workflow=UI_WORKFLOW, timeout=300)["outputs"]

    [psd_info] = outputs["4"]["psd"]
    assert psd_info["type"] == "output" and psd_info["subfolder"] == "LayerStack"
    psd = PSDImage.open(io.BytesIO(comfy_server.fetch(psd_info)))
    assert [layer.name for layer in psd] == ["background", "foreground", "mask"]
    assert [layer.visible for layer in psd] == [True, True, False]
    stored = [psd_layer_on_canvas(psd, layer) for layer in psd]
    # The mask picture came back as the foreground's alpha, exactly; the foreground is stored cropped to its
    # visible pixels, so only those keep their colour.
    visible = fg[..., 3] > 0
    assert np.array_equal(stored[1][..., 3], fg[..., 3]) and np.array_equal(stored[1][visible], fg[visible])
    assert psd[1].size != (64, 48) and psd[0].size == psd[2].size == (64, 48)
    assert np.array_equal(stored[0][..., :3], bg) and (stored[0][..., 3] == 255).all()
    assert np.array_equal(stored[2][..., 0], fg[..., 3])  # the hidden mask layer shows the alpha
    merged = np.asarray(psd.topil(), dtype=np.float64) / 255
    assert np.abs(merged[..., :3] - composite(fg, bg)).max() <= 1.5 / 255 and (merged[..., 3] == 1).all()
    for preview in outputs["4"]["images"]:
        assert preview["type"] == "temp" and Image.open(io.BytesIO(comfy_server.fetch(preview))).size == (64, 48)

    [composite_info] = outputs["6"]["images"]
    with Image.open(io.BytesIO(comfy_server.fetch(composite_info))) as im:
        assert im.mode == "RGBA"
        embedded = json.loads(im.text["prompt"])  # ComfyUI adds its cache keys ('is_changed'), as for SaveImage
        assert {k: {f: v for f, v in node.items() if f != "is_changed"} for k, node in embedded.items()} == prompt
        assert json.loads(im.text["workflow"]) == UI_WORKFLOW
        flat = np.asarray(im, dtype=np.float64) / 255
    assert np.abs(flat[..., :3] - composite(fg, bg)).max() <= 0.5 / 255 + 1e-6 and (flat[..., 3] == 1).all()

    [foreground_info] = outputs["8"]["images"]
    with Image.open(io.BytesIO(comfy_server.fetch(foreground_info))) as im:
        assert np.array_equal(np.asarray(im), fg)  # straight RGBA round trip, colours under alpha 0 included

    written = {name: (comfy_server.output_dir / info["subfolder"] / info["filename"]).read_bytes()
               for name, info in (("psd", psd_info), ("png", composite_info))}
    changed = example_prompt(names)
    changed["3"]["inputs"]["include_mask_layer"] = False  # a new stack, so the save nodes run again (not cached)
    again = comfy_server.run(changed, timeout=300)["outputs"]
    assert again["4"]["psd"][0]["filename"] != psd_info["filename"]
    assert again["6"]["images"][0]["filename"] != composite_info["filename"]
    assert (comfy_server.output_dir / psd_info["subfolder"] / psd_info["filename"]).read_bytes() == written["psd"]
    assert (comfy_server.output_dir / composite_info["subfolder"] / composite_info["filename"]).read_bytes() == \
        written["png"]


@pytest.mark.parametrize("prefix", ["../escaped/x", "/tmp/layerstack-escaped/x", "LayerStack/../../escaped"])
def test_escaping_prefix_is_refused_through_the_server(comfy_server, inputs, prefix):
    _, _, names = inputs
    base = comfy_server.base_dir
    before = sorted(str(p.relative_to(base.parent)) for p in base.parent.rglob("*") if "temp" not in p.parts)
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": names["fg"]}},
        "2": {"class_type": "LoadImageMask", "inputs": {"image": names["mask"], "channel": "red"}},
        "3": {"class_type": "LayerStackSaveRGBA", "inputs": {"image": ["1", 0], "alpha": ["2", 0],
                                                             "filename_prefix": prefix}},
    }
    with pytest.raises(PromptFailed, match=r"LayerStackSaveRGBA: input 'filename_prefix' expected a prefix that "
                                           r"stays inside the output folder"):
        comfy_server.run(prompt, timeout=120)
    after = sorted(str(p.relative_to(base.parent)) for p in base.parent.rglob("*") if "temp" not in p.parts)
    assert [p for p in after if p not in before and not p.endswith("comfyui.log")] == []
    assert not Path("/tmp/layerstack-escaped").exists()


def test_sdxl_example_workflow_ends_in_a_psd_and_an_rgba_png(comfy_server, fixture_paths):
    """The LayerDiffuse example on the random-weight SDXL fixture, made small: every node runs and the files hold
    the decoded foreground over the plain background."""
    prompt = api_workflow("stack_sdxl_transparent_psd")
    prompt["1"]["inputs"]["ckpt_name"] = fixture_paths["sdxl_checkpoint"].name
    prompt["5"]["inputs"].update(width=64, height=64)
    prompt["6"]["inputs"]["steps"] = 2
    prompt["9"]["inputs"]["passes"] = "1"
    prompt["10"]["inputs"].update(width=64, height=64)
    outputs = comfy_server.run(prompt, timeout=600)["outputs"]
    psd = PSDImage.open(io.BytesIO(comfy_server.fetch(outputs["12"]["psd"][0])))
    assert [layer.name for layer in psd] == ["background", "foreground", "mask"] and psd.size == (64, 64)
    background = np.rint(psd[0].numpy() * 255).astype(np.uint8)
    assert (background[..., :3] == [0xE8, 0xE0, 0xD0]).all()  # EmptyImage's colour, opaque
    with Image.open(io.BytesIO(comfy_server.fetch(outputs["13"]["images"][0]))) as im:
        rgba = np.asarray(im)
    assert im.mode == "RGBA" and rgba.shape == (64, 64, 4)
    stored = psd_layer_on_canvas(psd, psd[1])
    visible = rgba[..., 3] > 0
    # The same decoded layer in both files (the PSD keeps the box around its visible pixels).
    assert np.array_equal(stored[..., 3], rgba[..., 3]) and np.array_equal(stored[visible], rgba[visible])
