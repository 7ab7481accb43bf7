"""Flux transparent decode and encode through the existing nodes in a real ComfyUI server, on the official-layout
fixture TransparentVAE.pth and a fixture Flux VAE, compared with the reference procedure computed here (the same
re-computation as tests/host/test_flux_transparent_vae_codec.py)."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from fixtures.flux import FLUX_VAE_NAME
from fixtures.server import SERVER_RUN_TIMEOUT_S, PromptFailed
from fixtures.workflows import saved_images

TOLERANCE = 2e-3


def _reference_decode(decoder, pixel, latent):
    results = []
    for flip in (False, True):
        for k in range(4):
            p, lat = (pixel.flip(3), latent.flip(3)) if flip else (pixel, latent)
            y = decoder(torch.rot90(p, k, dims=(2, 3)), torch.rot90(lat, k, dims=(2, 3))).clip(0, 1)
            y = torch.rot90(y, -k, dims=(2, 3))
            results.append(y.flip(3) if flip else y)
    return torch.stack(results).sort(dim=0).values[(len(results) - 1) // 2]  # torch's lower-middle median


def _saved_latent(server, history, node) -> torch.Tensor:
    entry = history["outputs"][node]["latents"][0]
    path = server.output_dir / entry["subfolder"] / entry["filename"]
    return safetensors.torch.load_file(str(path))["latent_tensor"]


def test_flux_decode_and_encode_through_the_nodes(comfy_server, fixture_paths, scratch_dir):
    g = torch.Generator().manual_seed(21)
    latent = torch.randn(1, 16, 8, 8, generator=g)
    latent_name = "layerstack_e2e_flux.latent"
    safetensors.torch.save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])},
                                str(comfy_server.input_dir / latent_name))
    rgb = (torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(rgb, "RGB").save(scratch_dir / "image.png")
    image_name = comfy_server.upload_image(scratch_dir / "image.png", "layerstack_e2e_flux_image.png")
    alpha = ((np.mgrid[0:64, 0:64][0] < 40) * 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(scratch_dir / "asset.png")
    asset_name = comfy_server.upload_image(scratch_dir / "asset.png", "layerstack_e2e_flux_asset.png")

    prompt = {
        "1": {"class_type": "LoadLatent", "inputs": {"latent": latent_name}},
        "2": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "3": {"class_type": "LayerStackLoadTransparentVAE", "inputs": {"family": "Flux", "allow_download": False}},
        "4": {"class_type": "LayerStackTransparentDecode", "inputs": {
            "layer_vae": ["3", 0], "samples": ["1", 0], "images": ["2", 0], "passes": "8", "sub_batch_size": 0}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 2], "filename_prefix": "flux_e2e/rgba"}},
        "6": {"class_type": "VAELoader", "inputs": {"vae_name": FLUX_VAE_NAME}},
        "7": {"class_type": "LoadImage", "inputs": {"image": asset_name}},
        "8": {"class_type": "LayerStackTransparentEncode", "inputs": {
            "layer_vae": ["3", 0], "vae": ["6", 0], "image": ["7", 0], "mask": ["7", 1],
            "mask_meaning": "LoadImage mask (1 = transparent)", "offset_multiplier": 1.0}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "flux_e2e/latent"}},
    }
    history = comfy_server.run(prompt, timeout=SERVER_RUN_TIMEOUT_S)

    # The reference, here in the test process, from the same fixture file.
    import comfy.sd
    import comfy.utils

    from layerstack.layer_vae import pad_rgb
    from layerstack.models.registry import Family
    from layerstack.models.transparent_vae import TransparentVAE

    tvae = TransparentVAE(Family.FLUX)
    with torch.no_grad():
        pixel = torch.from_numpy(rgb).float().div(255).movedim(-1, 0)[None]
        expected = _reference_decode(tvae.decoder().model.float(), pixel, latent)[0].movedim(0, -1).numpy()
    saved = np.asarray(saved_images(comfy_server, history, "5")[0]).astype(np.float64)
    assert saved.shape == (64, 64, 4)
    # SaveImage truncates x*255 to 8 bits: the saved value must lie in the truncation range of expected +- 2e-3
    low, high = np.floor(255 * np.clip(expected - TOLERANCE, 0, 1)), np.floor(255 * np.clip(expected + TOLERANCE, 0, 1))
    assert ((saved >= low) & (saved <= high)).all()
    assert expected[..., 3].std() > 0.01

    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(fixture_paths["flux_vae"])))
    with torch.no_grad():
        rgb_t = torch.from_numpy(rgb).float().div(255).movedim(-1, 0)[None]
        a = torch.from_numpy(alpha).float().div(255)[None, None]
        moments = vae.first_stage_model.encoder((rgb_t * 2 - 1) * a)
        mean, logvar = moments.chunk(2, dim=1)
        offset = tvae.encoder().model.float()(torch.cat([pad_rgb(rgb_t, a), a], dim=1)) * 300.0
        expected_latent = mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * offset
    got = _saved_latent(comfy_server, history, "9")
    assert got.shape == (1, 16, 8, 8)
    assert (got - expected_latent).abs().max().item() <= TOLERANCE * max(1.0, expected_latent.abs().max().item())


def test_code_carrying_pickle_is_refused_in_the_server(comfy_server, fixture_paths, tmp_path):
    """A TransparentVAE.pth that would run code is refused with a message naming it; the server keeps serving."""
    import pickle

    class Payload:
        def __reduce__(self):
            import os

            return (os.mkdir, (str(tmp_path / "payload_ran"),))

    folder = comfy_server.base_dir / "models" / "layer_model_evil"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "TransparentVAE.pth").write_bytes(pickle.dumps({"decoder.conv_in.weight": Payload()}))
    prompt = {
        "1": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "3": {"class_type": "LayerStackLoadTransparentVAE", "inputs": {"family": "Flux", "allow_download": False}},
        "4": {"class_type": "LayerStackTransparentDecode", "inputs": {
            "layer_vae": ["3", 0], "samples": ["1", 0], "images": ["2", 0], "passes": "1", "sub_batch_size": 0}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }
    # The evil folder is searched before the fixture folder only through a server of its own: the shared server's
    # folders are fixed at start, so here a second server sees just the evil file.
    from fixtures.server import ComfyServer

    server = ComfyServer(comfy_server.base_dir.parent / "evil_server", layer_model_dir=folder)
    server.start()
    try:
        with pytest.raises(PromptFailed, match=r"TransparentVAE\.pth: refused.*never runs code from a pickle"):
            server.run(prompt)
        assert server.object_info("LayerStackLoadTransparentVAE")  # still serving
    finally:
        server.stop()
    assert not (tmp_path / "payload_ran").exists()
