"""Alpha tools: premultiply round trip, colour extension, halo-free resize, edge cleanup, and their nodes."""

from __future__ import annotations

import pytest
import torch

from fixtures.rgba_images import contaminated_picture, rgba_picture
from layerstack.layer_stack import alpha as tools


def field_on_grid(src_h, src_w, dst_h, dst_w):
    """The test colour field (fixtures.rgba_images.color_field) at the source positions of a resized grid's pixel
    centres (align_corners=False mapping), i.e. the colour each resized pixel should show."""
    sy = (torch.arange(dst_h) + 0.5) * src_h / dst_h - 0.5
    sx = (torch.arange(dst_w) + 0.5) * src_w / dst_w - 0.5
    red = (0.2 + 0.7 * sx / (src_w - 1)).view(1, dst_w).expand(dst_h, dst_w)
    green = (0.15 + 0.7 * sy / (src_h - 1)).view(dst_h, 1).expand(dst_h, dst_w)
    return torch.stack([red, green, torch.full_like(red, 0.6)], dim=-1).unsqueeze(0)


def worst_visible_error(rgb, alpha, expected, visible_above=0.05):
    visible = alpha > visible_above
    return (rgb - expected).abs().amax(dim=-1)[visible].max().item()


def test_premultiply_round_trip_and_zero_alpha():
    rgb, alpha = torch.rand(2, 5, 6, 3), torch.rand(2, 5, 6)
    alpha[:, 0] = 0.0
    premultiplied = tools.premultiply(rgb, alpha)
    assert torch.allclose(premultiplied, rgb * alpha[..., None])
    back = tools.unpremultiply(premultiplied, alpha)
    assert torch.allclose(back[:, 1:], rgb[:, 1:], atol=1e-5)
    assert torch.equal(back[:, 0], torch.zeros_like(back[:, 0]))


def test_extend_colors_keeps_trusted_pixels_and_continues_them():
    rgb = torch.zeros(1, 16, 20, 3)
    rgb[:, :, :10] = torch.tensor([0.9, 0.3, 0.1])
    weight = torch.zeros(1, 16, 20)
    weight[:, :, :10] = 1.0
    extended = tools.extend_colors(rgb, weight)
    assert torch.equal(extended[:, :, :10], rgb[:, :, :10])
    assert torch.allclose(extended[:, :, 10:], torch.tensor([0.9, 0.3, 0.1]).expand(1, 16, 10, 3), atol=1e-5)
    assert torch.equal(tools.extend_colors(rgb, torch.zeros(1, 16, 20)), torch.zeros(1, 16, 20, 3))


def test_fill_transparent_changes_only_fully_transparent_pixels():
    rgb, alpha, _ = rgba_picture(soft=True, junk="noise")
    filled = tools.fill_transparent(rgb, alpha)
    visible = alpha > 0
    assert torch.equal(filled[visible], rgb[visible])
    assert not torch.equal(filled[~visible], rgb[~visible])


@pytest.mark.parametrize("method", ["lanczos", "bicubic", "bilinear", "area"])
@pytest.mark.parametrize("size", [(240, 320), (48, 64), (67, 89)], ids=["up2.5", "down2", "odd"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "antialiased"])
def test_resize_shows_no_halo(method, size, soft):
    """Visible pixels keep the colour the picture has there, whatever lies under the transparent pixels."""
    for junk in ("black", "white", "noise"):
        rgb, alpha, _ = rgba_picture(96, 128, soft=soft, junk=junk)
        out_rgb, out_alpha = tools.resize_rgba(rgb, alpha, *size, method=method)
        assert out_rgb.shape == (1, *size, 3) and out_alpha.shape == (1, *size)
        expected = field_on_grid(96, 128, *size)
        assert worst_visible_error(out_rgb, out_alpha, expected) < 0.04, (junk, method, size)


@pytest.mark.parametrize("method", ["lanczos", "bilinear", "area"])
def test_naive_resize_has_the_halo_the_test_looks_for(method):
    """Control: resizing straight colour on its own (what a plain image resize does) fails the same check."""
    rgb, alpha, _ = rgba_picture(96, 128, soft=False, junk="black")
    stacked = torch.cat([rgb, alpha[..., None]], dim=-1).movedim(-1, 1)
    naive = tools._resize_channels(stacked, 240, 320, method).movedim(1, -1).clamp(0, 1)
    assert worst_visible_error(naive[..., :3], naive[..., 3], field_on_grid(96, 128, 240, 320)) > 0.2


def test_resize_keeps_alpha_and_nearest_is_exact_on_integer_scales():
    rgb, alpha, _ = rgba_picture(48, 64, soft=True)
    out_rgb, out_alpha = tools.resize_rgba(rgb, alpha, 96, 128, method="nearest")
    assert torch.equal(out_alpha[:, ::2, ::2], alpha)
    visible = alpha > 0
    assert torch.equal(out_rgb[:, ::2, ::2][visible], rgb[visible])
    _, area_alpha = tools.resize_rgba(rgb, alpha, 24, 32, method="area")
    assert torch.allclose(area_alpha, torch.nn.functional.avg_pool2d(alpha[None], 2)[0], atol=1e-6)
    with pytest.raises(ValueError, match="method expected one of"):
        tools.resize_rgba(rgb, alpha, 8, 8, method="sinc")




def test_edge_cleanup_removes_a_colour_fringe():
    dirty, alpha, field, fringe = contaminated_picture()
    before = (dirty - field).abs().amax(-1)[fringe & (alpha > 0.05)].max().item()
    cleaned = tools.clean_edge_colors(dirty, alpha, threshold=0.99)
    after = (cleaned - field).abs().amax(-1)[fringe & (alpha > 0.05)].max().item()
    assert before > 0.3 and after < 0.06, (before, after)
    solid = alpha >= 0.99
    assert torch.equal(cleaned[solid], dirty[solid])
    assert torch.equal(tools.clean_edge_colors(dirty, alpha, threshold=0.99, strength=0.0), dirty)
    with pytest.raises(ValueError, match="threshold"):
        tools.clean_edge_colors(dirty, alpha, threshold=0.0)


def test_edge_cleanup_leaves_pictures_without_a_solid_part_alone():
    rgb, alpha = torch.rand(1, 8, 8, 3), torch.full((1, 8, 8), 0.5)
    assert torch.equal(tools.clean_edge_colors(rgb, alpha, threshold=0.9), rgb)

