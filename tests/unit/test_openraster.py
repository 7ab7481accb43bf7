"""OpenRaster files written from stacks, taken apart with zipfile + ElementTree (tests/fixtures/layered_files.py)."""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from fixtures.layered_files import read_ora, sample_stack
from layerstack.layer_stack import compositing, openraster, psd_png
from layerstack.layer_stack.stack import LayerStack, make_layer


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
            expected = psd_png.to_uint8(layer.rgba()[index])
            visible = expected[..., 3] > 0
            assert np.array_equal(stored["pixels"][..., 3], expected[..., 3]), layer.name
            assert np.array_equal(stored["pixels"][visible], expected[visible]), layer.name
        rgb, alpha = compositing.composite(stack)
        assert np.array_equal(ora["merged"], psd_png.to_uint8(torch.cat([rgb, alpha[..., None]], -1)[index]))
        assert ora["thumbnail_size"] == (56, 40)


def test_ora_thumbnail_is_at_most_256_pixels():
    stack = LayerStack((make_layer("big", torch.rand(1, 300, 600, 3)),))
    assert read_ora(openraster.ora_bytes(stack, 0))["thumbnail_size"] == (256, 128)
