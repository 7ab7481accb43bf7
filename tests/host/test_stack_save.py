"""The save nodes in-process: files, names, metadata, refusing escaping prefixes and never overwriting."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from psd_tools import PSDImage

from fixtures.rgba_images import rgba_picture
from layerstack.errors import LayerStackError
from layerstack.layer_stack import psd_png
from layerstack.layer_stack.output_paths import write_new_file
from layerstack.layer_stack.text2layer import text2layer_stack
from layerstack.nodes import save


@pytest.fixture
def folders(comfy_host, tmp_path, monkeypatch):
    """A fresh output and temp folder for ComfyUI, with a sibling folder that must stay untouched."""
    import folder_paths

    output, temp, outside = tmp_path / "output", tmp_path / "temp", tmp_path / "outside"
    for d in (output, temp, outside):
        d.mkdir()
    monkeypatch.setattr(folder_paths, "output_directory", str(output))
    monkeypatch.setattr(folder_paths, "temp_directory", str(temp))
    return output, temp, outside


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def sample_stack(batch=2):
    fg, alpha, _ = rgba_picture(24, 32, soft=True)
    return text2layer_stack(fg.expand(batch, -1, -1, -1), alpha.expand(batch, -1, -1),
                            background=torch.rand(batch, 24, 32, 3), include_mask_layer=True)


def test_save_psd_writes_one_layered_file_per_picture(folders):
    output, temp, _ = folders
    stack = sample_stack(batch=2)
    ui = save.LayerStackSavePSD.execute(stack=stack, filename_prefix="layers/%width%x%height%/shot").ui
    assert [(r["filename"], r["subfolder"], r["type"]) for r in ui["psd"]] == [
        ("shot_00001_.psd", "layers/32x24", "output"), ("shot_00002_.psd", "layers/32x24", "output")]
    for index, result in enumerate(ui["psd"]):
        psd = PSDImage.open(output / result["subfolder"] / result["filename"])
        assert [layer.name for layer in psd] == stack.names
        top, left, bottom, right = psd[1].bbox[1], psd[1].bbox[0], psd[1].bbox[3], psd[1].bbox[2]
        assert (top, left, bottom, right) == psd_png.content_box(stack.layers[1].alpha[index])
        expected = stack.layers[1].rgba()[index, top:bottom, left:right].numpy()
        assert np.abs(psd[1].numpy() - expected).max() <= 0.5 / 255 + 1e-6
    assert len(ui["images"]) == 2 and all((temp / i["subfolder"] / i["filename"]).is_file() for i in ui["images"])
    again = save.LayerStackSavePSD.execute(stack=stack, filename_prefix="layers/%width%x%height%/shot").ui
    assert [r["filename"] for r in again["psd"]] == ["shot_00003_.psd", "shot_00004_.psd"]


def test_save_rgba_png_keeps_straight_alpha_and_embeds_prompt_and_workflow(folders):
    from comfy_api.latest import io as comfy_io

    output, _, _ = folders
    rgb, alpha, _ = rgba_picture(24, 32, soft=True, junk="noise")
    prompt = {"1": {"class_type": "LayerStackSaveRGBA", "inputs": {}}}
    workflow = {"nodes": [{"id": 1, "type": "LayerStackSaveRGBA"}]}
    # The node as the executor runs it: a class whose `hidden` holds the prompt and workflow (built here with the
    # public HiddenHolder; the executor's own cloning hook changed its argument between hosts).
    node = type("LayerStackSaveRGBARun", (save.LayerStackSaveRGBA,), {})
    node.hidden = comfy_io.HiddenHolder.from_dict(
        {comfy_io.Hidden.prompt: prompt, comfy_io.Hidden.extra_pnginfo: {"workflow": workflow}})
    ui = node.execute(image=rgb, alpha=alpha, filename_prefix="rgba/%batch_num%_cut").ui.as_dict()
    [result] = ui["images"]
    assert (result["filename"], result["subfolder"], result["type"]) == ("0_cut_00001_.png", "rgba", "output")
    with Image.open(output / "rgba" / result["filename"]) as im:
        assert im.mode == "RGBA"
        assert json.loads(im.text["prompt"]) == prompt and json.loads(im.text["workflow"]) == workflow
        pixels = np.asarray(im, dtype=np.float64) / 255
    expected = torch.cat([rgb, alpha[..., None]], dim=-1)[0].numpy()
    assert np.abs(pixels - expected).max() <= 0.5 / 255 + 1e-6  # straight colour, even under low alpha


def test_save_rgba_png_from_an_rgba_image_and_without_metadata(folders, monkeypatch):
    from comfy.cli_args import args

    output, _, _ = folders
    monkeypatch.setattr(args, "disable_metadata", True)
    rgba = torch.rand(2, 8, 8, 4)
    ui = save.LayerStackSaveRGBA.execute(image=rgba, filename_prefix="plain").ui.as_dict()
    assert [r["filename"] for r in ui["images"]] == ["plain_00001_.png", "plain_00002_.png"]
    with Image.open(output / "plain_00002_.png") as im:
        assert "prompt" not in im.text
        assert np.array_equal(np.asarray(im), psd_png.to_uint8(rgba[1]))


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/layerstack-escape/x", "a/../../escape", "sub/../../../x",
                                    "..", "", "   ", "link/x", "link/deeper/x"])
def test_escaping_prefixes_are_refused_and_nothing_is_written(folders, prefix):
    output, temp, outside = folders
    (output / "link").symlink_to(outside, target_is_directory=True)  # a symlink inside output leading outside
    parent = output.parent
    before = tree(parent)
    for node, kwargs in ((save.LayerStackSavePSD, {"stack": sample_stack(1)}),
                         (save.LayerStackSaveRGBA, {"image": torch.rand(1, 8, 8, 4)})):
        with pytest.raises(LayerStackError, match=rf"{node.__name__}: input 'filename_prefix' expected "):
            node.execute(filename_prefix=prefix, **kwargs)
    assert tree(parent) == before
    assert not Path("/tmp/layerstack-escape").exists()


def test_existing_files_are_never_overwritten(folders, monkeypatch):
    """Even when ComfyUI's counter points at a taken name (another process wrote it meanwhile)."""
    import folder_paths

    output, _, _ = folders
    taken = output / "race_00001_.png"
    taken.write_bytes(b"someone else's file")
    original = folder_paths.get_save_image_path

    def stale_counter(*args, **kwargs):
        folder, filename, _counter, subfolder, prefix = original(*args, **kwargs)
        return folder, filename, 1, subfolder, prefix

    monkeypatch.setattr(folder_paths, "get_save_image_path", stale_counter)
    ui = save.LayerStackSaveRGBA.execute(image=torch.rand(2, 8, 8, 4), filename_prefix="race").ui.as_dict()
    assert [r["filename"] for r in ui["images"]] == ["race_00002_.png", "race_00003_.png"]
    assert taken.read_bytes() == b"someone else's file"


