"""SDXL layer files as ComfyUI-native patches on the fixture SDXL model (models/sdxl_patches.py).

The maths (W + s·up@down, zero-padded W + s·delta), strict key/shape checks naming file and keys, the family check,
the c_concat condition, weight 0 = the base model, and the base model left bit-identical.
"""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from fixtures.sdxl_testing import (
    LATENT,
    layer_file,
    loaded_weights,
    private_layer_folder,
    prompt,
    sample,
    unload_everything,
)
from fixtures.weights import assert_same_weights, weights_fingerprint
from layerstack.errors import LayerStackError
from layerstack.models import registry, sdxl_patches

SDXL_SCALE = 0.13025  # SDXL latent_format.scale_factor


@pytest.fixture(scope="module")
def base_fingerprint(sdxl):
    unload_everything()
    return weights_fingerprint(sdxl.model)


def expected_weights(base: dict, file_tensors: dict, strength: float) -> dict[str, torch.Tensor]:
    """What every patched parameter must be, computed here independently of ComfyUI's patch code."""
    expected = {}
    for model_key, (patch_type, slots) in sdxl_patches.group_by_model_key(file_tensors).items():
        weight = base[model_key].float()
        if patch_type == "lora":
            expected[model_key] = weight + strength * (slots[0].float() @ slots[1].float())
            continue
        delta = slots[0].float()
        if delta.shape != weight.shape:  # conv_in of a conditional file: new input channels start at zero
            extra = delta.shape[1] - weight.shape[1]
            weight = torch.cat([weight, weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])], dim=1)
        expected[model_key] = weight + strength * delta
    return expected


@pytest.mark.parametrize("file_id", [f.id for f in sdxl_patches.SDXL_FILES])
def test_patched_weights_equal_base_plus_weight_times_file_delta(sdxl, fixture_paths, base_fingerprint, file_id):
    layer = sdxl_patches.load_layer_patches(sdxl.model, file_id, node="Test")
    patched, _, _ = sdxl_patches.apply_layer_patches(sdxl.model, layer, node="Test", weight=0.7)
    tensors = layer_file(fixture_paths, file_id)
    expected = expected_weights(base_fingerprint, tensors, 0.7)
    assert len(expected) == len({k.split("::")[0] for k in tensors})  # every file key has its parameter
    untouched = "diffusion_model.time_embed.0.weight"  # no SDXL layer file patches the time embedding
    got = loaded_weights(patched, [*expected, untouched])
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=f"{file_id}: {key}")
    assert torch.equal(got[untouched], base_fingerprint[untouched])
    unload_everything()
    assert_same_weights(base_fingerprint, sdxl.model)


def test_lora_pairs_become_lora_adapters_not_the_dropped_legacy_tuple(sdxl):
    from comfy.weight_adapter import LoRAAdapter

    layer = sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_transparent_attn", node="Test")
    assert layer.patches and all(isinstance(p, LoRAAdapter) for p in layer.patches.values())
    conv = sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_fg2ble", node="Test")
    conv_in = conv.patches[sdxl_patches.CONV_IN_KEY]
    assert conv_in[0] == "diff" and conv_in[1][1] == {"pad_weight": True} and conv_in[1][0].shape[1] == 8


def test_weight_zero_leaves_outputs_unchanged_and_weight_one_does_not(sdxl, base_fingerprint):
    positive, negative = prompt(1), prompt(2)
    base = sample(sdxl.model, positive, negative, cfg=1.0)
    layer = sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_fgble2bg", node="Test")
    g = torch.Generator().manual_seed(3)
    c_concat = sdxl_patches.condition_c_concat(
        sdxl.model, [torch.randn(1, 4, LATENT, LATENT, generator=g), torch.randn(1, 4, LATENT, LATENT, generator=g)],
        node="Test", names=["background", "blended"])
    outputs = {}
    for weight in (0.0, 1.0):
        patched, _, _ = sdxl_patches.apply_layer_patches(sdxl.model, layer, node="Test", weight=weight)
        outputs[weight] = sample(patched, sdxl_patches.with_c_concat(positive, c_concat),
                                 sdxl_patches.with_c_concat(negative, c_concat), cfg=1.0)
    # Weight 0 still widens conv_in (with zeros), so only summation order may differ from the base run.
    torch.testing.assert_close(outputs[0.0], base, rtol=1e-4, atol=1e-4)
    assert (outputs[1.0] - base).abs().max() > 1e-2
    unload_everything()
    assert_same_weights(base_fingerprint, sdxl.model)


