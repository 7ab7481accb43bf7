"""The transparent VAE nodes in-process: schemas (the legacy ones exactly as ComfyUI-layerdiffuse's), family
choice from a MODEL, decode outputs, the transparent encode against ComfyUI's own VAE, and input errors.

Uses the official-shape fixture decoder/encoder files and the fixture SD1.5/SDXL checkpoints (random weights).
"""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from layerstack.errors import LayerStackError
from layerstack.layer_vae import LatentTransparencyOffsetEncoder, decode_augmented
from layerstack.layer_vae.encode import composite_on_grey, offset_encoder_input
from layerstack.layer_vae.vae_posterior import vae_posterior
from layerstack.models.registry import Family
from layerstack.models.transparent_vae import TransparentVAE
from layerstack.nodes import legacy_decode, transparent_vae
from layerstack.nodes.common import MASK_IS_ALPHA, MASK_IS_LOADIMAGE
from layerstack.nodes.transparent_vae import (
    LoadTransparentVAE,
    TransparentDecode,
    TransparentEncode,
)


@pytest.fixture(scope="module")
def checkpoints(fixture_paths):
    import comfy.sd

    loaded = {}
    for family in ("SD15", "SDXL"):
        model, _, vae, _ = comfy.sd.load_checkpoint_guess_config(
            str(fixture_paths[f"{family.lower()}_checkpoint"]), output_vae=True, output_clip=False)
        loaded[family] = (model, vae)
    return loaded


@pytest.fixture(scope="module")
def sd15_vae(checkpoints):
    return checkpoints["SD15"][1]


@pytest.fixture(scope="module")
def layer_vae(fixture_paths):
    """One SD1.5 LAYER_VAE for the module: the official-shape decoder is read once."""
    return LoadTransparentVAE.execute(family="SD15", allow_download=False).result[0]


def latent_and_image(batch=1, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(batch, 4, h // 8, w // 8, generator=g)}, torch.rand(batch, h, w, 3, generator=g)


# --- schemas ----------------------------------------------------------------------------------------------------------

def test_legacy_decode_schemas_are_the_old_ones():
    # V3 serialises a combo as ["COMBO", {"options": [...]}]; the old V1 form was [[...], {...}].
    common = {"sub_batch_size": ["INT", {"default": 16, "min": 1, "max": 4096, "step": 1}]}

    def required(node):
        info = node.GET_NODE_INFO_V1()
        return info, info["input"]["required"]

    for node, outputs in ((legacy_decode.LayeredDiffusionDecode, ["IMAGE", "MASK"]),
                          (legacy_decode.LayeredDiffusionDecodeRGBA, ["IMAGE"])):
        info, req = required(node)
        assert list(req) == ["samples", "images", "sd_version", "sub_batch_size"]
        assert req["samples"][0] == "LATENT" and req["images"][0] == "IMAGE"
        assert req["sd_version"][1]["options"] == ["SD15", "SDXL"]
        assert req["sd_version"][1]["default"] == "SDXL"
        assert {k: req["sub_batch_size"][1][k] for k in ("default", "min", "max", "step")} == common["sub_batch_size"][1]
        assert info["output"] == outputs and not info["input"].get("optional")
        assert info["deprecated"] is True

    info, req = required(legacy_decode.LayeredDiffusionDecodeSplit)
    assert list(req) == ["samples", "images", "frames", "sd_version", "sub_batch_size"]
    assert req["frames"][0] == "INT" and req["sd_version"][1]["options"] == ["SD15", "SDXL"]
    assert {k: req["frames"][1][k] for k in ("default", "min", "max", "step")} == {"default": 2, "min": 2, "max": 3,
                                                                                    "step": 1}
    assert info["output"] == ["IMAGE", "IMAGE", "IMAGE"]
    assert {n.GET_SCHEMA().display_name for n in legacy_decode.NODES} == {
        "Layer Diffuse Decode", "Layer Diffuse Decode (RGBA)", "Layer Diffuse Decode (Split)"}


def test_nodes_are_registered():
    from layerstack.nodes import all_nodes

    ids = {n.GET_SCHEMA().node_id for n in all_nodes()}
    assert {"LayerStackLoadTransparentVAE", "LayerStackTransparentDecode", "LayerStackTransparentEncode",
            "LayerStackPreviewRGBA", "LayeredDiffusionDecode", "LayeredDiffusionDecodeRGBA",
            "LayeredDiffusionDecodeSplit"} <= ids
    for node in transparent_vae.NODES:
        info = node.GET_NODE_INFO_V1()
        tooltips = [v[1].get("tooltip") for group in info["input"].values() for v in group.values()
                    if isinstance(v, (list, tuple)) and len(v) > 1]
        assert all(tooltips), f"{info['name']} has inputs without a tooltip"


# --- family -----------------------------------------------------------------------------------------------------------

def test_family_comes_from_the_model_when_connected(checkpoints):
    for family in ("SD15", "SDXL"):
        model = checkpoints[family][0]
        other = "SDXL" if family == "SD15" else "SD15"
        tvae = LoadTransparentVAE.execute(family=other, allow_download=False, model=model).result[0]
        assert tvae.family is Family(family)
        assert tvae.decoder_file.family is Family(family) and tvae.encoder_file.family is Family(family)
    assert LoadTransparentVAE.execute(family="SD15", allow_download=False).result[0].family is Family.SD15


def test_unsupported_model_is_refused():
    import comfy.model_patcher

    cpu = torch.device("cpu")
    model = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), load_device=cpu, offload_device=cpu)
    with pytest.raises(LayerStackError, match="input 'model' expected an SD1.5, SDXL or Flux model"):
        LoadTransparentVAE.execute(family="SD15", allow_download=False, model=model)


