"""The SDXL layer nodes (nodes/sdxl.py) and the old ComfyUI-layerdiffuse ids (nodes/legacy_sdxl.py), called in-process."""

from __future__ import annotations

import pytest
import torch

from fixtures.sdxl_testing import LATENT, SIZE, prompt, sample
from layerstack.errors import LayerStackError
from layerstack.models import sdxl_patches
from layerstack.models.conditioning_images import composite_on_grey, fit_image_to_size
from layerstack.nodes import all_nodes, legacy_sdxl
from layerstack.nodes import sdxl as sdxl_nodes

SDXL_SCALE = 0.13025


def c_concat_of(conditioning) -> torch.Tensor:
    return conditioning[0][1]["model_conds"]["c_concat"].cond


def test_the_sdxl_nodes_and_the_old_ids_are_registered():
    ids = {node.GET_SCHEMA().node_id for node in all_nodes()}
    assert {
        "LayerStackSDXLTransparentForeground", "LayerStackSDXLForegroundToBlended", "LayerStackSDXLBackgroundToBlended",
        "LayerStackSDXLForegroundBlendedToBackground", "LayerStackSDXLBackgroundBlendedToForeground",
        "LayeredDiffusionApply", "LayeredDiffusionCondApply", "LayeredDiffusionDiffApply",
    } <= ids


# --- the old ids keep ComfyUI-layerdiffuse's exact interface (docs/FORMATS.md#old-nodes) --------------------------------

OLD_WEIGHT = ["FLOAT", {"default": 1.0, "min": -1, "max": 3, "step": 0.05}]
OLD_INTERFACES = {
    "LayeredDiffusionApply": (
        "Layer Diffuse Apply",
        [("model", ["MODEL", {}]),
         ("config", ["SDXL, Attention Injection", "SDXL, Conv Injection", "SD15, Attention Injection, attn_sharing"]),
         ("weight", OLD_WEIGHT)],
        ["MODEL"]),
    "LayeredDiffusionCondApply": (
        "Layer Diffuse Cond Apply",
        [("model", ["MODEL", {}]), ("cond", ["CONDITIONING", {}]), ("uncond", ["CONDITIONING", {}]),
         ("latent", ["LATENT", {}]), ("config", ["SDXL, Foreground", "SDXL, Background"]), ("weight", OLD_WEIGHT)],
        ["MODEL", "CONDITIONING", "CONDITIONING"]),
    "LayeredDiffusionDiffApply": (
        "Layer Diffuse Diff Apply",
        [("model", ["MODEL", {}]), ("cond", ["CONDITIONING", {}]), ("uncond", ["CONDITIONING", {}]),
         ("blended_latent", ["LATENT", {}]), ("latent", ["LATENT", {}]),
         ("config", ["SDXL, Foreground", "SDXL, Background"]), ("weight", OLD_WEIGHT)],
        ["MODEL", "CONDITIONING", "CONDITIONING"]),
}


@pytest.mark.parametrize("node", legacy_sdxl.NODES, ids=lambda n: n.GET_SCHEMA().node_id)
def test_old_ids_have_the_old_inputs_defaults_ranges_and_outputs(node):
    info = node.GET_NODE_INFO_V1()
    display_name, inputs, outputs = OLD_INTERFACES[info["name"]]
    assert info["display_name"] == display_name and info["deprecated"] is True
    assert info["input_order"] == {"required": [name for name, _ in inputs]}
    assert set(info["input"]) == {"required"}
    for name, expected in inputs:
        got = info["input"]["required"][name]
        if name == "config":  # a combo: its options, in order, the first being the default (no explicit one)
            assert got[1]["options"] == expected and "default" not in got[1]
        else:
            assert list(got) == expected, name
    assert info["output"] == outputs and info["output_name"] == outputs


# --- new nodes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, file_id", sorted(sdxl_nodes.TRANSPARENT_METHODS.items()))
def test_transparent_foreground_patches_a_clone_with_the_chosen_method(sdxl, method, file_id):
    positive, negative = prompt(1), prompt(2)
    model, pos, neg = sdxl_nodes.SDXLTransparentForeground.execute(
        sdxl.model, positive, negative, method, 1.0, 0.0, 1.0).result
    assert model is not sdxl.model and not sdxl.model.patches
    expected = sdxl_patches.load_layer_patches(sdxl.model, file_id, node="T").patches
    assert set(model.patches) == set(expected)
    assert pos is positive and neg is negative  # the whole schedule: the conditioning needs nothing


