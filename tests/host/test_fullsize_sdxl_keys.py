"""The six SDXL layer files against ComfyUI's full-size SDXL UNet, built on the meta device (no memory, no weights).

The key/shape rules of the files (tests/fixtures/sdxl_layer_files.py, see docs/FORMATS.md#sdxl-patch-format) must land on
existing parameters of the real SDXL layout, through the same checks and the same add_patches the nodes use.
"""

from __future__ import annotations

import math

import pytest
import torch

from fixtures.build import build_base_model, model_shapes, unet_config
from fixtures.sdxl_layer_files import OFFICIAL_LORA_RANK, official_key_shapes
from layerstack.models import files, registry, sdxl_patches

CONV_IN = "diffusion_model.input_blocks.0.0.weight"
# Keys the spec quotes from real files (ComfyUI-layerdiffuse #127 log, diffuser_layerdiffuse's converter tests).
QUOTED_KEYS = {
    "layer_xl_transparent_attn": ["diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_k.weight"],
    "layer_xl_fg2ble": ["diffusion_model.input_blocks.0.0.weight", "diffusion_model.middle_block.2.out_layers.3.weight",
                        "diffusion_model.output_blocks.2.2.conv.weight", "diffusion_model.out.2.bias"],
}


@pytest.fixture(scope="module")
def full_shapes(comfy_host):
    return model_shapes("SDXL", full=True)


@pytest.fixture(scope="module")
def full_model(comfy_host):
    import comfy.model_patcher

    model = build_base_model("SDXL", full=True, device="meta")
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def meta_file(file_id: str, shapes) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, dtype=torch.float16, device="meta") for k, s in official_key_shapes(file_id, shapes).items()}


def test_the_full_size_model_is_the_official_sdxl_layout(full_model, full_shapes):
    assert registry.family_of_model(full_model) is registry.Family.SDXL
    assert full_shapes[CONV_IN] == (320, 4, 3, 3)
    assert sum(math.prod(s) for s in full_shapes.values()) > 2_500_000_000  # the 2.6 B-parameter SDXL UNet


@pytest.mark.parametrize("entry", sdxl_patches.SDXL_FILES, ids=lambda e: e.id)
def test_every_key_of_every_file_lands_on_the_full_size_model(entry, full_model, full_shapes):
    state_dict = meta_file(entry.id, full_shapes)
    files.validate_layer_state_dict(entry, state_dict, source=entry.filename)  # key grammar, conv_in channel count
    grouped = sdxl_patches.group_by_model_key(state_dict)
    assert sdxl_patches.shape_problems(entry, grouped, full_shapes) == []
    patches = sdxl_patches.to_native_patches(grouped)
    patched = full_model.clone()
    assert set(patched.add_patches(patches, 1.0)) == set(patches)
    for key in QUOTED_KEYS.get(entry.id, []):
        assert key in grouped, key


def test_attention_lora_covers_q_k_v_out_of_attn1_and_attn2_in_every_transformer_block(full_shapes):
    config = unet_config("SDXL", full=True)
    blocks = (sum(config["transformer_depth"]) + config["transformer_depth_middle"]
              + sum(config["transformer_depth_output"]))
    assert blocks == 70
    keys = official_key_shapes("layer_xl_transparent_attn", full_shapes)
    model_keys = {k.split("::")[0] for k in keys}
    assert len(model_keys) == blocks * 2 * 4 and len(keys) == 2 * len(model_keys)
    assert {k.rsplit(".", 2)[-2] if "to_out" not in k else "to_out.0" for k in model_keys} == {
        "to_q", "to_k", "to_v", "to_out.0"}
    # rank-256 pairs: up [out, 256], down [256, in]; cross-attention k/v read the 2048-wide text context
    key = "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    assert keys[f"{key}::lora::0"] == (640, OFFICIAL_LORA_RANK) and keys[f"{key}::lora::1"] == (OFFICIAL_LORA_RANK, 2048)


def test_diff_files_cover_their_groups_and_widen_only_conv_in(full_shapes):
    conv = {k.split("::")[0] for k in official_key_shapes("layer_xl_transparent_conv", full_shapes)}
    assert not any(k.endswith((".to_q.weight", ".to_k.weight", ".to_v.weight")) for k in conv)
    assert "diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_out.0.weight" in conv
    for file_id, channels in (("layer_xl_fg2ble", 8), ("layer_xl_bg2ble", 8), ("layer_xl_fgble2bg", 12),
                              ("layer_xl_bgble2fg", 12)):
        shapes = official_key_shapes(file_id, full_shapes)
        assert shapes[f"{CONV_IN}::diff::0"] == (320, channels, 3, 3)
        widened = [k for k, s in shapes.items() if s != full_shapes[k.split("::")[0]]]
        assert widened == [f"{CONV_IN}::diff::0"]
        assert not any(k.startswith(("diffusion_model.time_embed", "diffusion_model.label_emb")) for k in shapes)


def test_full_size_files_do_not_fit_the_narrow_fixture_model(full_shapes, comfy_host):
    """The check is not vacuous: the same files against another layout report the mismatching keys."""
    fixture_shapes = model_shapes("SDXL")
    entry = registry.get("layer_xl_fgble2bg")
    grouped = sdxl_patches.group_by_model_key(meta_file(entry.id, full_shapes))
    problems = sdxl_patches.shape_problems(entry, grouped, fixture_shapes)
    assert any("no such parameter" in p for p in problems)
    assert any("diffusion_model.input_blocks.4.0.in_layers.2.weight: delta [640, 320, 3, 3]" in p for p in problems)
