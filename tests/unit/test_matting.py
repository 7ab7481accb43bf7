"""Image + mask -> foreground/background stack: edge colours estimated without a halo, on real RGBA images.

The emoji (tests/data/emoji, CC BY 4.0 Twemoji) are composited over a background colour that contrasts with their
edges and split again by their own alpha; the foreground colour the split recovers on the soft edge is compared with
the emoji's true colour, for the estimate and for the naive cut (the image's own colour).
"""

from __future__ import annotations

import pytest
import torch

from fixtures.rgba_images import emoji, on_contrasting_background
from layerstack.layer_stack import compositing, matting

NAMES = ["1f34e", "1f332", "1f98b", "1f31f"]


def test_box_mean_matches_a_direct_window_mean():
    x = torch.rand(2, 3, 9, 13, dtype=torch.float64)
    got = matting.box_mean(x, 5)
    for i, j in [(0, 0), (4, 6), (8, 12), (1, 11)]:
        window = x[..., max(0, i - 2) : i + 3, max(0, j - 2) : j + 3]
        assert torch.allclose(got[..., i, j], window.mean(dim=(-1, -2)), atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_split_has_no_halo_on_real_emoji(name):
    true_rgb, alpha = emoji(name)
    image, edge, _ = on_contrasting_background(true_rgb, alpha)
    assert edge.sum() > 300  # anti-aliased edges to measure on
    estimated = matting.split_by_mask(image, alpha).get("foreground").rgb
    naive = matting.split_by_mask(image, alpha, estimate=False).get("foreground").rgb
    naive_error = (naive - true_rgb).abs()[edge].mean().item()
    estimated_error = (estimated - true_rgb).abs()[edge].mean().item()
    print(f"{name}: edge pixels {int(edge.sum())}, mean |F - F_true| naive {naive_error:.4f}, "
          f"estimated {estimated_error:.4f}, {naive_error / estimated_error:.1f}x lower")
    assert estimated_error * 3 <= naive_error


def test_split_layers_hole_and_recomposition():
    true_rgb, alpha = emoji("1f34e")
    image, edge, colour = on_contrasting_background(true_rgb, alpha)
    stack = matting.split_by_mask(image, alpha)
    assert stack.names == ["background", "foreground"]
    background, foreground = stack.layers
    assert torch.equal(foreground.alpha, alpha)
    assert torch.equal(background.alpha, (alpha < 1).float())  # the hole is where the foreground is opaque
    assert torch.equal(foreground.rgb[alpha == 1], image[alpha == 1])  # solid foreground and pure background kept
    assert torch.equal(background.rgb[alpha == 0], image[alpha == 0])
    assert (background.rgb[edge] - colour).abs().mean() < 0.05  # the background colour is recovered on the edge
    rgb, a = compositing.composite(stack)
    assert torch.equal(a, torch.ones_like(a))
    assert (rgb - image).abs().max() < 0.15 and (rgb - image).abs()[edge].mean() < 0.02
    wide = matting.split_by_mask(image, alpha, hole_threshold=0.01)
    assert torch.equal(wide.get("background").alpha, (alpha < 0.01).float())
