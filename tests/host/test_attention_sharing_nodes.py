"""The SD1.5 nodes: legacy ids with exactly the old interface, the new apply nodes (latent expansion, prompts and
image reach the right frames) and the split node."""

from __future__ import annotations

import pytest
import torch


def _node(node_id):
    from layerstack.nodes import all_nodes

    return {n.GET_SCHEMA().node_id: n for n in all_nodes()}[node_id]


def _sharing_of(model):
    """The AttentionSharing a patched model runs (every patch object points at it)."""
    return model.model_options["transformer_options"]["patches"]["attn1_patch"][-1].sharing


# --- legacy ids ----------------------------------------------------------------------------------------------------

LEGACY = {
    # docs/FORMATS.md#old-nodes: node id -> (required inputs, optional inputs, outputs)
    "LayeredDiffusionJointApply": (
        {"model": "MODEL", "config": ["SD15, attn_sharing, Batch size (3N)"]},
        {"fg_cond": "CONDITIONING", "bg_cond": "CONDITIONING", "blended_cond": "CONDITIONING"},
        ["MODEL"]),
    "LayeredDiffusionCondJointApply": (
        {"model": "MODEL", "image": "IMAGE",
         "config": ["SD15, Foreground, attn_sharing, Batch size (2N)", "SD15, Background, attn_sharing, Batch size (2N)"]},
        {"cond": "CONDITIONING", "blended_cond": "CONDITIONING"},
        ["MODEL"]),
}


@pytest.mark.parametrize("node_id", list(LEGACY))
def test_legacy_node_has_exactly_the_old_interface(comfy_host, node_id):
    info = _node(node_id).GET_NODE_INFO_V1()
    required, optional, outputs = LEGACY[node_id]

    def spec(inputs):
        out = {}
        for name, (kind, options) in inputs.items():
            out[name] = options["options"] if kind == "COMBO" else kind
            if kind == "COMBO":
                assert options.get("default", options["options"][0]) == options["options"][0]  # first is default
        return out

    assert list(info["input"]["required"]) == list(required)  # names and order (widgets_values are positional)
    assert spec(info["input"]["required"]) == required
    assert spec(info["input"].get("optional", {})) == optional
    assert info["output"] == outputs
    assert info["deprecated"] is True


def test_legacy_configs_pick_the_old_files_and_frames(sd15):
    joint = _node("LayeredDiffusionJointApply")
    fg, bg, blended = sd15.encode("a dog"), sd15.encode("a room"), sd15.encode("a dog in a room")
    model = joint.execute(sd15.model, "SD15, attn_sharing, Batch size (3N)", fg_cond=fg, bg_cond=bg,
                          blended_cond=blended).result[0]
    sharing = _sharing_of(model)
    assert sharing.entry.id == "layer_sd15_joint"
    for frame, cond in enumerate((fg, bg, blended)):
        assert torch.equal(sharing.layer_prompts[frame], cond[0][0])

    cond_joint = _node("LayeredDiffusionCondJointApply")
    image = torch.rand(1, 64, 64, 3)
    for config, file_id in (("SD15, Foreground, attn_sharing, Batch size (2N)", "layer_sd15_fg2bg"),
                            ("SD15, Background, attn_sharing, Batch size (2N)", "layer_sd15_bg2fg")):
        model = cond_joint.execute(sd15.model, image, config, cond=bg, blended_cond=blended).result[0]
        sharing = _sharing_of(model)
        assert sharing.entry.id == file_id and sharing.control_image is image
        assert torch.equal(sharing.layer_prompts[0], bg[0][0]) and torch.equal(sharing.layer_prompts[1], blended[0][0])


