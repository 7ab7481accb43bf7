"""The LAYERS nodes and a round trip through core's own AddLayer and Create Layered Image.

They need a host with the LAYERS type (ComfyUI 0.33.0, the newest host) and are skipped with the reason elsewhere;
the conversion itself is tested on plain dicts in tests/unit/test_core_layers.py.
"""

from __future__ import annotations

import pytest
import torch

from fixtures.layered_files import layers_sample_stack as sample_stack
from fixtures.layered_files import same_stack
from layerstack.errors import LayerStackError
from layerstack.layer_stack import compositing, core_layers
from layerstack.layer_stack.stack import LayerStack


def newest_host():
    from comfy_api.latest import io

    if not hasattr(io, "Layers"):
        pytest.skip("this ComfyUI (0.3.75) has no LAYERS type; these run on the newest host (0.33.0), selected with "
                    "LAYERSTACK_COMFY_DIR / LAYERSTACK_VENV")


def test_nodes_registered_only_with_the_layers_type(comfy_host):
    from comfy_api.latest import io

    from layerstack.nodes import all_nodes

    ids = {node.GET_SCHEMA().node_id for node in all_nodes()}
    has = {"LayerStackToCoreLayers", "LayerStackFromCoreLayers"} <= ids
    assert has == hasattr(io, "Layers") and (has or not ids & {"LayerStackToCoreLayers", "LayerStackFromCoreLayers"})


def test_round_trip_through_the_nodes_and_core_add_layer(comfy_host):
    newest_host()
    from comfy_extras.nodes_compositor import AddLayer

    from layerstack.nodes import core_layers as nodes

    stack = sample_stack()
    doc = nodes.LayerStackToCoreLayers.execute(stack=stack, picture=0, crop_to_content=True).result[0]
    back = nodes.LayerStackFromCoreLayers.execute(layers=doc, bake_transforms=False).result[0]
    same_stack(stack, back, visible_only=True)
    plain = nodes.LayerStackToCoreLayers.execute(stack=stack, picture=0, crop_to_content=False).result[0]
    same_stack(stack, nodes.LayerStackFromCoreLayers.execute(layers=plain, bake_transforms=False).result[0])
    extended = AddLayer.execute(image=torch.ones(1, 2, 3, 3), layers=doc, name="tag", x=4, y=5, z_index=9).result[0]
    added = nodes.LayerStackFromCoreLayers.execute(layers=extended, bake_transforms=False).result[0]
    assert added.names == stack.names + ["tag"] and added.get("tag").alpha[0, 5:7, 4:7].eq(1).all()
    rotated = AddLayer.execute(image=torch.ones(1, 2, 3, 3), layers=doc, rotation=45.0).result[0]
    with pytest.raises(LayerStackError, match=r"^LayerStackFromCoreLayers: LAYERS document: layer 4: rotation"):
        nodes.LayerStackFromCoreLayers.execute(layers=rotated, bake_transforms=False)


def test_core_compositor_draws_our_document_like_our_composite(comfy_host):
    """Core composites in linear light, we in sRGB values; with hard-edged opaque layers (the case where the two
    agree) Create Layered Image must give our composite within 8-bit rounding."""
    newest_host()
    from comfy_extras.nodes_compositor import ImageCompositor

    stack = LayerStack((sample_stack().layers[0], sample_stack().layers[3]))
    doc = core_layers.stack_to_document(stack)
    image, mask = ImageCompositor.execute(layers=doc, compositor=None).result
    rgb, alpha = compositing.composite(stack)
    assert image.shape == (1, 20, 28, 3) and mask.abs().max() == 0
    assert (image - rgb).abs().max() <= 1 / 255
