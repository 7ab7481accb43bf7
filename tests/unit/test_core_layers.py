"""Layer stacks <-> ComfyUI core's LAYERS documents, on plain dicts laid out the way core's AddLayer builds them.

The nodes and the round trip through core's own nodes are in tests/host/test_core_layers_nodes.py (newest host).
"""

from __future__ import annotations

import math

import pytest
import torch

from fixtures.layered_files import layers_sample_stack as sample_stack
from fixtures.layered_files import same_stack
from fixtures.rgba_images import rand
from layerstack.errors import LayerStackError
from layerstack.layer_stack import core_layers, editing, psd_png
from layerstack.layer_stack.stack import LayerStack, make_layer


def add_layer(document, image, /, **fields):
    """What core's AddLayer appends (only the keys it sets)."""
    item = {"image": image, "type": "raster", "x": 0, "y": 0, "z_index": 0, **fields}
    layers = (document or {}).get("layers", [])
    out = {"version": 1, "layers": [*layers, item]}
    if document and "canvas" in document:
        out["canvas"] = document["canvas"]
    return out


def test_stack_to_document_layout():
    stack = sample_stack()
    doc = core_layers.stack_to_document(stack)
    assert doc["version"] == 1 and doc["canvas"] == (28, 20)
    assert [item["name"] for item in doc["layers"]] == stack.names
    assert [item["z_index"] for item in doc["layers"]] == [0, 1, 2, 3]
    assert [(item["opacity"], item["visible"]) for item in doc["layers"]] == [(1.0, True), (0.6, True),
                                                                            (1.0, False), (1.0, True)]
    sticker = doc["layers"][3]
    assert (sticker["x"], sticker["y"], tuple(sticker["image"].shape)) == (20, 14, (1, 4, 6, 4))
    assert all(item["type"] == "raster" and item["blend_mode"] == "normal" for item in doc["layers"])


@pytest.mark.parametrize("crop", [False, True])
def test_stack_document_stack_round_trip(crop):
    stack = sample_stack()
    back = core_layers.document_to_stack(core_layers.stack_to_document(stack, crop_to_content=crop))
    # Cropping keeps every pixel with any alpha; only the colour under fully transparent pixels is not carried.
    same_stack(stack, back, visible_only=crop)
    # Placement and canvas survive the other way round too.
    again = core_layers.stack_to_document(back, crop_to_content=crop)
    first = core_layers.stack_to_document(stack, crop_to_content=crop)
    assert again["canvas"] == first["canvas"]
    assert [(i["x"], i["y"], tuple(i["image"].shape)) for i in again["layers"]] == [
        (i["x"], i["y"], tuple(i["image"].shape)) for i in first["layers"]]


def test_rgba_batch_to_stack_to_document_keeps_qwen_order():
    frames = rand(3, 8, 10, 4, seed=9)
    stack = editing.stack_from_frames(frames[..., :3], frames[..., 3])
    doc = core_layers.stack_to_document(stack, crop_to_content=False)
    assert [torch.equal(item["image"][0], frames[i]) for i, item in enumerate(doc["layers"])] == [True] * 3


def test_document_built_like_add_layer():
    red = torch.zeros(1, 4, 5, 3)
    red[..., 0] = 1
    blue = torch.zeros(2, 3, 3, 4)
    blue[..., 2] = 1
    blue[..., 3] = 0.5
    mask = torch.zeros(1, 3, 3)
    mask[:, 0, 1] = 1  # 1 = transparent, multiplied with the image's alpha
    doc = add_layer(None, red, x=2, y=1, name="red")
    doc = add_layer(doc, blue, x=-1, y=2, mask=mask, opacity=0.5, z_index=-1)
    doc = add_layer(doc, red, name="red")
    stack = core_layers.document_to_stack(doc)
    # z_index -1 sorts first; equal z_index keeps list order; the batch expands; names are made unique.
    assert stack.names == ["layer_1_0", "layer_1_1", "red", "red (2)"]
    assert (stack.width, stack.height) == (7, 5)  # no canvas: the extent of the placed layers
    assert stack.layers[0].opacity == 0.5 and stack.layers[2].opacity == 1.0
    blue_alpha = stack.layers[0].alpha[0]
    assert blue_alpha[2, 0] == 0.0 and blue_alpha[3, 0] == 0.5 and blue_alpha[2, 1] == 0.5  # x=-1 cut off
    assert blue_alpha[:2].sum() == 0 and blue_alpha[:, 2:].sum() == 0
    red_alpha = stack.layers[2].alpha[0]
    assert red_alpha[1:5, 2:7].eq(1).all() and red_alpha.sum() == 20
    assert stack.layers[3].alpha[0, :4, :5].eq(1).all() and stack.layers[3].alpha[0].sum() == 20