def test_base_model_is_bit_identical_after_layered_runs(sdxl, base_fingerprint):
    positive, negative = prompt(4), prompt(5)
    before = sample(sdxl.model, positive, negative)
    layer = sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_transparent_conv", node="Test")
    for stop in (1.0, 0.5):  # the plain-patch path and the scheduled-wrapper path
        patched, pos, neg = sdxl_patches.apply_layer_patches(sdxl.model, layer, node="Test", stop_percent=stop,
                                                             positive=positive, negative=negative)
        sample(patched, pos, neg, steps=2)
    after = sample(sdxl.model, positive, negative)
    assert torch.equal(before, after)
    assert "hooks" not in positive[0][1] and "model_conds" not in positive[0][1]  # the inputs were copied, not changed
    unload_everything()
    assert_same_weights(base_fingerprint, sdxl.model)


# --- c_concat ------------------------------------------------------------------------------------------------------

def test_c_concat_is_the_scaled_latent_on_copies_of_both_conditionings(sdxl):
    import comfy.conds

    fg, blended = torch.randn(1, 4, LATENT, LATENT), torch.randn(1, 4, LATENT, LATENT)
    c_concat = sdxl_patches.condition_c_concat(sdxl.model, [fg, blended], node="Test", names=["fg", "blended"])
    torch.testing.assert_close(c_concat, torch.cat([fg, blended], dim=1) * SDXL_SCALE)
    positive = prompt(1)
    positive[0][1]["model_conds"] = {"other": "kept"}
    out = sdxl_patches.with_c_concat(positive, c_concat)
    cond = out[0][1]["model_conds"]["c_concat"]
    assert isinstance(cond, comfy.conds.CONDNoiseShape) and cond.cond is c_concat
    assert out[0][1]["model_conds"]["other"] == "kept" and out[0][0] is positive[0][0]
    assert "c_concat" not in positive[0][1]["model_conds"]  # the input conditioning is untouched
    # CONDNoiseShape repeats one condition to whatever batch is sampled.
    assert cond.process_cond(batch_size=3, area=None).cond.shape == (3, 8, LATENT, LATENT)


def test_c_concat_batches_must_agree_or_be_one(sdxl):
    one, three, two = (torch.zeros(b, 4, LATENT, LATENT) for b in (1, 3, 2))
    assert sdxl_patches.condition_c_concat(sdxl.model, [one, three], node="N", names=["a", "b"]).shape[0] == 3
    with pytest.raises(LayerStackError, match=r"N: input 'a / b' expected equal batch sizes \(or 1\), got a 2, b 3"):
        sdxl_patches.condition_c_concat(sdxl.model, [two, three], node="N", names=["a", "b"])
    with pytest.raises(LayerStackError, match=r"N: input 'a / b' expected condition latents of one size"):
        sdxl_patches.condition_c_concat(sdxl.model, [one, torch.zeros(1, 4, 16, 16)], node="N", names=["a", "b"])
    with pytest.raises(LayerStackError, match=r"N: input 'a' expected a 4-channel SDXL latent.*\[1, 16, 8, 8\]"):
        sdxl_patches.condition_c_concat(sdxl.model, [torch.zeros(1, 16, 8, 8)], node="N", names=["a"])


# --- wrong family, wrong files -------------------------------------------------------------------------------------

def test_wrong_family_names_node_expected_family_and_model_type(sd15):
    with pytest.raises(LayerStackError) as error:
        sdxl_patches.load_layer_patches(sd15.model, "layer_xl_fg2ble", node="LayerStackSDXLForegroundToBlended")
    assert str(error.value) == ("LayerStackSDXLForegroundToBlended: input 'model' expected an SDXL model for "
                                "layer_xl_fg2ble.safetensors, got a SD15 model (SD15 family).")


def _write(folder, file_id: str, tensors: dict) -> str:
    path = folder / registry.get(file_id).filename
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return str(path)