# --- decode -----------------------------------------------------------------------------------------------------------

def test_decode_node_outputs(layer_vae):
    samples, images = latent_and_image(batch=2, h=64, w=64)
    rgb, alpha, rgba = TransparentDecode.execute(layer_vae, samples, images, passes="2", sub_batch_size=0).result
    assert rgb.shape == (2, 64, 64, 3) and alpha.shape == (2, 64, 64) and rgba.shape == (2, 64, 64, 4)
    # all samples in one call here, one per call in the node (automatic on CPU): equal up to float rounding
    expected = decode_augmented(layer_vae.decoder().model, images.movedim(-1, 1), samples["samples"], passes=2)
    assert torch.allclose(alpha, expected[:, 0], atol=1e-5)
    assert torch.allclose(rgb, expected[:, 1:].movedim(1, -1), atol=1e-5)
    assert torch.equal(rgba[..., :3], rgb) and torch.equal(rgba[..., 3], alpha)


def test_legacy_nodes_equal_the_new_decode(layer_vae):
    samples, images = latent_and_image(batch=2, seed=4)
    first_samples, first_images = {"samples": samples["samples"][:1]}, images[:1]
    rgb, alpha, rgba = TransparentDecode.execute(layer_vae, first_samples, first_images, passes="8",
                                                 sub_batch_size=0).result
    old_rgb, old_mask = legacy_decode.LayeredDiffusionDecode.execute(first_samples, first_images, "SD15", 3).result
    assert torch.allclose(old_rgb, rgb, atol=1e-5) and torch.allclose(old_mask, alpha, atol=1e-5)
    (old_rgba,) = legacy_decode.LayeredDiffusionDecodeRGBA.execute(first_samples, first_images, "SD15", 16).result
    assert torch.allclose(old_rgba, rgba, atol=1e-5)
    # split: frame 0 of each pair decoded, frame 1 passed through, third output empty
    first, second, third = legacy_decode.LayeredDiffusionDecodeSplit.execute(samples, images, 2, "SD15", 16).result
    assert torch.allclose(first, rgba, atol=1e-5)
    assert torch.equal(second, images[1:]) and third is None


def test_decode_accepts_any_multiple_of_8(layer_vae):
    samples, images = latent_and_image(h=72, w=80)
    rgb, alpha, rgba = TransparentDecode.execute(layer_vae, samples, images, passes="1", sub_batch_size=1).result
    assert rgba.shape == (1, 72, 80, 4) and 0 <= alpha.min() and alpha.max() <= 1


