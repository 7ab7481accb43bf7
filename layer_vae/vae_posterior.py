"""Posterior mean and std of an ordinary SD1.5/SDXL or Flux VAE (ComfyUI ``comfy.sd.VAE``).

``VAE.encode`` returns only the posterior mode; the transparent encode also needs the std, so
this runs the first-stage encoder the same way ``VAE.encode`` does (model management, input
cropping, dtype/device, sub-batches) and keeps both moments.
"""

from __future__ import annotations

import torch

from ..errors import LayerStackError

VAE_NAMES = {4: "an SD1.5/SDXL VAE", 16: "a Flux VAE"}


def _moments_fn(vae, node: str, latent_channels: int):
    from comfy.ldm.models.autoencoder import AutoencodingEngine, AutoencodingEngineLegacy, DiagonalGaussianRegularizer

    fsm = vae.first_stage_model
    supported = (
        isinstance(fsm, AutoencodingEngine)
        and isinstance(getattr(fsm, "regularization", None), DiagonalGaussianRegularizer)
        and getattr(vae, "latent_channels", None) == latent_channels
        and getattr(vae, "latent_dim", None) == 2
        and vae.spacial_compression_encode() == 8
        and getattr(fsm, "bn", None) is None
    )
    if not supported:
        raise LayerStackError(
            f"{node}: input 'vae' expected {VAE_NAMES.get(latent_channels, 'a VAE')} ({latent_channels}-channel KL "
            f"autoencoder, 8x downscale) to match the transparent VAE, got {type(fsm).__name__} with "
            f"{getattr(vae, 'latent_channels', '?')} latent channels."
        )
    if isinstance(fsm, AutoencodingEngineLegacy):
        return lambda x: fsm.quant_conv(fsm.encoder(x))
    return lambda x: fsm.encode(x, unregularized=True)[0]


@torch.no_grad()
def vae_posterior(vae, pixels_bhwc: torch.Tensor, *, node: str, latent_channels: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) in raw latent space, [B,C,H/8,W/8] fp32 on ComfyUI's intermediate device.

    ``pixels_bhwc`` must already be cropped to a multiple of 8 (``vae.vae_encode_crop_pixels``).
    """
    import comfy.model_management as mm
    from comfy.ldm.modules.distributions.distributions import DiagonalGaussianDistribution

    vae.throw_exception_if_invalid()
    encode_moments = _moments_fn(vae, node, latent_channels)
    pixels = pixels_bhwc.movedim(-1, 1)
    memory = vae.memory_used_encode(pixels.shape, vae.vae_dtype)
    mm.load_models_gpu([vae.patcher], memory_required=memory, force_full_load=vae.disable_offload)
    per_call = max(1, int(mm.get_free_memory(vae.device) / max(1, memory)))
    means, stds = [], []
    for start in range(0, pixels.shape[0], per_call):
        mm.throw_exception_if_processing_interrupted()
        x = vae.process_input(pixels[start : start + per_call]).to(device=vae.device, dtype=vae.vae_dtype)
        posterior = DiagonalGaussianDistribution(encode_moments(x).float())
        means.append(posterior.mean.to(vae.output_device))
        stds.append(posterior.std.to(vae.output_device))
    return torch.cat(means), torch.cat(stds)
