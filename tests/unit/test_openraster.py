"""OpenRaster files written from stacks, taken apart with zipfile + ElementTree (tests/fixtures/layered_files.py)."""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from fixtures.layered_files import read_ora
from fixtures.rgba_images import rgba_picture
from layerstack.layer_stack import compositing, files, openraster
from layerstack.layer_stack.stack import LayerStack, make_layer
from layerstack.layer_stack.text2layer import text2layer_stack


def sample_stack(batch=1, height=40, width=56):
    g = torch.Generator().manual_seed(4)
    fg, alpha, _ = rgba_picture(height, width, soft=True, junk="noise")
    stack = text2layer_stack(fg.expand(batch, -1, -1, -1), alpha.expand(batch, -1, -1),
                             background=torch.rand(batch, height, width, 3, generator=g), include_mask_layer=True)
    wash_alpha = torch.zeros(batch, height, width)
    wash_alpha[:, 5:20, 30:50] = 0.5
    wash = make_layer("Lasur – wash ü 影", torch.rand(batch, height, width, 3, generator=g), wash_alpha, opacity=0.35)
    return stack.with_layer_on_top(wash)


def test_ora_layout_layers_and_merged_image_read_back():
    stack = sample_stack(batch=2)
    for index in range(2):
        ora = read_ora(openraster.ora_bytes(stack, index))
        assert ora["names"][0] == "mimetype" and ora["mimetype"] == b"image/openraster"
        assert ora["first_compression"] == zipfile.ZIP_STORED
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= set(ora["names"])
        assert (ora["image"]["w"], ora["image"]["h"]) == ("56", "40")
        assert [layer["name"] for layer in ora["layers"]] == stack.names  # stack.xml lists them top first
        assert [layer["visibility"] for layer in ora["layers"]] == ["visible", "visible", "hidden", "visible"]
        assert [float(layer["opacity"]) for layer in ora["layers"]] == [1.0, 1.0, 1.0, 0.35]
        assert ora["layers"][3]["stored_size"] == (15, 20) and (ora["layers"][3]["x"], ora["layers"][3]["y"]) == (
            "30", "5")
        for stored, layer in zip(ora["layers"], stack.layers):
            expected = files.to_uint8(layer.rgba()[index])
            visible = expected[..., 3] > 0
            assert np.array_equal(stored["pixels"][..., 3], expected[..., 3]), layer.name
            assert np.array_equal(stored["pixels"][visible], expected[visible]), layer.name
        rgb, alpha = compositing.composite(stack)
        assert np.array_equal(ora["merged"], files.to_uint8(torch.cat([rgb, alpha[..., None]], -1)[index]))
        assert ora["thumbnail_size"] == (56, 40)


def test_ora_thumbnail_is_at_most_256_pixels():
    stack = LayerStack((make_layer("big", torch.rand(1, 300, 600, 3)),))
    assert read_ora(openraster.ora_bytes(stack, 0))["thumbnail_size"] == (256, 128)


def test_save_ora_node_writes_one_file_per_picture(comfy_host, tmp_path, monkeypatch):
    import folder_paths

    from layerstack.nodes import save

    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path / "output"))
    monkeypatch.setattr(folder_paths, "temp_directory", str(tmp_path / "temp"))
    stack = sample_stack(batch=2)
    ui = save.LayerStackSaveORA.execute(stack=stack, filename_prefix="layered/shot").ui
    assert [(r["filename"], r["subfolder"]) for r in ui["ora"]] == [("shot_00001_.ora", "layered"),
                                                                    ("shot_00002_.ora", "layered")]
    ora = read_ora((tmp_path / "output" / "layered" / "shot_00002_.ora").read_bytes())
    assert [layer["name"] for layer in ora["layers"]] == stack.names and len(ui["images"]) == 2