@pytest.mark.parametrize("latent_shape,image_shape,message", [
    ((1, 4, 8, 8), (1, 128, 64, 3), r"the image is 64x128 but the latent is 8x8 \(= 64x64 pixels\)"),
    ((2, 4, 8, 8), (1, 64, 64, 3), r"input 'images' has 1 images but 'samples' has 2 latents"),
    ((1, 16, 8, 8), (1, 64, 64, 3), r"input 'samples' expected an SD1.5/SDXL latent \[B,4,H/8,W/8\] for the "
                                    r"SD1.5/SDXL transparent VAE, got \[1, 16, 8, 8\]\. That is a Flux latent"),
    ((1, 4, 8, 8), (1, 64, 64), r"input 'images' expected an IMAGE"),
])
def test_decode_input_errors(layer_vae, latent_shape, image_shape, message):
    with pytest.raises(LayerStackError, match="LayerStackTransparentDecode: " + message):
        TransparentDecode.execute(layer_vae, {"samples": torch.zeros(latent_shape)}, torch.zeros(image_shape),
                                  passes="8", sub_batch_size=0)


def test_decode_rejects_other_socket_values():
    samples, images = latent_and_image()
    with pytest.raises(LayerStackError, match="input 'layer_vae' expected the output of Load Transparent VAE"):
        TransparentDecode.execute("not a vae", samples, images, passes="8", sub_batch_size=0)
    with pytest.raises(LayerStackError, match="input 'passes' expected one of"):
        TransparentDecode.execute(TransparentVAE(Family.SD15), samples, images, passes="3", sub_batch_size=0)


def test_legacy_sd_version_is_checked():
    samples, images = latent_and_image()
    with pytest.raises(LayerStackError, match="LayeredDiffusionDecode: input 'sd_version' expected one of"):
        legacy_decode.LayeredDiffusionDecode.execute(samples, images, "SD21", 16)


# --- encode -----------------------------------------------------------------------------------------------------------

