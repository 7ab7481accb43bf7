"""pad_rgb (docs/FORMATS.md#pad-rgb): opaque pixels untouched, finite and smooth fill, the reference pyramid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from layerstack.layer_vae.pad_rgb import alpha_pyramid, area_resize, pad_rgb


def rgba(h, w, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    color = torch.rand(batch, 3, h, w, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    disc = ((yy**2 + xx**2) < 0.4).float()  # opaque disc, soft ring, transparent outside
    ring = ((yy**2 + xx**2) < 0.6).float() * 0.5
    alpha = torch.maximum(disc, ring).expand(batch, 1, h, w).clone()
    return color, alpha


@pytest.mark.parametrize("h,w", [(64, 64), (50, 73), (1, 9), (130, 17)])
def test_opaque_pixels_are_untouched(h, w):
    color, alpha = rgba(h, w)
    out = pad_rgb(color, alpha)
    assert out.shape == color.shape
    opaque = alpha.expand_as(color) == 1
    assert opaque.any() or min(h, w) < 3
    assert torch.equal(out[opaque], color[opaque])


def test_all_transparent_gives_finite_colours():
    color = torch.rand(2, 3, 40, 56)
    out = pad_rgb(color, torch.zeros(2, 1, 40, 56))
    assert torch.isfinite(out).all()
    assert torch.equal(out, torch.zeros_like(out))  # the reference's alpha-weighted mean of nothing


def test_transparent_colour_does_not_leak():
    """Whatever RGB hides under alpha 0 must not influence the result."""
    color, alpha = rgba(48, 64, seed=1)
    other = color.clone()
    other[(alpha == 0).expand_as(color)] = torch.rand(int((alpha == 0).sum()) * 3)
    assert torch.allclose(pad_rgb(color, alpha), pad_rgb(other, alpha), atol=1e-6)


def test_fill_comes_from_visible_colours():
    """A single visible colour spreads everywhere; fills stay within the visible colour range."""
    h, w = 60, 80
    alpha = torch.zeros(1, 1, h, w)
    alpha[..., 20:30, 30:50] = 1
    color = torch.tensor([0.2, 0.6, 0.9]).view(1, 3, 1, 1).expand(1, 3, h, w).clone()
    color[(alpha == 0).expand_as(color)] = 1.0  # garbage under transparency
    out = pad_rgb(color, alpha)
    assert torch.allclose(out, torch.tensor([0.2, 0.6, 0.9]).view(1, 3, 1, 1).expand_as(out), atol=1e-5)


def test_batch_items_are_independent():
    c1, a1 = rgba(32, 48, seed=2)
    c2, a2 = rgba(32, 48, seed=3)
    a2 = a2.flip(-1)
    both = pad_rgb(torch.cat([c1, c2]), torch.cat([a1, a2]))
    assert torch.allclose(both[:1], pad_rgb(c1, a1), atol=1e-6)
    assert torch.allclose(both[1:], pad_rgb(c2, a2), atol=1e-6)


def test_pyramid_levels_follow_the_reference_sizes():
    color, alpha = rgba(100, 37)
    levels = alpha_pyramid(color, alpha)
    sizes = [tuple(a.shape[-2:]) for _, a in levels][::-1]
    expected = [(100, 37)]
    while min(expected[-1]) > 1:
        h, w = expected[-1]
        expected.append((int(h / 1.2), int(w / 1.2)))
    assert sizes == expected
    assert min(sizes[-1]) == 1


def test_area_resize_is_an_exact_box_filter():
    x = torch.rand(2, 3, 12, 18)
    assert torch.allclose(area_resize(x, 6, 9), F.avg_pool2d(x, 2), atol=1e-6)  # integer factor
    y = area_resize(x, 10, 15)  # factor 1.2: fractional coverage
    assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6)  # mass preserved
    const = torch.full((1, 1, 13, 7), 0.3)
    assert torch.allclose(area_resize(const, 10, 5), torch.full((1, 1, 10, 5), 0.3), atol=1e-6)
    # first output pixel of 12 -> 10 covers input 0 fully and 1/5 of input 1
    expected = (x[..., 0, :] + 0.2 * x[..., 1, :]) / 1.2
    assert torch.allclose(area_resize(x, 10, 18)[..., 0, :], expected, atol=1e-6)


def test_matches_the_reference_implementation():
    """Output recorded once from the reference numpy/cv2 pad_rgb (see the JSON's provenance) on a noisy alpha."""
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).resolve().parents[1] / "data" / "layer_vae_pad_rgb_reference.json").read_text())
    rgba = torch.tensor(ref["rgba_uint8"], dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    expected = torch.tensor(ref["padded_rgb"], dtype=torch.float32).permute(2, 0, 1)[None]
    got = pad_rgb(rgba[:, :3], rgba[:, 3:])
    assert (got - expected).abs().max().item() < 1e-5