def test_write_new_file_moves_on_and_cleans_up_after_a_failed_write(tmp_path):
    (tmp_path / "f_00003_.bin").write_bytes(b"keep")
    name, counter = write_new_file(str(tmp_path), lambda n: f"f_{n:05}_.bin", 3, lambda out: out.write(b"new"))
    assert (name, counter) == ("f_00004_.bin", 4)
    assert (tmp_path / "f_00003_.bin").read_bytes() == b"keep" and (tmp_path / name).read_bytes() == b"new"

    def failing(out):
        out.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_new_file(str(tmp_path), lambda n: f"g_{n:05}_.bin", 1, failing)
    assert not list(tmp_path.glob("g_*"))
    with pytest.raises(ValueError, match="plain file name"):
        write_new_file(str(tmp_path), lambda n: f"../h_{n}", 1, lambda out: None)


def test_save_nodes_refuse_bad_inputs(folders):
    with pytest.raises(LayerStackError, match=r"LayerStackSaveRGBA: input 'alpha' expected a MASK, or an RGBA"):
        save.LayerStackSaveRGBA.execute(image=torch.rand(1, 8, 8, 3), filename_prefix="x")
    with pytest.raises(LayerStackError, match=r"LayerStackSavePSD: input 'stack' expected a LAYER_STACK"):
        save.LayerStackSavePSD.execute(stack=torch.rand(1, 8, 8, 3), filename_prefix="x")
    assert not os.listdir(folders[0])


def test_psd_bytes_are_what_the_node_writes(folders):
    output, _, _ = folders
    stack = sample_stack(batch=1)
    ui = save.LayerStackSavePSD.execute(stack=stack, filename_prefix="same").ui
    assert (output / ui["psd"][0]["filename"]).read_bytes() == psd_png.psd_bytes(stack, 0)
    assert PSDImage.open(io.BytesIO(psd_png.psd_bytes(stack, 0))).size == (32, 24)
