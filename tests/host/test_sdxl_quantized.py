"""SDXL layer patches on a quantized base model: the fixture SDXL checkpoint saved in the "scaled fp8" layout
(fp8 e4m3 Linear weights, a per-layer `scale_weight`, the `scaled_fp8` marker), which both hosts load on CPU
(0.3.75 with its scaled-fp8 layers, newer hosts as quantized tensors).

Every SDXL file, always on and with a start/stop window: no error, finite output, the patch takes effect, and
the scheduled weights are the dequantized base weights plus the file's delta.
"""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from fixtures.sdxl_testing import LATENT, prompt, sample, unload_everything
from layerstack.models import sdxl_patches

UNET = "model.diffusion_model."
FP8 = torch.float8_e4m3fn
ATTN_KEY = "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"


def to_scaled_fp8(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every UNet Linear weight as fp8 with its scale (absmax / 448, the e4m3 range), as fp8 "scaled" files store it."""
    out = dict(state_dict)
    for key, weight in state_dict.items():
        if key.startswith(UNET) and key.endswith(".weight") and weight.ndim == 2:
            scale = weight.float().abs().max().clamp(min=1e-8) / 448.0
            out[key] = (weight.float() / scale).to(FP8)
            out[key[:-len("weight")] + "scale_weight"] = scale.reshape(())
    out[UNET + "scaled_fp8"] = torch.zeros(2, dtype=FP8)  # 2 elements: no fp8 matrix multiply (CPU)
    return out


@pytest.fixture(autouse=True)
def inference_mode():
    """Nodes run under torch.inference_mode() in ComfyUI's executor; the scaled-fp8 layers of 0.3.75 need it to
    re-quantize patched weights (their scale is a parameter)."""
    with torch.inference_mode():
        yield


@pytest.fixture(scope="module")
def quantized(fixture_paths, tmp_path_factory):
    import comfy.sd

    path = tmp_path_factory.mktemp("quantized") / "sdxl_scaled_fp8.safetensors"
    state_dict = safetensors.torch.load_file(str(fixture_paths["sdxl_checkpoint"]))
    safetensors.torch.save_file(to_scaled_fp8(state_dict), str(path))
    with torch.inference_mode():  # as the loader node runs (see inference_mode below)
        model, *_ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False, output_clip=False)
    return model


def effective_weight(patched, key: str) -> torch.Tensor:
    """The weight the loaded layer computes with now (its weight functions run, scale applied)."""
    import comfy.ops

    layer = patched.get_model_object(key.rsplit(".", 1)[0])
    weight, _ = comfy.ops.cast_bias_weight(layer, torch.zeros(1, layer.in_features), dtype=torch.float32,
                                           device=torch.device("cpu"))
    scale = getattr(layer, "scale_weight", None)  # hosts before quantized tensors scale after the cast
    return weight * scale.float() if isinstance(scale, torch.Tensor) else weight


def test_the_fixture_is_quantized(quantized):
    import comfy.model_management

    comfy.model_management.load_models_gpu([quantized], force_full_load=True)
    layer = quantized.get_model_object(ATTN_KEY.rsplit(".", 1)[0])
    assert layer.weight.dtype == FP8 or type(layer.weight).__name__ == "QuantizedTensor"
    unload_everything()


@pytest.mark.parametrize("file_id", [f.id for f in sdxl_patches.SDXL_FILES])
def test_every_sdxl_file_patches_the_quantized_model(quantized, file_id):
    layer = sdxl_patches.load_layer_patches(quantized, file_id, node="Test")
    positive, negative = prompt(1), prompt(2)
    if layer.entry.extra_channels:
        c_concat = torch.randn(1, 4 * (layer.entry.extra_channels // 4), LATENT, LATENT,
                               generator=torch.Generator().manual_seed(5)) * 0.13
        positive = sdxl_patches.with_c_concat(positive, c_concat)
        negative = sdxl_patches.with_c_concat(negative, c_concat)
    base = sample(quantized, prompt(1), prompt(2), steps=2)
    for stop in (1.0, 0.999):  # plain patches, and the scheduled weight wrappers over the whole run
        patched, pos, neg = sdxl_patches.apply_layer_patches(quantized, layer, node="Test", stop_percent=stop,
                                                             positive=positive, negative=negative)
        out = sample(patched, pos, neg, steps=2)
        assert torch.isfinite(out).all(), (file_id, stop)
        assert (out - base).abs().max() > 1e-2, (file_id, stop)
    unload_everything()


def test_scheduled_weights_are_the_dequantized_base_plus_the_delta(quantized):
    import comfy.model_management
    import comfy.patcher_extension

    layer = sdxl_patches.load_layer_patches(quantized, "layer_xl_transparent_attn", node="Test")
    up, down = layer.patches[ATTN_KEY].weights[:2]
    unload_everything()
    comfy.model_management.load_models_gpu([quantized], force_full_load=True)
    base = effective_weight(quantized, ATTN_KEY)
    unload_everything()
    patched, _, _ = sdxl_patches.apply_layer_patches(quantized, layer, node="Test", weight=0.5, stop_percent=0.5)
    seen = []

    def record(executor, x, t, *args, **kwargs):
        seen.append((float(t[0]), effective_weight(patched, ATTN_KEY)))
        return executor(x, t, *args, **kwargs)

    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "layerstack-test", record)
    sample(patched, prompt(1), prompt(2), steps=2, cfg=1.0)
    (_, inside), (_, outside) = seen  # stop 0.5 of 2 steps: on for the first, off for the second
    expected = base + 0.5 * (up.float() @ down.float())
    torch.testing.assert_close(inside, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    torch.testing.assert_close(outside, base, rtol=0, atol=0)
    unload_everything()
