"""The stack batch/edit nodes (the editing helpers themselves are tested in tests/unit/test_stack_editing.py)."""

from __future__ import annotations

import pytest
import torch

from fixtures.rgba_images import rand, rgba_frames
from layerstack.errors import LayerStackError
from layerstack.layer_stack import editing


def test_batch_nodes_round_trip(comfy_host):
    from layerstack.nodes import stack as nodes
    from layerstack.nodes.common import MASK_IS_ALPHA, MASK_IS_LOADIMAGE

    frames = rgba_frames(n=4)
    stack = nodes.LayerStackFromBatch.execute(images=frames, mask_meaning=MASK_IS_ALPHA, order="top to bottom",
                                              drop_first_frame=False, names="").result[0]
    assert stack.names == ["layer_0", "layer_1", "layer_2", "layer_3"]
    images, names = nodes.LayerStackToBatch.execute(stack=stack, order="top to bottom", include_hidden=True).result
    assert torch.equal(images, frames) and names == "layer_3, layer_2, layer_1, layer_0"
    from_mask = nodes.LayerStackFromBatch.execute(images=frames[..., :3], mask=1 - frames[..., 3],
                                                  mask_meaning=MASK_IS_LOADIMAGE, order="bottom to top",
                                                  drop_first_frame=False, names="").result[0]
    assert torch.allclose(from_mask.layers[2].alpha[0], frames[2, ..., 3], atol=1e-6)
    with pytest.raises(LayerStackError, match=r"^LayerStackFromBatch: input 'names' expected 4"):
        nodes.LayerStackFromBatch.execute(images=frames, mask_meaning=MASK_IS_ALPHA, order="bottom to top",
                                          drop_first_frame=False, names="x")


def test_edit_nodes(comfy_host):
    from layerstack.nodes import stack as nodes
    from layerstack.nodes.common import MASK_IS_ALPHA

    frames = rgba_frames(n=3)
    stack = editing.stack_from_frames(frames[..., :3], frames[..., 3], "a, b, c")
    new_rgb = rand(1, 12, 16, 3, seed=11)
    replaced = nodes.LayerStackReplaceLayer.execute(stack=stack, name="b", image=new_rgb,
                                                    mask_meaning=MASK_IS_ALPHA).result[0]
    assert torch.equal(replaced.get("b").rgb, new_rgb) and torch.equal(replaced.get("b").alpha, stack.get("b").alpha)
    rgba = torch.cat([new_rgb, torch.ones(1, 12, 16, 1)], dim=-1).expand(2, -1, -1, -1)
    replaced = nodes.LayerStackReplaceLayer.execute(stack=stack, name="c", image=rgba,
                                                    mask_meaning=MASK_IS_ALPHA).result[0]
    assert replaced.batch_size == 2 and torch.equal(replaced.get("c").alpha, torch.ones(2, 12, 16))
    with pytest.raises(LayerStackError, match=r"^LayerStackReplaceLayer: input 'image' expected height x width 12x16 "
                                              r"\(the stack's size\), got 12x8"):
        nodes.LayerStackReplaceLayer.execute(stack=stack, name="b", image=new_rgb[:, :, :8],
                                             mask_meaning=MASK_IS_ALPHA)
    with pytest.raises(LayerStackError, match=r"^LayerStackReplaceLayer: input 'name' expected one of"):
        nodes.LayerStackReplaceLayer.execute(stack=stack, name="x", image=new_rgb, mask_meaning=MASK_IS_ALPHA)
    set_ = nodes.LayerStackSetLayer.execute(stack=stack, name="a", opacity=0.25, visible=False,
                                            new_name="").result[0]
    assert (set_.get("a").opacity, set_.get("a").visible) == (0.25, False)
    assert nodes.LayerStackReorder.execute(stack=stack, order="").result[0].names == ["c", "b", "a"]
    assert nodes.LayerStackReorder.execute(stack=stack, order="b,c,a").result[0].names == ["b", "c", "a"]
    with pytest.raises(LayerStackError, match=r"^LayerStackReorder: input 'order'"):
        nodes.LayerStackReorder.execute(stack=stack, order="b")
