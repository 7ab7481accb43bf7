"""Every key and shape of the four official SD1.5 attention-sharing files (tests/data/official_keys) lands on the
right module of ComfyUI's full-size SD1.5 UNet, built on the meta device (no memory, no weights)."""

from __future__ import annotations

import re

import pytest
import torch

FILES = ("layer_sd15_transparent_attn", "layer_sd15_joint", "layer_sd15_fg2bg", "layer_sd15_bg2fg")
# docs/FORMATS.md#attention-sharing-layers: layer pair -> (module, C), in state-dict order
OFFICIAL_LAYOUT = [
    ("input_blocks.1.1", 320), ("input_blocks.2.1", 320), ("input_blocks.4.1", 640), ("input_blocks.5.1", 640),
    ("input_blocks.7.1", 1280), ("input_blocks.8.1", 1280), ("output_blocks.3.1", 1280), ("output_blocks.4.1", 1280),
    ("output_blocks.5.1", 1280), ("output_blocks.6.1", 640), ("output_blocks.7.1", 640), ("output_blocks.8.1", 640),
    ("output_blocks.9.1", 320), ("output_blocks.10.1", 320), ("output_blocks.11.1", 320), ("middle_block.1", 1280),
]


@pytest.fixture(scope="module")
def full_unet(comfy_host):
    from fixtures.build import build_base_model

    return build_base_model("SD15", full=True, device="meta").diffusion_model


def _module(unet, path):
    import comfy.utils

    return comfy.utils.get_attr(unet, path)


def test_layer_order_is_the_official_one(comfy_host):
    from layerstack.models.attention_sharing import sd15_layer_sites

    sites = sd15_layer_sites()
    assert len(sites) == 32
    for site in sites:
        block, _ = OFFICIAL_LAYOUT[site.index // 2]
        assert site.path == f"{block}.transformer_blocks.0.attn{1 + site.index % 2}"
        # ComfyUI's UNet sets transformer_options["block"] = ("input", n) / ("middle", 0) / ("output", n)
        want = ("middle", 0) if block == "middle_block.1" else (block.split("_")[0], int(block.split(".")[1]))
        assert site.block == want and site.transformer_index == 0


@pytest.mark.parametrize("file_id", FILES)
def test_every_official_key_lands_on_its_module(full_unet, file_id):
    from fixtures.official_keys import official_shapes
    from layerstack.models.registry import SD15_ATTENTION_LAYERS

    shapes = official_shapes(file_id)
    assert len(shapes) == {"layer_sd15_transparent_attn": 640, "layer_sd15_joint": 1152}.get(file_id, 1180)
    for key, shape in shapes.items():
        m = re.match(r"hookers\.layers\.(\d+)\.(\w+?)(?:\.(\d+))?\.(.+)$", key)
        if m is None:
            assert key.startswith("kwargs_encoder.")
            continue
        i, part, _frame, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        module = _module(full_unet, SD15_ATTENTION_LAYERS[i])
        channels, context = module.to_q.out_features, module.to_k.in_features
        assert channels == OFFICIAL_LAYOUT[i // 2][1], key
        assert context == (768 if i % 2 else channels), key  # attn2 reads the 768-wide CLIP context
        assert module.heads == 8 and module.dim_head * module.heads == channels, key
        if part in ("to_q_lora", "to_out_lora"):
            want = (256, channels) if rest == "down.weight" else (channels, 256)
        elif part in ("to_k_lora", "to_v_lora"):
            want = (256, context) if rest == "down.weight" else (channels, 256)
        elif part.startswith("temporal_"):
            want = (channels,) if rest == "bias" or part == "temporal_n" else (channels, channels)
        elif part == "control_convs":
            want = {"0.weight": (256, 256, 3, 3), "0.bias": (256,), "2.weight": (channels, 256, 1, 1),
                    "2.bias": (channels,)}[rest]
        else:
            raise AssertionError(f"unexpected key {key}")
        assert shape == want, key


@pytest.mark.parametrize("file_id", FILES)
def test_pack_modules_built_from_the_full_unet_have_exactly_the_official_keys(full_unet, file_id):
    """The same module layout the loader builds from a model: strict loading of the real files can only succeed."""
    from fixtures.official_keys import official_shapes
    from layerstack.models import registry
    from layerstack.models.attention_sharing import load_weights

    entry = registry.get(file_id)
    shapes = official_shapes(file_id)
    state_dict = {k: torch.empty(s, device="meta", dtype=torch.float16) for k, s in shapes.items()}
    weights = load_weights(entry, state_dict, lambda path: _module(full_unet, path), dtype=torch.float16,
                           source=entry.filename)
    assert {k: tuple(v.shape) for k, v in weights.state_dict().items()} == shapes
    assert sum(v.numel() for v in weights.state_dict().values()) == entry.parameter_count
