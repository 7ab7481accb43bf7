"""Drop-in ids of huchenlei/ComfyUI-layerdiffuse's SD1.5 attention-sharing nodes (docs/FORMATS.md#old-nodes), running on
this pack's core (models/attention_sharing.py).

Inputs, combo strings, defaults and output order are exactly the old ones, so shared workflows load and run
unchanged; the latent batch is still the user's (3N / 2N), as before, and a wrong one is refused before sampling.
Differences that only remove failures: the image of CondJointApply may have any size and an alpha channel (it is
fitted to the generation size and flattened on grey, as Forge does), and these nodes no longer break other
attention patches. The SD15 config of LayeredDiffusionApply lives in legacy_sdxl.py with that node.
Deprecated: new workflows should use the LayerStack SD1.5 nodes (named layers, start/stop, batch handled).
"""

from __future__ import annotations

from comfy_api.latest import io

from ..models import registry
from ..models.attention_sharing import apply_attention_sharing
from ..models.conditioning_images import ResizeMode
from .categories import LEGACY_CATEGORY
from .common import LayerStackNode, schema

JOINT_CONFIGS = {"SD15, attn_sharing, Batch size (3N)": "layer_sd15_joint"}
COND_JOINT_CONFIGS = {
    "SD15, Foreground, attn_sharing, Batch size (2N)": "layer_sd15_fg2bg",
    "SD15, Background, attn_sharing, Batch size (2N)": "layer_sd15_bg2fg",
}


class LayeredDiffusionJointApply(LayerStackNode):
    NODE_ID = "LayeredDiffusionJointApply"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Diffuse Joint Apply",
            category=LEGACY_CATEGORY,
            description="ComfyUI-layerdiffuse's joint foreground + background + blended node (deprecated; use SD1.5 "
                        "Foreground + Background + Blended). The latent batch must be a multiple of 3: frames "
                        "foreground, background, blended of each set.",
            inputs=[
                io.Model.Input("model"),
                io.Combo.Input("config", options=list(JOINT_CONFIGS)),
                io.Conditioning.Input("fg_cond", optional=True),
                io.Conditioning.Input("bg_cond", optional=True),
                io.Conditioning.Input("blended_cond", optional=True),
            ],
            outputs=[io.Model.Output()],
            is_deprecated=True,
        )

    @classmethod
    def execute(cls, model, config: str, fg_cond=None, bg_cond=None, blended_cond=None) -> io.NodeOutput:
        node_id = cls.NODE_ID
        file_id = JOINT_CONFIGS[config]
        conds = {"foreground": fg_cond, "background": bg_cond, "blended": blended_cond}
        names = {"foreground": "fg_cond", "background": "bg_cond", "blended": "blended_cond", "file": "config"}
        return io.NodeOutput(apply_attention_sharing(model, file_id, layer_conds=conds, node=node_id,
                                                     input_names=names))


class LayeredDiffusionCondJointApply(LayerStackNode):
    NODE_ID = "LayeredDiffusionCondJointApply"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Diffuse Cond Joint Apply",
            category=LEGACY_CATEGORY,
            description="ComfyUI-layerdiffuse's foreground → background / background → foreground node (deprecated; "
                        "use SD1.5 Foreground → Background + Blended or SD1.5 Background → Foreground + Blended). "
                        "The latent batch must be a multiple of 2. 'cond' is the prompt of the generated layer "
                        "(background for Foreground, foreground for Background), 'blended_cond' of the blended "
                        "image.",
            inputs=[
                io.Model.Input("model"),
                io.Image.Input("image"),
                io.Combo.Input("config", options=list(COND_JOINT_CONFIGS)),
                io.Conditioning.Input("cond", optional=True),
                io.Conditioning.Input("blended_cond", optional=True),
            ],
            outputs=[io.Model.Output()],
            is_deprecated=True,
        )

    @classmethod
    def execute(cls, model, image, config: str, cond=None, blended_cond=None) -> io.NodeOutput:
        node_id = cls.NODE_ID
        file_id = COND_JOINT_CONFIGS[config]
        generated = registry.get(file_id).outputs[0]  # frame 0: background (fg2bg) or foreground (bg2fg)
        conds = {generated: cond, "blended": blended_cond}
        names = {generated: "cond", "blended": "blended_cond", "control_image": "image", "file": "config"}
        return io.NodeOutput(apply_attention_sharing(
            model, file_id, layer_conds=conds, control_image=image, resize_mode=ResizeMode.CROP_AND_RESIZE,
            node=node_id, input_names=names))


NODES = [LayeredDiffusionJointApply, LayeredDiffusionCondJointApply]
