"""The decoder and encoder under ComfyUI's model management: strict loading of their state dicts, and the
decode/encode entry points the nodes call with a LAYER_VAE (models/transparent_vae.py, which reads the files).

ComfyUI is imported inside functions only (layer_vae stays importable without it), and nothing here knows the
official files: a LAYER_VAE is anything with decoder() / encoder() returning the managed networks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Optional

import torch

from .. import host
from ..errors import FROM_NETWORK, FROM_SAMPLER, FROM_VAE, LayerStackError, require_finite
from . import augment
from . import decode as decode_mod
from . import encode as encode_mod
from . import layout as layout_mod
from .offset_encoder import LatentTransparencyOffsetEncoder
from .state_dict import load_strict
from .unet1024 import SIZE_MULTIPLE, UNet1024
from .vae_posterior import vae_posterior

log = logging.getLogger("layerstack")

# Peak activation memory of one UNet1024 sample, in bytes per pixel: about 480 feature channels
# in the network dtype (measured ~450 in fp32 on CPU) plus the fp32 pass results and median.
ACTIVATION_CHANNELS = 480
RESULT_BYTES_PER_PIXEL = 64
PASSES_CHOICES = tuple(sorted(augment.PASS_SETS, reverse=True))  # (8, 4, 2, 1): the node's options, most first
ENCODE_BATCH = 8  # the offset encoder is small; this only bounds its activations
LATENT_NAMES = {4: "an SD1.5/SDXL latent", 16: "a Flux latent"}


def network_dtype(device: torch.device) -> torch.dtype:
    """fp16, else bf16, else fp32, as ComfyUI decides for VAEs on this device (honours --fp32-vae etc.)."""
    import comfy.model_management as mm

    return mm.vae_dtype(device, [torch.float16, torch.bfloat16])


def _comfy_ops():
    import comfy.ops

    # Layers that can stream weights under --lowvram; no random init (the file fills them).
    return comfy.ops.disable_weight_init


def managed(module: torch.nn.Module, dtype: Optional[torch.dtype] = None):
    """Wrap a module for comfy.model_management (loaded to the torch device on use, offloaded after), in the
    patcher class the host gives its own models."""
    import comfy.model_management as mm

    load_device = mm.vae_device()
    module.to(device=mm.vae_offload_device(), dtype=dtype or network_dtype(load_device)).eval()
    module.requires_grad_(False)
    patcher = host.model_patcher_class()
    return patcher(module, load_device=load_device, offload_device=mm.vae_offload_device())


def decoder_from_state_dict(state_dict: Mapping[str, torch.Tensor], *, source: str, dtype=None, hint=None,
                            latent_channels: int = layout_mod.SD.latent_channels):
    with torch.device("meta"):
        net = UNet1024(ops=_comfy_ops(), latent_channels=latent_channels)
    what = f"UNet1024 transparent decoder ({latent_channels}-channel latents)"
    load_strict(net, state_dict, source=source, what=what, assign=True, hint=hint)
    return managed(net, dtype)


def encoder_from_state_dict(state_dict: Mapping[str, torch.Tensor], *, source: str, dtype=None, hint=None,
                            latent_channels: int = layout_mod.SD.latent_channels):
    with torch.device("meta"):
        net = LatentTransparencyOffsetEncoder(ops=_comfy_ops(), latent_channels=latent_channels)
    what = f"latent-transparency offset encoder ({latent_channels}-channel latents)"
    load_strict(net, state_dict, source=source, what=what, assign=True, hint=hint)
    return managed(net, dtype)


def layout_of(tvae) -> layout_mod.Layout:
    """How the LAYER_VAE's networks are wired (SD when it does not say)."""
    return getattr(tvae, "layout", layout_mod.SD)


# --- checks shared by the decode nodes ---------------------------------------------------------------------------------


def latent_channel_error(node: str, input_name: str, layout: layout_mod.Layout, got: object) -> LayerStackError:
    """Wrong latent for this transparent VAE, saying which family the latent looks like."""
    channels = layout.latent_channels
    expected = f"{LATENT_NAMES[channels]} [B,{channels},H/8,W/8] for the {layout.name} transparent VAE"
    hint = ""
    if isinstance(got, torch.Tensor) and got.ndim == 4 and got.shape[1] in LATENT_NAMES and got.shape[1] != channels:
        hint = (f" That is {LATENT_NAMES[got.shape[1]]}: pick the matching family in Load Transparent VAE "
                "(or connect the model there).")
    shown = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
    return LayerStackError(f"{node}: input '{input_name}' expected {expected}, got {shown}.{hint}")