def rgba_image(h=64, w=64, batch=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, h, w, 3, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    alpha = ((yy**2 + xx**2) < 0.5).float().expand(batch, h, w)
    return torch.cat([rgb, alpha.unsqueeze(-1)], dim=-1)


def test_vae_posterior_mean_is_comfyuis_encode(sd15_vae):
    pixels = torch.rand(2, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    mean, std = vae_posterior(sd15_vae, pixels, node="t")
    assert torch.allclose(mean, sd15_vae.encode(pixels), atol=1e-4)
    assert mean.shape == std.shape == (2, 4, 8, 8) and (std > 0).all() and torch.isfinite(std).all()


def test_encode_is_mean_plus_std_times_offset(layer_vae, sd15_vae, fixture_paths):
    image = rgba_image(batch=2)
    for multiplier in (0.0, 1.0, 2.5):
        (latent,) = TransparentEncode.execute(layer_vae, sd15_vae, image, MASK_IS_ALPHA, multiplier).result
        assert latent["samples"].shape == (2, 4, 8, 8)
        rgb, alpha = image[..., :3].movedim(-1, 1), image[..., 3:].movedim(-1, 1)
        mean, std = vae_posterior(sd15_vae, composite_on_grey(rgb, alpha).movedim(1, -1), node="t")
        encoder = LatentTransparencyOffsetEncoder().eval()
        file_sd = safetensors.torch.load_file(
            str(fixture_paths["layer_model_dir"] / "layer_sd15_vae_transparent_encoder.safetensors"))
        encoder.load_state_dict({k: v.float() for k, v in file_sd.items()})
        with torch.no_grad():
            offset = encoder(offset_encoder_input(rgb, alpha))
        assert torch.allclose(latent["samples"], mean + std * offset * multiplier, atol=1e-4)
        if multiplier == 0.0:
            grey = composite_on_grey(rgb, alpha).movedim(1, -1)
            assert torch.allclose(latent["samples"], sd15_vae.encode(grey), atol=1e-4)


def test_encode_alpha_sources_agree(layer_vae, sd15_vae):
    image = rgba_image(seed=3)
    rgb, alpha = image[..., :3], image[..., 3]
    from_rgba = TransparentEncode.execute(layer_vae, sd15_vae, image, MASK_IS_ALPHA, 1.0).result[0]["samples"]
    from_alpha = TransparentEncode.execute(layer_vae, sd15_vae, rgb, MASK_IS_ALPHA, 1.0, mask=alpha).result[0]
    from_loadimage = TransparentEncode.execute(layer_vae, sd15_vae, rgb, MASK_IS_LOADIMAGE, 1.0,
                                               mask=1.0 - alpha).result[0]
    assert torch.allclose(from_alpha["samples"], from_rgba, atol=1e-6)
    assert torch.allclose(from_loadimage["samples"], from_rgba, atol=1e-6)
    opaque = TransparentEncode.execute(layer_vae, sd15_vae, rgb, MASK_IS_ALPHA, 1.0, mask=torch.ones_like(alpha))
    assert not torch.allclose(opaque.result[0]["samples"], from_rgba, atol=1e-3)


def test_encode_crops_like_vae_encode(layer_vae, sd15_vae):
    image = rgba_image(h=70, w=83)
    (latent,) = TransparentEncode.execute(layer_vae, sd15_vae, image, MASK_IS_ALPHA, 1.0).result
    assert latent["samples"].shape == (1, 4, 8, 10)
    (cropped,) = TransparentEncode.execute(layer_vae, sd15_vae, image[:, 3:67, 1:81], MASK_IS_ALPHA, 1.0).result
    assert torch.allclose(latent["samples"], cropped["samples"], atol=1e-5)


def channel_trimming_vae(vae):
    """The VAE as hosts since Dec 2025 crop its input: spatially, then trimmed to the VAE's 3 channels."""
    import copy

    trimming = copy.copy(vae)
    host_crop = vae.vae_encode_crop_pixels
    trimming.vae_encode_crop_pixels = lambda pixels: host_crop(pixels)[..., :3]
    return trimming


def test_encode_keeps_alpha_on_hosts_that_trim_the_vae_input_to_rgb(layer_vae, sd15_vae):
    image = rgba_image(h=70, w=83, seed=4)  # not multiples of 8: the crop offsets must match for rgb and alpha
    trimming = channel_trimming_vae(sd15_vae)
    assert trimming.vae_encode_crop_pixels(image).shape == (1, 64, 80, 3)  # the alpha is gone there
    (latent,) = TransparentEncode.execute(layer_vae, trimming, image, MASK_IS_ALPHA, 1.0).result
    (expected,) = TransparentEncode.execute(layer_vae, sd15_vae, image[:, 3:67, 1:81], MASK_IS_ALPHA, 1.0).result
    assert latent["samples"].shape == (1, 4, 8, 10)
    assert torch.allclose(latent["samples"], expected["samples"], atol=1e-5)
    opaque = TransparentEncode.execute(layer_vae, trimming, image[..., :3], MASK_IS_ALPHA, 1.0,
                                       mask=torch.ones(1, 70, 83)).result[0]
    assert not torch.allclose(opaque["samples"], latent["samples"], atol=1e-3)  # alpha did reach the encoder


@pytest.mark.parametrize("image_shape,mask_shape,message", [
    ((1, 64, 64, 3), None, r"input 'mask' expected a MASK, or an RGBA \(4-channel\) 'image', got an RGB image"),
    ((1, 64, 64, 3), (1, 32, 64), r"input 'mask' expected height x width 64x64 \(the size of 'image'\), got 32x64"),
    ((1, 64, 64, 4), (1, 64, 64), r"input 'mask' expected no MASK when 'image' already has an alpha channel"),
    ((1, 64, 64, 2), None, r"input 'image' expected an IMAGE of shape \[batch, height, width, 3 or 4\]"),
])
def test_encode_input_errors(layer_vae, sd15_vae, image_shape, mask_shape, message):
    mask = torch.ones(mask_shape) if mask_shape else None
    with pytest.raises(LayerStackError, match="LayerStackTransparentEncode: " + message):
        TransparentEncode.execute(layer_vae, sd15_vae, torch.rand(image_shape), MASK_IS_ALPHA, 1.0, mask=mask)


def test_encode_refuses_a_non_sd_vae(layer_vae, sd15_vae):
    import copy

    other = copy.copy(sd15_vae)
    other.latent_channels = 16
    with pytest.raises(LayerStackError, match="input 'vae' expected an SD1.5/SDXL VAE"):
        TransparentEncode.execute(layer_vae, other, rgba_image(), MASK_IS_ALPHA, 1.0)


# --- non-finite values and late or misleading errors (issue: NaN/inf were silent; 1x1 said 0x0) ------------------------

@pytest.mark.parametrize("where", ["samples", "images"])
def test_decode_refuses_nan_and_inf_naming_input_count_and_cause(layer_vae, where):
    samples, images = latent_and_image()
    broken = samples["samples"] if where == "samples" else images
    broken.view(-1)[3] = float("nan")
    broken.view(-1)[5] = float("inf")
    with pytest.raises(LayerStackError, match=rf"LayerStackTransparentDecode: input '{where}' holds 2 non-finite "
                                              r"value\(s\) \(NaN or inf\) out of \d+\. Likely cause: .*--fp32-vae"):
        TransparentDecode.execute(layer_vae, samples, images, passes="1", sub_batch_size=0)
    with pytest.raises(LayerStackError, match=rf"LayeredDiffusionDecode: input '{where}' holds 2 non-finite"):
        legacy_decode.LayeredDiffusionDecode.execute(samples, images, "SD15", 16)


def test_encode_refuses_a_nan_image_and_reports_the_size_the_user_gave(layer_vae, sd15_vae):
    image = rgba_image()
    image[0, 1, 2, 0] = float("nan")
    with pytest.raises(LayerStackError, match=r"LayerStackTransparentEncode: input 'image' holds 1 non-finite"):
        TransparentEncode.execute(layer_vae, sd15_vae, image, MASK_IS_ALPHA, 1.0)
    with pytest.raises(LayerStackError, match=r"input 'image' expected at least 8x8 pixels, got 1x1\."):
        TransparentEncode.execute(layer_vae, sd15_vae, rgba_image(h=1, w=1), MASK_IS_ALPHA, 1.0)


# --- legacy decode ids: decoder reused while its file is unchanged, sub_batch_size only caps memory -----------------

def test_legacy_decode_reuses_the_decoder_and_caps_the_sub_batch(fixture_paths, monkeypatch):
    import os

    from layerstack.layer_vae import runtime as runtime_mod
    from layerstack.models import files

    reads, sub_batches = [], []
    real_load, real_decode = files.load_layer_file, runtime_mod.decode_mod.decode_augmented
    monkeypatch.setattr(files, "load_layer_file", lambda entry, **kw: reads.append(entry) or real_load(entry, **kw))
    monkeypatch.setattr(runtime_mod.decode_mod, "decode_augmented",
                        lambda *a, **kw: sub_batches.append(kw["max_batch"]) or real_decode(*a, **kw))
    samples, images = latent_and_image(batch=4)  # 4 images x 8 passes = 32 network samples
    per_sample = runtime_mod.bytes_per_sample(64, 64, torch.float32)
    # The sub-batch is what the memory budget holds, whatever the workflow's sub_batch_size asks for ...
    monkeypatch.setattr(runtime_mod, "memory_budget", lambda device: per_sample - 1)  # not even one fits: 1
    first = legacy_decode.LayeredDiffusionDecodeRGBA.execute(samples, images, "SD15", 16).result[0]
    monkeypatch.setattr(runtime_mod, "memory_budget", lambda device: 3 * per_sample)
    legacy_decode.LayeredDiffusionDecodeRGBA.execute(samples, images, "SD15", 16)
    # ... and the old parameter caps it, never raises it: the old node ran sub_batch_size images per call, one pass
    # each, so with a budget for everything: 4 samples (the batch) for the default 16, and 2 for 2.
    monkeypatch.setattr(runtime_mod, "memory_budget", lambda device: 1 << 40)
    second = legacy_decode.LayeredDiffusionDecodeRGBA.execute(samples, images, "SD15", 16).result[0]
    legacy_decode.LayeredDiffusionDecodeRGBA.execute(samples, images, "SD15", 2)
    assert sub_batches == [1, 3, 4, 2]
    assert len(reads) <= 1 and torch.allclose(first, second, atol=1e-5)  # read at most once (an earlier test may have)
    path = fixture_paths["layer_model_dir"] / "layer_sd15_vae_transparent_decoder.safetensors"
    stat = path.stat()
    before = len(reads)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the file "changed"
    try:
        legacy_decode.LayeredDiffusionDecodeRGBA.execute(samples, images, "SD15", 16)
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert len(reads) == before + 1  # read again after the change
