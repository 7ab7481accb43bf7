"""The Flux layer LoRA through ComfyUI's LoRA patches on a tiny model that is ComfyUI's Flux class: both key namings
land on the right weights (slices of the fused qkv / linear1 weights), every unmapped tensor is listed, non-Flux
models are refused, the base model is never changed, and the full-size key layout maps onto full-size FLUX.1-dev."""

from __future__ import annotations

import pytest
import torch

from fixtures.flux import HIDDEN, flux_model_config, layer_lora, layer_lora_shapes, tiny_flux
from fixtures.weights import assert_same_weights, weights_fingerprint
from layerstack.errors import LayerStackError
from layerstack.models import flux_lora
from layerstack.nodes.flux import ApplyFluxLayerLoRA

NODE = "LayerStackApplyFluxLayerLoRA"
QKV = "diffusion_model.double_blocks.0.img_attn.qkv.weight"
PROJ = "diffusion_model.double_blocks.0.img_attn.proj.weight"
LINEAR1 = "diffusion_model.single_blocks.0.linear1.weight"


@pytest.fixture(scope="module")
def model():
    return tiny_flux()


def patched_weights(patcher) -> dict[str, torch.Tensor]:
    patcher.patch_model()
    try:
        return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()}
    finally:
        patcher.unpatch_model()


def delta(up: torch.Tensor, down: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return (up.float() @ down.float()) * scale


def test_diffusers_naming_patches_the_fused_slices(model):
    before = weights_fingerprint(model)
    lora = layer_lora("diffusers")
    patched = flux_lora.apply_layer_lora(model, lora, 0.5, node=NODE, source="layerlora.safetensors")
    after = patched_weights(patched)
    assert_same_weights(before, model)

    def d(base):
        return delta(lora[f"{base}.lora_B.weight"], lora[f"{base}.lora_A.weight"], 0.5)

    qkv = before[QKV].clone()
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        qkv[i * HIDDEN : (i + 1) * HIDDEN] += d(f"transformer.transformer_blocks.0.attn.{name}")
    assert torch.allclose(after[QKV], qkv, atol=1e-5)
    assert torch.allclose(after[PROJ], before[PROJ] + d("transformer.transformer_blocks.0.attn.to_out.0"), atol=1e-5)
    linear1 = before[LINEAR1].clone()
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        linear1[i * HIDDEN : (i + 1) * HIDDEN] += d(f"transformer.single_transformer_blocks.0.attn.{name}")
    assert torch.allclose(after[LINEAR1], linear1, atol=1e-5)  # the mlp rows [3H:7H] untouched
    untouched = [k for k in before if k not in (QKV, PROJ, LINEAR1)]
    assert all(torch.equal(after[k], before[k]) for k in untouched)


def test_kohya_naming_patches_whole_weights_with_alpha(model):
    before = weights_fingerprint(model)
    lora = layer_lora("kohya", rank=4)
    after = patched_weights(flux_lora.apply_layer_lora(model, lora, 1.0, node=NODE, source="f"))
    base = "lora_unet_double_blocks_0_img_attn_qkv"
    scale = lora[f"{base}.alpha"].item() / 4
    expected = before[QKV] + delta(lora[f"{base}.lora_up.weight"], lora[f"{base}.lora_down.weight"], scale)
    assert torch.allclose(after[QKV], expected, atol=1e-5)
    assert_same_weights(before, model)


def test_every_unmapped_tensor_is_listed(model):
    lora = layer_lora("diffusers")
    lora["transformer.transformer_blocks.7.attn.to_q.lora_A.weight"] = torch.zeros(4, HIDDEN)
    lora["transformer.transformer_blocks.7.attn.to_q.lora_B.weight"] = torch.zeros(HIDDEN, 4)
    lora["transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight"] = torch.zeros(3072, 4)
    lora["some_other.tensor"] = torch.zeros(1)
    with pytest.raises(LayerStackError) as err:
        flux_lora.apply_layer_lora(model, lora, 1.0, node=NODE, source="layerlora.safetensors")
    message = str(err.value)
    assert "layerlora.safetensors (other key naming, 17 tensors) does not fit this Flux model; 4 tensor(s)" in message
    assert "transformer.transformer_blocks.7.attn.to_q.lora_A.weight (no model weight" in message
    assert "transformer.transformer_blocks.7.attn.to_q.lora_B.weight (no model weight" in message
    assert "some_other.tensor (not a LoRA tensor name)" in message
    assert "single_transformer_blocks.0.attn.to_q.lora_B.weight [3072, 4]" in message
    assert f"needs up [{HIDDEN}, r] and down [r, {HIDDEN}]" in message


def test_non_flux_models_are_refused(sdxl):
    with pytest.raises(LayerStackError, match=f"{NODE}: input 'model' expected a FLUX.1-dev model .* got a SDXL model"):
        flux_lora.apply_layer_lora(sdxl.model, layer_lora("diffusers"), 1.0, node=NODE, source="f")
    schnell = tiny_flux(config_class="FluxSchnell")
    with pytest.raises(LayerStackError, match="got a FluxSchnell model"):
        ApplyFluxLayerLoRA.execute(model=schnell, strength=1.0, allow_download=False)


def test_node_reads_the_file_from_layer_model(fixture_paths, model):
    before = weights_fingerprint(model)
    patched = ApplyFluxLayerLoRA.execute(model=model, strength=1.0, allow_download=False).result[0]
    assert patched is not model
    assert {QKV, PROJ, LINEAR1} <= set(patched.patches)
    assert_same_weights(before, model)


def test_grammar_check_of_the_file():
    lora = layer_lora("diffusers")
    del lora["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"]
    problems = list(flux_lora.lora_grammar_problems(lora))
    assert problems == ["1 LoRA modules lack their up or down matrix "
                        "(e.g. 'transformer.transformer_blocks.0.attn.to_q')"]


@pytest.mark.parametrize("naming", ["diffusers", "kohya"])
def test_full_size_layout_maps_onto_full_size_flux_dev(naming):
    """FLUX.1-dev dimensions (hidden 3072, 19 double + 38 single blocks) on the meta device: no memory needed."""
    import comfy.supported_models as sm

    config = flux_model_config(hidden_size=3072, num_heads=24, axes_dim=[16, 56, 56], depth=19, depth_single_blocks=38,
                               vec_in_dim=768, context_in_dim=4096, in_channels=16, dtype=torch.bfloat16)
    base = sm.Flux(config).get_model({}, device="meta")

    class Patcher:  # what unmapped() reads of a ModelPatcher
        model = base

    import comfy.lora

    shapes = layer_lora_shapes(naming, rank=128, hidden=3072, double=19, single=38)
    lora = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    key_map = comfy.lora.model_lora_keys_unet(base, {})
    assert flux_lora.unmapped(Patcher, lora, key_map) == []
    assert len(lora) == (19 * 4 + 38 * 3) * 2 if naming == "diffusers" else (19 * 2 + 38) * 3