def test_transparent_foreground_with_a_stop_puts_the_schedule_on_the_model(sdxl):
    positive, negative = prompt(1), prompt(2)
    model, pos, neg = sdxl_nodes.SDXLTransparentForeground.execute(
        sdxl.model, positive, negative, "conv injection", 0.8, 0.0, 0.6).result
    assert not model.patches  # no conv_in widening for this file, so nothing is always on
    assert pos is positive and neg is negative  # no hook on the conditioning
    expected = sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_transparent_conv", node="T").patches
    assert set(model.weight_wrapper_patches) == set(expected) and not sdxl.model.weight_wrapper_patches
    wrappers = [w for ws in model.weight_wrapper_patches.values() for w in ws]
    assert [w.patches[0][0] for w in wrappers] == pytest.approx([0.8] * len(wrappers))
    assert {(w.window.start_percent, w.window.stop_percent) for w in wrappers} == {(0.0, 0.6)}


def test_image_layers_are_grey_composited_fitted_encoded_and_scaled(sdxl):
    rgba = torch.rand(1, 48, 80, 4, generator=torch.Generator().manual_seed(1))
    _, pos, neg = sdxl_nodes.SDXLForegroundToBlended.execute(
        sdxl.model, prompt(1), prompt(2), SIZE, SIZE, "crop and resize", 1.0, 0.0, 1.0, vae=sdxl.vae,
        foreground=rgba).result
    expected = sdxl.vae.encode(fit_image_to_size(composite_on_grey(rgba), SIZE, SIZE, "crop and resize"))
    assert expected.shape == (1, 4, LATENT, LATENT)
    torch.testing.assert_close(c_concat_of(pos), expected * SDXL_SCALE)
    assert c_concat_of(neg) is c_concat_of(pos)


def test_two_layers_go_in_file_order_and_accept_latents(sdxl):
    background, blended = torch.randn(1, 4, LATENT, LATENT), torch.randn(1, 4, LATENT, LATENT)
    _, pos, _ = sdxl_nodes.SDXLBackgroundBlendedToForeground.execute(
        sdxl.model, prompt(1), prompt(2), SIZE, SIZE, "just resize", 1.0, 0.0, 1.0,
        background_latent={"samples": background}, blended_latent={"samples": blended}).result
    torch.testing.assert_close(c_concat_of(pos), torch.cat([background, blended], dim=1) * SDXL_SCALE)


def test_layer_input_errors_name_the_node_and_input(sdxl):
    node = sdxl_nodes.SDXLForegroundBlendedToBackground
    args = (sdxl.model, prompt(1), prompt(2), SIZE, SIZE, "crop and resize", 1.0, 0.0, 1.0)
    good = {"samples": torch.zeros(1, 4, LATENT, LATENT)}
    with pytest.raises(LayerStackError, match=r"^LayerStackSDXLForegroundBlendedToBackground: input 'foreground / "
                                              r"foreground_latent' expected exactly one of the foreground image or "
                                              r"latent, got neither\.$"):
        node.execute(*args, blended_latent=good)
    with pytest.raises(LayerStackError, match=r"input 'blended / blended_latent' .* got both"):
        node.execute(*args, foreground_latent=good, blended=torch.rand(1, SIZE, SIZE, 3), blended_latent=good)
    with pytest.raises(LayerStackError, match=r"input 'blended_latent' expected a latent of 64 x 64 px "
                                              r"\(\[batch, 4, 8, 8\]\), got shape \[1, 4, 16, 16\]"):
        node.execute(*args, foreground_latent=good, blended_latent={"samples": torch.zeros(1, 4, 16, 16)})
    with pytest.raises(LayerStackError, match=r"input 'vae' expected a VAE to encode 'foreground'"):
        node.execute(*args, foreground=torch.rand(1, SIZE, SIZE, 3), blended_latent=good)


