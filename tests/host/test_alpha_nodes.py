"""Alpha tools: premultiply round trip, colour extension, halo-free resize, edge cleanup, and their nodes."""

from __future__ import annotations

import pytest
import torch

from fixtures.rgba_images import contaminated_picture, junk_under_transparency, rgba_picture
from layerstack.errors import LayerStackError
from layerstack.layer_stack import alpha as tools
from layerstack.layer_stack.text2layer import text2layer_stack
from layerstack.nodes import alpha as alpha_nodes


def test_resize_node_follows_aspect_ratio_and_takes_rgba_images():
    rgb, alpha, _ = rgba_picture(48, 64)
    rgba = torch.cat([rgb, alpha[..., None]], dim=-1)
    image, out_alpha = alpha_nodes.LayerStackResizeRGBA.execute(image=rgba, width=128, height=0,
                                                                method="bilinear").result
    assert image.shape == (1, 96, 128, 3) and out_alpha.shape == (1, 96, 128)
    from_mask = alpha_nodes.LayerStackResizeRGBA.execute(image=rgb, alpha=alpha, width=0, height=96,
                                                         method="bilinear").result
    assert torch.equal(from_mask[0], image) and torch.equal(from_mask[1], out_alpha)
    with pytest.raises(LayerStackError, match=r"LayerStackResizeRGBA: input 'width' expected a positive width"):
        alpha_nodes.LayerStackResizeRGBA.execute(image=rgba, width=0, height=0, method="bilinear")
    with pytest.raises(LayerStackError, match=r"LayerStackResizeRGBA: input 'alpha' expected a MASK, or an RGBA"):
        alpha_nodes.LayerStackResizeRGBA.execute(image=rgb, width=8, height=8, method="bilinear")


def test_resize_stack_node_resizes_every_layer_and_keeps_names():
    rgb, alpha, _ = rgba_picture(48, 64)
    stack = text2layer_stack(rgb, alpha, background=torch.rand(1, 48, 64, 3), blended=torch.rand(1, 48, 64, 3))
    out = alpha_nodes.LayerStackResizeStack.execute(stack=stack, width=32, height=24, method="area")[0]
    assert out.names == stack.names and (out.height, out.width) == (24, 32)
    assert [layer.visible for layer in out.layers] == [layer.visible for layer in stack.layers]


def test_premultiply_nodes_and_flatten_node():
    rgb, alpha = torch.rand(1, 4, 4, 3), torch.rand(1, 4, 4) * 0.9 + 0.1
    premultiplied = alpha_nodes.LayerStackPremultiply.execute(image=rgb, alpha=alpha)[0]
    straight = alpha_nodes.LayerStackUnpremultiply.execute(image=premultiplied, alpha=alpha)[0]
    assert torch.allclose(straight, rgb, atol=1e-5)
    white = alpha_nodes.LayerStackFlatten.execute(image=rgb, alpha=alpha, backdrop="white")[0]
    assert torch.allclose(white, rgb * alpha[..., None] + (1 - alpha[..., None]), atol=1e-6)


def test_clean_edges_node_fills_transparent_pixels():
    dirty, alpha, field, _ = contaminated_picture()
    dirty = junk_under_transparency(dirty, alpha, "noise")
    image, out_alpha = alpha_nodes.LayerStackCleanEdges.execute(image=dirty, alpha=alpha, threshold=0.99,
                                                                strength=0.5, fill_transparent=True).result
    assert torch.equal(out_alpha, alpha)
    transparent = alpha == 0
    assert torch.equal(image[transparent], tools.fill_transparent(image, alpha)[transparent])
    assert (image - dirty).abs()[transparent].max() > 0.1


def test_preview_rgba_node_backdrops(comfy_host, tmp_path, monkeypatch):
    import folder_paths
    from PIL import Image

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path))
    rgb, alpha, _ = rgba_picture(32, 40)
    for backdrop, mode, width in (("all", "RGB", 120), ("transparent", "RGBA", 40), ("checkerboard", "RGB", 40)):
        images = alpha_nodes.LayerStackPreviewOnBackdrop.execute(image=rgb, alpha=alpha, backdrop=backdrop).ui.as_dict()
        with Image.open(tmp_path / images["images"][0]["subfolder"] / images["images"][0]["filename"]) as im:
            assert (im.mode, im.size) == (mode, (width, 32))