def test_file_of_another_mode_is_named_with_its_channel_count(sdxl, fixture_paths, monkeypatch, tmp_path):
    with private_layer_folder(monkeypatch, tmp_path) as folder:
        path = _write(folder, "layer_xl_fgble2bg", layer_file(fixture_paths, "layer_xl_fg2ble"))
        with pytest.raises(LayerStackError) as error:
            sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_fgble2bg", node="Test")
    message = str(error.value)
    assert path in message and "8 input channels, expected 12" in message and "layer_xl_fg2ble" in message


def test_keys_that_do_not_fit_the_model_are_rejected_by_name(sdxl, fixture_paths, monkeypatch, tmp_path):
    tensors = layer_file(fixture_paths, "layer_xl_transparent_conv")
    resnet = "diffusion_model.input_blocks.1.0.in_layers.2.weight"  # [320, 320, 3, 3] in the fixture
    tensors[f"{resnet}::diff::0"] = torch.zeros(640, 320, 3, 3, dtype=torch.float16)  # made for another model
    tensors["diffusion_model.input_blocks.99.0.weight::diff::0"] = torch.zeros(4, dtype=torch.float16)
    with private_layer_folder(monkeypatch, tmp_path) as folder:
        path = _write(folder, "layer_xl_transparent_conv", tensors)
        with pytest.raises(LayerStackError) as error:
            sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_transparent_conv", node="LayeredDiffusionApply")
    message = str(error.value)
    assert message.startswith(f"LayeredDiffusionApply: {path} (layer_xl_transparent_conv.safetensors")
    assert "2 key(s) rejected" in message
    assert f"{resnet}: delta [640, 320, 3, 3] does not match the model's [320, 320, 3, 3]" in message
    assert "diffusion_model.input_blocks.99.0.weight: no such parameter in the model" in message


def test_files_are_checked_against_the_checkpoint_shapes_while_a_widened_clone_is_loaded(sdxl, base_fingerprint):
    """Clones share one module: a loaded fg2ble clone holds an 8-channel conv_in, yet the base model is still 4."""
    widened = sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_fg2ble", node="Test")
    patched, _, _ = sdxl_patches.apply_layer_patches(sdxl.model, widened, node="Test")
    assert loaded_weights(patched, [sdxl_patches.CONV_IN_KEY])[sdxl_patches.CONV_IN_KEY].shape[1] == 8
    assert sdxl.model.model.state_dict()[sdxl_patches.CONV_IN_KEY].shape[1] == 8  # what the module holds now
    for file_id in ("layer_xl_transparent_conv", "layer_xl_fgble2bg"):
        sdxl_patches.load_layer_patches(sdxl.model, file_id, node="Test")  # still judged against [320, 4, 3, 3]
    unload_everything()
    assert_same_weights(base_fingerprint, sdxl.model)


def test_shape_rules_for_lora_and_conv_in_widening():
    entry = registry.get("layer_xl_bg2ble")
    model = {sdxl_patches.CONV_IN_KEY: (320, 4, 3, 3), "diffusion_model.a.weight": (320, 2048)}
    lora = ("lora", {0: torch.zeros(320, 8), 1: torch.zeros(8, 2048)})
    assert sdxl_patches.shape_problems(entry, {"diffusion_model.a.weight": lora}, model) == []
    bad_rank = ("lora", {0: torch.zeros(320, 8), 1: torch.zeros(4, 2048)})
    assert sdxl_patches.shape_problems(entry, {"diffusion_model.a.weight": bad_rank}, model) == [
        "diffusion_model.a.weight: LoRA up [320, 8] @ down [4, 2048] does not make [320, 2048]"]
    widened = {sdxl_patches.CONV_IN_KEY: ("diff", {0: torch.zeros(320, 8, 3, 3)})}
    assert sdxl_patches.shape_problems(entry, widened, model) == []
    too_wide = {sdxl_patches.CONV_IN_KEY: ("diff", {0: torch.zeros(320, 12, 3, 3)})}
    assert sdxl_patches.shape_problems(entry, too_wide, model) == [
        "diffusion_model.input_blocks.0.0.weight: delta [320, 12, 3, 3] cannot widen the model's [320, 4, 3, 3] "
        "to [320, 8, 3, 3]"]
    # A file without extra channels must never widen conv_in.
    assert sdxl_patches.shape_problems(registry.get("layer_xl_transparent_conv"), widened, model) == [
        "diffusion_model.input_blocks.0.0.weight: delta [320, 8, 3, 3] does not match the model's [320, 4, 3, 3]"]