def test_sampling_another_size_than_the_given_layers_is_refused_before_it_starts(sdxl):
    latent = {"samples": torch.zeros(1, 4, LATENT, LATENT)}
    model, pos, neg = sdxl_nodes.SDXLBackgroundToBlended.execute(
        sdxl.model, prompt(1), prompt(2), SIZE, SIZE, "crop and resize", 1.0, 0.0, 1.0, background_latent=latent).result
    with pytest.raises(LayerStackError, match=r"^LayerStackSDXLBackgroundToBlended: input 'width / height' expected "
                                              r"the size of the latent being sampled, 128 x 96 px, got condition "
                                              r"layers of 64 x 64 px\.$"):
        sample(model, pos, neg, latent=torch.zeros(1, 4, 12, 16))
    model, cond, uncond = legacy_sdxl.LayeredDiffusionCondApply.execute(
        sdxl.model, prompt(1), prompt(2), latent, "SDXL, Background", 1.0).result
    with pytest.raises(LayerStackError, match=r"^LayeredDiffusionCondApply: input 'latent' expected the size"):
        sample(model, cond, uncond, latent=torch.zeros(1, 4, 16, 16))


def test_wrong_family_is_refused_by_every_sdxl_node(sd15):
    with pytest.raises(LayerStackError, match=r"LayerStackSDXLTransparentForeground: input 'model' expected an SDXL "
                                              r"model for layer_xl_transparent_attn.safetensors, got a SD15 model"):
        sdxl_nodes.SDXLTransparentForeground.execute(sd15.model, prompt(1), prompt(2), "attention injection",
                                                     1.0, 0.0, 1.0)
    with pytest.raises(LayerStackError, match=r"LayeredDiffusionCondApply: input 'model' expected an SDXL model"):
        legacy_sdxl.LayeredDiffusionCondApply.execute(sd15.model, prompt(1), prompt(2),
                                                      {"samples": torch.zeros(1, 4, 8, 8)}, "SDXL, Background", 1.0)


# --- old ids on this core ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, file_id", [("SDXL, Attention Injection", "layer_xl_transparent_attn"),
                                             ("SDXL, Conv Injection", "layer_xl_transparent_conv")])
def test_old_apply_patches_sdxl_like_the_new_node(sdxl, config, file_id):
    (model,) = legacy_sdxl.LayeredDiffusionApply.execute(sdxl.model, config, 0.5).result
    expected = sdxl_patches.load_layer_patches(sdxl.model, file_id, node="T").patches
    assert set(model.patches) == set(expected)
    assert {p[0] for patches in model.patches.values() for p in patches} == {0.5}  # the weight is the strength


def test_old_apply_sd15_config_runs_attention_sharing(sd15, sdxl):
    (model,) = legacy_sdxl.LayeredDiffusionApply.execute(sd15.model, "SD15, Attention Injection, attn_sharing", 1.0).result
    assert model is not sd15.model and model.model_options != sd15.model.model_options
    with pytest.raises(LayerStackError, match="^LayeredDiffusionApply: "):  # its own family check, under the old id
        legacy_sdxl.LayeredDiffusionApply.execute(sdxl.model, "SD15, Attention Injection, attn_sharing", 1.0)


def test_old_cond_and_diff_put_the_unresized_latents_on_cond_and_uncond(sdxl):
    latent, blended = torch.randn(2, 4, LATENT, LATENT), torch.randn(2, 4, LATENT, LATENT)
    cond, uncond = prompt(1), prompt(2)
    model, c, u = legacy_sdxl.LayeredDiffusionCondApply.execute(
        sdxl.model, cond, uncond, {"samples": latent}, "SDXL, Background", 1.0).result
    assert set(model.patches) == set(sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_bg2ble", node="T").patches)
    torch.testing.assert_close(c_concat_of(c), latent * SDXL_SCALE)
    assert c_concat_of(u) is c_concat_of(c)
    model, c, u = legacy_sdxl.LayeredDiffusionDiffApply.execute(
        sdxl.model, cond, uncond, {"samples": blended}, {"samples": latent}, "SDXL, Foreground", 1.0).result
    assert set(model.patches) == set(sdxl_patches.load_layer_patches(sdxl.model, "layer_xl_fgble2bg", node="T").patches)
    torch.testing.assert_close(c_concat_of(u), torch.cat([latent, blended], dim=1) * SDXL_SCALE)  # [given, blended]
    with pytest.raises(LayerStackError, match=r"LayeredDiffusionDiffApply: input 'config' expected one of "
                                              r"\['SDXL, Foreground', 'SDXL, Background'\], got 'SD15'"):
        legacy_sdxl.LayeredDiffusionDiffApply.execute(sdxl.model, cond, uncond, {"samples": blended},
                                                      {"samples": latent}, "SD15", 1.0)
