"""Flux transparent decode and encode through the existing nodes, against the reference procedure re-computed here
(docs/FORMATS.md#flux-decode, #flux-encode), on the official-layout fixture TransparentVAE.pth (random values)."""

from __future__ import annotations

import pytest
import torch

from fixtures.flux import tiny_flux
from layerstack.errors import LayerStackError
from layerstack.layer_vae import pad_rgb
from layerstack.models.registry import Family
from layerstack.nodes.common import MASK_IS_ALPHA
from layerstack.nodes.transparent_vae import LoadTransparentVAE, TransparentDecode, TransparentEncode

TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def flux_vae_pair(fixture_paths):
    """The LAYER_VAE (Flux) and, as the ordinary Flux VAE, ComfyUI's VAE built from the file's own sd_vae.* copy."""
    import comfy.sd

    tvae = LoadTransparentVAE.execute(family="Flux", allow_download=False).result[0]
    whole = torch.load(str(fixture_paths["layer_model_dir"] / "TransparentVAE.pth"), weights_only=True)
    vae = comfy.sd.VAE(sd={k[len("sd_vae."):]: v.float() for k, v in whole.items() if k.startswith("sd_vae.")})
    return tvae, vae


def reference_decode(decoder, pixel: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """The reference: per image, 8 passes (flip along W, then k quarter turns), each clipped to [0,1], undone, and
    the per-pixel median of the 8 with torch's rule for an even count (the lower middle value). [B,4,H,W] RGBA."""
    out = []
    for i in range(pixel.shape[0]):
        results = []
        for flip in (False, True):
            for k in range(4):
                p, lat = pixel[i : i + 1], latent[i : i + 1]
                if flip:
                    p, lat = p.flip(3), lat.flip(3)
                y = decoder(torch.rot90(p, k, dims=(2, 3)), torch.rot90(lat, k, dims=(2, 3))).clip(0, 1)
                y = torch.rot90(y, -k, dims=(2, 3))
                results.append(y.flip(3) if flip else y)
        ordered = torch.stack(results).sort(dim=0).values
        out.append(ordered[(len(results) - 1) // 2])
    return torch.cat(out)


def reference_encode(vae, encoder, rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The reference: VAE posterior of the premultiplied [-1,1] image; offset encoder on [padded RGB, alpha] x 300;
    latent = mean + std * offset (raw, unscaled)."""
    moments = vae.first_stage_model.encoder((rgb * 2 - 1) * alpha)
    mean, logvar = moments.chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
    offset = encoder(torch.cat([pad_rgb(rgb, alpha), alpha], dim=1)) * 300.0
    return mean + std * offset


def _inputs(batch, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 16, h // 8, w // 8, generator=g), torch.rand(batch, h, w, 3, generator=g)


@pytest.mark.parametrize("batch,h,w", [(1, 64, 64), (2, 64, 128)])
def test_decode_node_equals_the_reference(flux_vae_pair, batch, h, w):
    tvae, _ = flux_vae_pair
    latent, image = _inputs(batch, h, w, seed=h + w)
    rgb, alpha, rgba = TransparentDecode.execute(tvae, {"samples": latent}, image, passes="8", sub_batch_size=0).result
    decoder = tvae.decoder().model.float()
    with torch.no_grad():
        expected = reference_decode(decoder, image.movedim(-1, 1), latent).movedim(1, -1)  # R,G,B,A
    assert rgba.shape == (batch, h, w, 4)
    assert (rgba - expected).abs().max().item() <= TOLERANCE
    assert torch.equal(rgba[..., :3], rgb) and torch.equal(rgba[..., 3], alpha)
    assert expected[..., 3].std() > 0  # a real decode of random weights, not a constant


def test_decode_any_size_pads_like_the_sd_decoders(flux_vae_pair):
    tvae, _ = flux_vae_pair
    latent, image = _inputs(1, 72, 40, seed=3)
    rgba = TransparentDecode.execute(tvae, {"samples": latent}, image, passes="8", sub_batch_size=0).result[2]
    padded_image = torch.nn.functional.pad(image.movedim(-1, 1), (0, 24, 0, 56), mode="replicate")
    padded_latent = torch.nn.functional.pad(latent, (0, 3, 0, 7), mode="replicate")
    with torch.no_grad():
        expected = reference_decode(tvae.decoder().model.float(), padded_image, padded_latent)[..., :72, :40]
    assert rgba.shape == (1, 72, 40, 4)
    assert (rgba - expected.movedim(1, -1)).abs().max().item() <= TOLERANCE


def test_encode_node_equals_the_reference(flux_vae_pair):
    tvae, vae = flux_vae_pair
    g = torch.Generator().manual_seed(11)
    rgb = torch.rand(2, 64, 64, 3, generator=g)
    alpha = (torch.rand(2, 64, 64, generator=g) > 0.4).float()
    latent = TransparentEncode.execute(tvae, vae, rgb, mask_meaning=MASK_IS_ALPHA, offset_multiplier=1.0,
                                       mask=alpha).result[0]["samples"]
    with torch.no_grad():
        expected = reference_encode(vae, tvae.encoder().model.float(), rgb.movedim(-1, 1), alpha.unsqueeze(1))
    assert latent.shape == (2, 16, 8, 8)
    scale = expected.abs().max().item()
    assert (latent - expected).abs().max().item() <= TOLERANCE * max(1.0, scale)


def test_flux_model_picks_the_flux_family():
    tvae = LoadTransparentVAE.execute(family="SD15", allow_download=False, model=tiny_flux()).result[0]
    assert tvae.family is Family.FLUX
    options = LoadTransparentVAE.GET_NODE_INFO_V1()["input"]["required"]["family"][1]["options"]
    assert [o for o in options if "Flux" in o] == ["Flux"]


def test_sd_latent_on_the_flux_vae_fails_clearly(flux_vae_pair):
    tvae, _ = flux_vae_pair
    with pytest.raises(LayerStackError, match=r"input 'samples' expected a Flux latent \[B,16,H/8,W/8\] for the Flux "
                                              r"transparent VAE, got \[1, 4, 8, 8\]\. That is an SD1.5/SDXL latent"):
        TransparentDecode.execute(tvae, {"samples": torch.zeros(1, 4, 8, 8)}, torch.zeros(1, 64, 64, 3),
                                  passes="1", sub_batch_size=0)


def test_flux_latent_on_an_sd_vae_fails_clearly(fixture_paths):
    tvae = LoadTransparentVAE.execute(family="SDXL", allow_download=False).result[0]
    with pytest.raises(LayerStackError, match=r"expected an SD1.5/SDXL latent \[B,4,H/8,W/8\] .* got "
                                              r"\[1, 16, 8, 8\]\. That is a Flux latent"):
        TransparentDecode.execute(tvae, {"samples": torch.zeros(1, 16, 8, 8)}, torch.zeros(1, 64, 64, 3),
                                  passes="1", sub_batch_size=0)


def test_size_mismatch_fails_clearly(flux_vae_pair):
    tvae, _ = flux_vae_pair
    with pytest.raises(LayerStackError, match=r"the image is 128x64 but the latent is 8x8"):
        TransparentDecode.execute(tvae, {"samples": torch.zeros(1, 16, 8, 8)}, torch.zeros(1, 64, 128, 3),
                                  passes="1", sub_batch_size=0)


def test_wrong_ordinary_vae_fails_clearly(flux_vae_pair, sd15):
    tvae, flux_vae = flux_vae_pair
    image, alpha = torch.rand(1, 64, 64, 3), torch.ones(1, 64, 64)
    with pytest.raises(LayerStackError, match=r"input 'vae' expected a Flux VAE \(16-channel"):
        TransparentEncode.execute(tvae, sd15.vae, image, mask_meaning=MASK_IS_ALPHA, offset_multiplier=1.0, mask=alpha)
    sd_tvae = LoadTransparentVAE.execute(family="SD15", allow_download=False).result[0]
    with pytest.raises(LayerStackError, match=r"input 'vae' expected an SD1.5/SDXL VAE \(4-channel"):
        TransparentEncode.execute(sd_tvae, flux_vae, image, mask_meaning=MASK_IS_ALPHA, offset_multiplier=1.0,
                                  mask=alpha)
