"""Drop-in ids of huchenlei/ComfyUI-layerdiffuse's apply nodes (docs/FORMATS.md#old-nodes), running on this pack's core.

Inputs, combo strings, defaults, ranges and output order are exactly the old ones, so shared workflows load and run
unchanged, including SDXL attention injection, which the old pack silently drops on current ComfyUI. Deprecated:
new workflows should use the LayerStack SDXL nodes (they add start/stop and take images of any size).
"""

from __future__ import annotations

from comfy_api.latest import io

from .categories import LEGACY_CATEGORY
from .common import LayerStackNode, schema
from .sdxl import apply_layer_file

APPLY_CONFIGS = {
    "SDXL, Attention Injection": "layer_xl_transparent_attn",
    "SDXL, Conv Injection": "layer_xl_transparent_conv",
    "SD15, Attention Injection, attn_sharing": "layer_sd15_transparent_attn",
}
COND_CONFIGS = {"SDXL, Foreground": "layer_xl_fg2ble", "SDXL, Background": "layer_xl_bg2ble"}
DIFF_CONFIGS = {"SDXL, Foreground": "layer_xl_fgble2bg", "SDXL, Background": "layer_xl_bgble2fg"}


def _weight_input() -> io.Float.Input:
    # The old combos set no default (the first option is), the old weight exactly this.
    return io.Float.Input("weight", default=1.0, min=-1.0, max=3.0, step=0.05)


def _apply_with_latent(node_id: str, file_id: str, model, cond, uncond, latents, names, weight: float):
    """The old Cond/Diff behaviour: the new nodes' sequence over the whole schedule, the (unresized) latents given."""
    return io.NodeOutput(*apply_layer_file(node_id, file_id, model, cond, uncond, weight=weight,
                                           condition_latents=[lat["samples"] for lat in latents],
                                           condition_names=names, size_input=" / ".join(names)))


class LayeredDiffusionApply(LayerStackNode):
    NODE_ID = "LayeredDiffusionApply"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Diffuse Apply",
            category=LEGACY_CATEGORY,
            description="ComfyUI-layerdiffuse's transparent-foreground node (deprecated; use SDXL Transparent "
                        "Foreground or the SD1.5 nodes). The weight is ignored for the SD15 config, as before.",
            inputs=[
                io.Model.Input("model"),
                io.Combo.Input("config", options=list(APPLY_CONFIGS)),
                _weight_input(),
            ],
            outputs=[io.Model.Output()],
            is_deprecated=True,
        )

    @classmethod
    def execute(cls, model, config: str, weight: float) -> io.NodeOutput:
        node_id = cls.NODE_ID
        file_id = APPLY_CONFIGS[config]
        if file_id == "layer_sd15_transparent_attn":
            from ..models.attention_sharing import apply_attention_sharing  # the SD1.5 path lives there

            return io.NodeOutput(apply_attention_sharing(model, file_id, node=node_id))
        patched, _, _ = apply_layer_file(node_id, file_id, model, None, None, weight=weight)
        return io.NodeOutput(patched)


def _conditioned_schema(node_id: str, display_name: str, description: str, latent_inputs: tuple[str, ...],
                        configs: dict[str, str]) -> io.Schema:
    """The old Cond/Diff layout: model, cond, uncond, latent input(s), config, weight -> model, cond, uncond."""
    return schema(
        node_id=node_id,
        display_name=display_name,
        category=LEGACY_CATEGORY,
        description=description,
        inputs=[
            io.Model.Input("model"),
            io.Conditioning.Input("cond"),
            io.Conditioning.Input("uncond"),
            *(io.Latent.Input(name) for name in latent_inputs),
            io.Combo.Input("config", options=list(configs)),
            _weight_input(),
        ],
        outputs=[io.Model.Output(), io.Conditioning.Output(), io.Conditioning.Output()],
        is_deprecated=True,
    )


class LayeredDiffusionCondApply(LayerStackNode):
    NODE_ID = "LayeredDiffusionCondApply"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _conditioned_schema(
            cls.NODE_ID, "Layer Diffuse Cond Apply",
            "ComfyUI-layerdiffuse's foreground/background → blended node (deprecated; use SDXL Foreground → Blended "
            "or SDXL Background → Blended). 'latent' must already have the generation size.",
            ("latent",), COND_CONFIGS)

    @classmethod
    def execute(cls, model, cond, uncond, latent, config: str, weight: float) -> io.NodeOutput:
        return _apply_with_latent(cls.NODE_ID, COND_CONFIGS[config], model, cond, uncond, [latent], ["latent"], weight)


class LayeredDiffusionDiffApply(LayerStackNode):
    NODE_ID = "LayeredDiffusionDiffApply"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return _conditioned_schema(
            cls.NODE_ID, "Layer Diffuse Diff Apply",
            "ComfyUI-layerdiffuse's foreground/background + blended node (deprecated; use SDXL Foreground + Blended "
            "→ Background or SDXL Background + Blended → Transparent Foreground). 'latent' is the given foreground "
            "(SDXL, Foreground) or background (SDXL, Background).",
            ("blended_latent", "latent"), DIFF_CONFIGS)

    @classmethod
    def execute(cls, model, cond, uncond, blended_latent, latent, config: str, weight: float) -> io.NodeOutput:
        # c_concat channel order is [given layer, blended] (docs/FORMATS.md#c-concat)
        return _apply_with_latent(cls.NODE_ID, DIFF_CONFIGS[config], model, cond, uncond, [latent, blended_latent],
                                  ["latent", "blended_latent"], weight)


NODES = [LayeredDiffusionApply, LayeredDiffusionCondApply, LayeredDiffusionDiffApply]