def test_legacy_errors_name_the_old_inputs(sd15, sdxl):
    from layerstack.errors import LayerStackError

    with pytest.raises(LayerStackError, match=r"LayeredDiffusionCondJointApply: input 'config'"):
        _node("LayeredDiffusionCondJointApply").execute(sd15.model, torch.rand(1, 64, 64, 3), "SDXL, Foreground")
    with pytest.raises(LayerStackError, match=r"LayeredDiffusionJointApply: input 'model' expected an SD1.5"):
        _node("LayeredDiffusionJointApply").execute(sdxl.model, "SD15, attn_sharing, Batch size (3N)")
    with pytest.raises(LayerStackError, match=r"LayeredDiffusionJointApply: input 'bg_cond' expected an SD1.5 text"):
        _node("LayeredDiffusionJointApply").execute(sd15.model, "SD15, attn_sharing, Batch size (3N)",
                                                    bg_cond=sdxl.encode("x"))


def test_legacy_apply_sd15_config_runs_attention_sharing(sd15):
    model = _node("LayeredDiffusionApply").execute(sd15.model, "SD15, Attention Injection, attn_sharing", 1.0).result[0]
    assert _sharing_of(model).entry.id == "layer_sd15_transparent_attn"


# --- new apply nodes -----------------------------------------------------------------------------------------------