def test_documents_with_canvas_cut_layers_at_its_edge():
    doc = add_layer({"version": 1, "layers": [], "canvas": (4, 3)}, torch.ones(1, 5, 5, 3), x=1, y=1)
    stack = core_layers.document_to_stack(doc)
    assert (stack.width, stack.height) == (4, 3) and stack.layers[0].alpha[0].sum() == 6


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"blend_mode": "multiply"}, r"layer 0 \('a'\): blend mode 'multiply' cannot be represented .*Create "
                                     r"Layered Image"),
        ({"rotation": math.radians(30)}, r"layer 0 \('a'\): rotation cannot be represented .*bake_transforms"),
        ({"flip_h": True, "w": 8}, r"flip_h, w/h cannot be represented"),
        ({"opacity": 1.5}, r"'opacity' expected a number in \[0, 1\], got 1.5"),
        ({"x": 1.5}, r"'x' expected a whole number, got 1.5"),
        ({"type": "text"}, r"type 'text' cannot be a stack layer"),
        ({"image": torch.ones(4, 4, 3)}, r"'image' expected a float IMAGE .*got \[4, 4, 3\]"),
    ],
)
def test_unrepresentable_items_are_refused(fields, message):
    doc = add_layer(None, torch.ones(1, 4, 4, 3), name="a", **fields)
    with pytest.raises(LayerStackError, match=message):
        core_layers.document_to_stack(doc)


@pytest.mark.parametrize("document", [None, {"version": 2, "layers": []}, {"version": 1, "layers": []},
                                      {"version": 1, "layers": [1]}, {"version": 1, "canvas": (0, 3), "layers": [
                                          {"image": torch.ones(1, 2, 2, 3), "type": "raster", "z_index": 0}]}])
def test_malformed_documents_are_refused(document):
    with pytest.raises(LayerStackError, match=r"^LAYERS document: "):
        core_layers.document_to_stack(document)


def test_bake_transforms_flip_scale_and_rotation():
    image = torch.zeros(1, 4, 6, 4)
    image[..., 3] = 1
    image[:, :, :3, 0] = 1  # left half red, right half black
    flipped = core_layers.document_to_stack(add_layer({"version": 1, "layers": [], "canvas": (6, 4)}, image,
                                                      flip_h=True), bake_transforms=True)
    assert torch.equal(flipped.layers[0].rgb[0, :, :, 0], image[0, :, :, 0].flip(-1))
    scaled = core_layers.document_to_stack(add_layer({"version": 1, "layers": [], "canvas": (12, 8)}, image,
                                                     w=12, h=8), bake_transforms=True)
    assert scaled.layers[0].alpha.eq(1).all() and scaled.layers[0].rgb[0, :, :5, 0].eq(1).all()
    assert scaled.layers[0].rgb[0, :, 7:, 0].eq(0).all()
    turned = core_layers.document_to_stack(add_layer({"version": 1, "layers": [], "canvas": (8, 8)}, image, x=1,
                                                     y=2, rotation=math.pi / 2), bake_transforms=True)
    alpha = turned.layers[0].alpha[0]
    # A quarter turn clockwise about the box centre (4, 4): the 6x4 box becomes 4x6, its left (red) half on top.
    assert alpha[1:7, 2:6].eq(1).all() and alpha.sum() == 24
    assert turned.layers[0].rgb[0, 1:4, 2:6, 0].eq(1).all() and turned.layers[0].rgb[0, 4:7, 2:6, 0].eq(0).all()


def test_stacks_too_large_for_a_document_are_refused():
    stack = LayerStack(tuple(make_layer(f"l{i}", torch.zeros(1, 2, 2, 3)) for i in range(51)))
    with pytest.raises(LayerStackError, match=r"at most 50 layers .*has 51"):
        core_layers.stack_to_document(stack)


def test_psd_offsets_match_document_offsets():
    stack = sample_stack()
    doc = core_layers.stack_to_document(stack)
    for item, layer in zip(doc["layers"], stack.layers):
        top, left, _, _ = psd_png.content_box(layer.alpha[0])
        assert (item["x"], item["y"]) == (left, top)