def check_decode_inputs(node: str, images: torch.Tensor, samples: torch.Tensor,
                        layout: layout_mod.Layout = layout_mod.SD) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        got = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise LayerStackError(f"{node}: input 'images' expected an IMAGE [B,H,W,3], got {got}.")
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[1] != layout.latent_channels:
        raise latent_channel_error(node, "samples", layout, samples)
    b, h, w, _ = images.shape
    lb, _, lh, lw = samples.shape
    if (h, w) != (lh * 8, lw * 8):
        raise LayerStackError(
            f"{node}: the image is {w}x{h} but the latent is {lw}x{lh} (= {lw * 8}x{lh * 8} pixels). Connect the "
            "LATENT the image was VAE-decoded from; after upscaling an image, upscale or re-encode the latent too."
        )
    if b != lb:
        raise LayerStackError(
            f"{node}: input 'images' has {b} images but 'samples' has {lb} latents; they must be the same batch "
            "(the images decoded from these latents)."
        )


def bytes_per_sample(height: int, width: int, dtype: torch.dtype) -> int:
    import comfy.model_management as mm

    h = -(-height // SIZE_MULTIPLE) * SIZE_MULTIPLE
    w = -(-width // SIZE_MULTIPLE) * SIZE_MULTIPLE
    return h * w * (ACTIVATION_CHANNELS * mm.dtype_size(dtype) + RESULT_BYTES_PER_PIXEL)


# The automatic sub-batch is bounded by memory: as many network samples per forward call as fit a budget, each
# sample costing bytes_per_sample (its activations at this size). The budget is a share of the free memory the host's
# model management reports for the decoder's device. On an accelerator all of it: the decoder was just loaded with
# room made for its activations, and running out halves the sub-batch and retries. On a CPU that figure is the
# system's available RAM, which the checkpoint, every other model and the rest of the machine share, and a batched
# call there only saves per-call overhead (which matters for small images): CPU_FREE_MEMORY_SHARE of it. So small
# images batch their passes and from 256² on this 24 GB machine one runs per call (README "Speed": measured).
CPU_FREE_MEMORY_SHARE = 1 / 64


def memory_budget(device: torch.device) -> int:
    """Bytes the activations of one decoder call may take on `device` (see CPU_FREE_MEMORY_SHARE)."""
    import comfy.model_management as mm

    free = mm.get_free_memory(device)
    return int(free * CPU_FREE_MEMORY_SHARE) if device.type == "cpu" else int(free)


def auto_sub_batch(device: torch.device, per_sample: int) -> int:
    """Network samples per forward call when the user leaves it at automatic: as many as memory_budget holds."""
    return max(1, memory_budget(device) // per_sample)


def decode(
    tvae,
    images: torch.Tensor,
    samples: torch.Tensor,
    *,
    node: str,
    passes: int = 8,
    sub_batch_size: Optional[int] = None,
    sub_batch_cap: Optional[int] = None,
) -> torch.Tensor:
    """IMAGE [B,H,W,3] + raw LATENT samples -> [B,H,W,4] (alpha first, whatever the decoder's own order) fp32 on
    the intermediate device.

    ``sub_batch_size``: UNet samples per forward call (one image pass = one sample); None picks it, bounded by memory
    (auto_sub_batch). ``sub_batch_cap`` only lowers the chosen size, never raises it (the legacy nodes' old
    parameter). Out of memory halves it and retries.
    """
    import comfy.model_management as mm
    import comfy.utils

    layout = layout_of(tvae)
    check_decode_inputs(node, images, samples, layout)
    require_finite(images, node, "images", FROM_VAE)
    require_finite(samples, node, "samples", FROM_SAMPLER)
    if passes not in PASSES_CHOICES:
        raise LayerStackError(f"{node}: input 'passes' expected one of {PASSES_CHOICES}, got {passes}.")
    patcher = tvae.decoder()
    device = patcher.load_device
    dtype = next(patcher.model.parameters()).dtype
    batch, height, width, _ = images.shape
    per_sample = bytes_per_sample(height, width, dtype)
    mm.load_models_gpu([patcher], memory_required=per_sample * min(batch * passes, 16))
    if sub_batch_size is None:
        sub_batch_size = auto_sub_batch(device, per_sample)
    if sub_batch_cap is not None:
        sub_batch_size = max(1, min(sub_batch_size, sub_batch_cap))

    pixel = images[..., :3].movedim(-1, 1)
    square = -(-height // SIZE_MULTIPLE) == -(-width // SIZE_MULTIPLE)
    while True:
        _, calls = decode_mod.plan_forward_calls(batch, passes, square, sub_batch_size)
        bar = comfy.utils.ProgressBar(calls)
        try:
            out = decode_mod.decode_augmented(
                patcher.model,
                pixel,
                samples,
                passes=passes,
                max_batch=sub_batch_size,
                device=device,
                dtype=dtype,
                output_device=mm.intermediate_device(),
                on_forward=functools.partial(bar.update, 1),
                check_interrupt=mm.throw_exception_if_processing_interrupted,
            )
            if layout.alpha_last:
                out = out[:, [3, 0, 1, 2]]  # per-channel median and clip commute with this reordering
            return require_finite(out.movedim(1, -1), node, "rgb / alpha", FROM_NETWORK, kind="output")
        except Exception as error:
            if not host.is_oom(error) or sub_batch_size <= 1:
                raise
        # Outside the except block: the exception no longer pins the failed call's tensors.
        sub_batch_size = max(1, sub_batch_size // 2)
        log.warning("LayerStack %s: out of memory, retrying with %d samples per call", node, sub_batch_size)
        mm.soft_empty_cache()


def rgb_alpha_rgba(decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """decode()'s alpha-first [B,H,W,4] as the three outputs the decode nodes give: RGB IMAGE [B,H,W,3], alpha MASK
    [B,H,W] (1 = opaque) and the RGBA IMAGE [B,H,W,4] (alpha last)."""
    alpha, rgb = decoded[..., 0], decoded[..., 1:]
    return rgb, alpha, torch.cat([rgb, alpha.unsqueeze(-1)], dim=-1)


# --- encode ---------------------------------------------------------------------------------------------------------


def crop_like_vae_encode(vae, pixels: torch.Tensor, *, node: str) -> torch.Tensor:
    """[B,3,H,W] cropped by the host VAE's own rule (VAEEncode's), back as [B,3,h,w].

    Only ever 3 channels: hosts since Dec 2025 also trim the channels to the VAE's 3 there (so RGBA lost its
    alpha), which is why alpha goes through separately, repeated to 3 channels (docs/HOSTS.md).
    """
    cropped = vae.vae_encode_crop_pixels(pixels.movedim(1, -1)).movedim(-1, 1)
    if cropped.shape[1] != pixels.shape[1]:
        raise LayerStackError(f"{node}: input 'vae' expected an SD1.5/SDXL VAE with RGB input, got one whose "
                              f"input crop turns 3 channels into {cropped.shape[1]}.")
    return cropped


@torch.no_grad()
def encode(
    tvae,
    vae,
    rgb: torch.Tensor,
    alpha: torch.Tensor,
    *,
    node: str,
    multiplier: float = 1.0,
) -> torch.Tensor:
    """RGBA (rgb [B,3,H,W], alpha [B,1,H,W]) -> raw latent [B,C,H/8,W/8] for KSampler (docs/FORMATS.md#encode,
    #flux-encode: channel order and offset scale come from the LAYER_VAE's layout).

    The image is cropped to a multiple of 8 the way ComfyUI's VAEEncode crops.
    """
    import comfy.model_management as mm

    given_height, given_width = rgb.shape[2:]
    alpha = crop_like_vae_encode(vae, alpha.expand_as(rgb), node=node)[:, :1]
    rgb = crop_like_vae_encode(vae, rgb, node=node)
    if rgb.shape[2] < 8 or rgb.shape[3] < 8:  # the crop to a multiple of 8 left nothing: say what the user gave
        raise LayerStackError(
            f"{node}: input 'image' expected at least 8x8 pixels, got {given_width}x{given_height}."
        )

    layout = layout_of(tvae)
    mean, std = vae_posterior(vae, encode_mod.composite_on_grey(rgb, alpha).movedim(1, -1), node=node,
                              latent_channels=layout.latent_channels)

    patcher = tvae.encoder()
    device = patcher.load_device
    dtype = next(patcher.model.parameters()).dtype
    mm.load_models_gpu([patcher])
    offsets = []
    for start in range(0, rgb.shape[0], ENCODE_BATCH):
        mm.throw_exception_if_processing_interrupted()
        part = slice(start, start + ENCODE_BATCH)
        x = encode_mod.offset_encoder_input(rgb[part], alpha[part], alpha_last=layout.alpha_last)
        offsets.append(patcher.model(x.to(device=device, dtype=dtype)).float().to(mean.device))
    latent = encode_mod.offset_latent(mean, std, torch.cat(offsets), multiplier * layout.offset_scale)
    return require_finite(latent, node, "latent", f"{FROM_VAE} Or: {FROM_NETWORK}", kind="output")