def test_expand_latent_groups_frames_with_their_own_noise(comfy_host):
    import comfy.sample

    from layerstack.models import registry
    from layerstack.nodes.sd15 import LAYER_TAG, expand_latent

    sets = torch.randn(2, 4, 8, 8)
    mask = torch.rand(2, 1, 8, 8)
    out = expand_latent({"samples": sets, "noise_mask": mask}, registry.get("layer_sd15_joint"), "N")
    assert out["samples"].shape[0] == 6 and out[LAYER_TAG] == "layer_sd15_joint"
    for n in range(6):
        assert torch.equal(out["samples"][n], sets[n // 3])  # sample n = set * 3 + frame
        assert torch.equal(out["noise_mask"][n], mask[n // 3])
    noise = comfy.sample.prepare_noise(out["samples"], 0, out["batch_index"])
    assert len({tuple(noise[n].flatten()[:4].tolist()) for n in range(6)}) == 6  # no two frames share noise

    picked = expand_latent({"samples": sets[:1], "batch_index": [5]}, registry.get("layer_sd15_fg2bg"), "N")
    assert picked["batch_index"] == [10, 11]


def test_expand_latent_error(comfy_host):
    from layerstack.errors import LayerStackError
    from layerstack.models import registry
    from layerstack.nodes.sd15 import expand_latent

    with pytest.raises(LayerStackError, match=r"N: input 'latent' expected an SD1.5 LATENT .* got shape \[1, 16, 8, 8\]"):
        expand_latent({"samples": torch.zeros(1, 16, 8, 8)}, registry.get("layer_sd15_joint"), "N")


def test_background_to_foreground_node_routes_image_and_prompts(sd15):
    node = _node("LayerStackSD15BackgroundToForeground")
    background = torch.rand(1, 100, 60, 4)
    fg, blended = sd15.encode("a cat"), sd15.encode("a cat on a sofa")
    model, latent = node.execute(sd15.model, {"samples": torch.zeros(3, 4, 8, 8)}, 0.0, 0.6,
                                 resize_mode="just resize", background=background, foreground_prompt=fg,
                                 blended_prompt=blended).result
    sharing = _sharing_of(model)
    assert sharing.entry.id == "layer_sd15_bg2fg" and sharing.control_image is background
    assert sharing.resize_mode.value == "just resize" and sharing.stop_percent == 0.6
    assert torch.equal(sharing.layer_prompts[0], fg[0][0]) and torch.equal(sharing.layer_prompts[1], blended[0][0])
    assert latent["samples"].shape[0] == 6


def test_new_node_errors_name_their_inputs(sd15):
    from layerstack.errors import LayerStackError

    node = _node("LayerStackSD15ForegroundToBackground")
    with pytest.raises(LayerStackError, match=r"LayerStackSD15ForegroundToBackground: input 'foreground' expected"):
        node.execute(sd15.model, {"samples": torch.zeros(1, 4, 8, 8)}, 0.0, 1.0, resize_mode="crop and resize",
                     foreground=torch.rand(1, 64, 64))
    with pytest.raises(LayerStackError, match=r"LayerStackSD15ForegroundToBackground: input 'foreground' expected 1 "
                                              r"image or one per set \(2 = the latent's batch\), got 3 images"):
        node.execute(sd15.model, {"samples": torch.zeros(2, 4, 8, 8)}, 0.0, 1.0, resize_mode="crop and resize",
                     foreground=torch.rand(3, 64, 64, 3))  # before: accepted, failing only in KSampler
    with pytest.raises(LayerStackError, match=r"input 'start_percent / stop_percent' expected 0 <= start_percent <= "
                                              r"stop_percent <= 1, got start_percent=0.8, stop_percent=0.2"):
        node.execute(sd15.model, {"samples": torch.zeros(1, 4, 8, 8)}, 0.8, 0.2, resize_mode="crop and resize",
                     foreground=torch.rand(1, 64, 64, 3))


# --- split ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd15_layer_vae(fixture_paths):
    from layerstack.models.registry import Family
    from layerstack.models.transparent_vae import TransparentVAE

    return TransparentVAE(Family.SD15)


def _batch(frames, sets=2, file_id=None):
    from layerstack.nodes.sd15 import LAYER_TAG

    g = torch.Generator().manual_seed(0)
    latent = {"samples": torch.randn(frames * sets, 4, 8, 8, generator=g)}
    if file_id:
        latent[LAYER_TAG] = file_id
    return latent, torch.rand(frames * sets, 64, 64, 3, generator=g)


def test_split_joint_batch_into_named_layers(sd15_layer_vae):
    from layerstack.layer_vae import runtime

    latent, images = _batch(3, file_id="layer_sd15_joint")
    fg, alpha, rgba, bg, blended = _node("LayerStackSD15SplitLayers").execute(
        latent, images, "auto (from the latent)", "1", layer_vae=sd15_layer_vae).result
    decoded = runtime.decode(sd15_layer_vae, images[0::3], latent["samples"][0::3], node="test", passes=1)
    torch.testing.assert_close(fg, decoded[..., 1:])
    torch.testing.assert_close(alpha, decoded[..., 0])
    torch.testing.assert_close(rgba, torch.cat([decoded[..., 1:], decoded[..., :1]], dim=-1))
    assert torch.equal(bg, images[1::3]) and torch.equal(blended, images[2::3])
    assert fg.shape == (2, 64, 64, 3) and alpha.shape == (2, 64, 64)


def test_split_without_foreground_blocks_those_outputs(comfy_host):
    from comfy_execution.graph_utils import ExecutionBlocker

    latent, images = _batch(2)
    out = _node("LayerStackSD15SplitLayers").execute(latent, images, "foreground → background, blended", "1").result
    for blocked in out[:3]:
        assert isinstance(blocked, ExecutionBlocker) and "no foreground layer" in blocked.message
    assert torch.equal(out[3], images[0::2]) and torch.equal(out[4], images[1::2])


def test_split_errors(comfy_host):
    from layerstack.errors import LayerStackError
    from layerstack.models.registry import Family
    from layerstack.models.transparent_vae import TransparentVAE

    split = _node("LayerStackSD15SplitLayers")
    latent, images = _batch(3)
    with pytest.raises(LayerStackError, match=r"input 'mode' expected one of .* carries no layer order"):
        split.execute(latent, images, "auto (from the latent)", "1")
    with pytest.raises(LayerStackError, match=r"input 'layer_vae' expected Load Transparent VAE \(SD1.5\)"):
        split.execute(latent, images, "joint: foreground, background, blended", "1")
    with pytest.raises(LayerStackError, match=r"expected the SD1.5 transparent VAE, got the SDXL transparent VAE"):
        split.execute(latent, images, "joint: foreground, background, blended", "1",
                      layer_vae=TransparentVAE(Family.SDXL))
    latent, images = _batch(3, sets=1)
    with pytest.raises(LayerStackError, match=r"input 'samples' expected a batch that is a multiple of 2 .* got 3"):
        split.execute(latent, images, "background → foreground, blended", "1")
