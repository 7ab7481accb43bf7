"""SD1.5 layer nodes (attention sharing): a transparent foreground; foreground, background and blended generated
together; background + blended from a foreground; foreground + blended from a background; and the node that splits
such a batch into named layers.

Each apply node takes the latent with one sample per image set and returns it with F frames per set (sample
n = set·F + frame), tagged with the layer order, so the sampler gets a valid batch and Split SD1.5 Layers knows
which frame is which. Per-layer prompts replace the positive prompt for their own frame only.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io
from comfy_execution.graph_utils import ExecutionBlocker

from ..errors import FROM_SAMPLER, node_error, require_finite
from ..layer_vae import runtime
from ..models import registry
from ..models.attention_sharing import apply_attention_sharing
from ..models.conditioning_images import ResizeMode
from ..models.transparent_vae import LAYER_TAG, TransparentVAE
from .categories import SD15_CATEGORY
from .common import (
    PASSES_OPTIONS,
    LayerStackNode,
    LayerVAE,
    advanced,
    model_input,
    patched_model_output,
    resize_mode_input,
    schedule_inputs,
    schema,
)

MODE_AUTO = "auto (from the latent)"
SPLIT_MODES = {
    "transparent foreground": "layer_sd15_transparent_attn",
    "joint: foreground, background, blended": "layer_sd15_joint",
    "foreground → background, blended": "layer_sd15_fg2bg",
    "background → foreground, blended": "layer_sd15_bg2fg",
}


# --- the latent: one sample per set in, F frames per set out ---------------------------------------------------------

def expand_latent(latent: dict, entry: registry.LayerFile, node: str) -> dict:
    """Every sample repeated for the F frames of its set (n = set·F + frame), each frame with its own noise."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[1] != 4:
        got = f"shape {list(samples.shape)}" if isinstance(samples, torch.Tensor) else type(latent).__name__
        raise node_error(node, "latent", "an SD1.5 LATENT [sets, 4, height/8, width/8]", got)
    require_finite(samples, node, "latent", FROM_SAMPLER)
    frames = entry.frames
    out = {k: v for k, v in latent.items() if k not in ("samples", "batch_index", "noise_mask")}
    out["samples"] = samples.repeat_interleave(frames, dim=0)
    # batch_index picks each sample's noise: give every frame an index of its own, or all frames share one noise
    indices = latent.get("batch_index") or list(range(samples.shape[0]))
    out["batch_index"] = [i * frames + f for i in indices for f in range(frames)]
    mask = latent.get("noise_mask")
    if mask is not None:
        out["noise_mask"] = mask.repeat_interleave(frames, dim=0) if mask.shape[0] == samples.shape[0] else mask
    out[LAYER_TAG] = entry.id
    return out


# --- shared inputs and outputs -------------------------------------------------------------------------------------

def _model_and_latent_inputs() -> list[io.Input]:
    return [
        model_input("SD1.5"),
        io.Latent.Input("latent", tooltip="One sample per image set (e.g. Empty Latent Image with batch_size = the "
                                          "number of sets). The output latent holds every frame of every set."),
    ]


def _prompt_inputs(entry: registry.LayerFile) -> list[io.Input]:
    return [io.Conditioning.Input(f"{layer}_prompt", optional=True,
                                  tooltip=f"Replaces the positive prompt for the {layer} frame only (the negative "
                                          f"prompt is not changed). Unconnected: the sampler's positive prompt.")
            for layer in entry.outputs]


def _outputs(entry: registry.LayerFile) -> list[io.Output]:
    return [
        patched_model_output(),
        io.Latent.Output(display_name="latent",
                         tooltip=f"Connect to the sampler: {entry.frames} frame(s) per set "
                                 f"({', '.join(entry.outputs)}). Then VAE Decode and Split SD1.5 Layers."),
    ]


class _SD15Layers(LayerStackNode):
    """One attention-sharing file as a node; subclasses name the file and whether a control image comes in."""

    FILE_ID: str
    NODE_ID: str
    DISPLAY_NAME: str
    DESCRIPTION: str

    @classmethod
    def define_schema(cls) -> io.Schema:
        entry = registry.get(cls.FILE_ID)
        image_inputs: list[io.Input] = []
        if entry.uses_control:
            given = entry.inputs[0]
            image_inputs = [
                io.Image.Input(given, tooltip=f"The given {given} (RGB, or RGBA: flattened on 50% grey). One image "
                                              f"for every set, or one per set. Fitted to the latent's size."),
                resize_mode_input("How an image of another size is fitted"),
            ]
        prompts = _prompt_inputs(entry) if entry.frames > 1 else []
        return schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=SD15_CATEGORY,
            description=f"{cls.DESCRIPTION} Uses {entry.filename}.",
            inputs=[*_model_and_latent_inputs(), *image_inputs, *prompts, *schedule_inputs()],
            outputs=_outputs(entry),
        )

    @classmethod
    def execute(cls, model, latent, start_percent: float, stop_percent: float, resize_mode: str | None = None,
                **inputs) -> io.NodeOutput:
        entry = registry.get(cls.FILE_ID)
        layer_conds = {layer: inputs.get(f"{layer}_prompt") for layer in entry.outputs}
        control = inputs.get(entry.inputs[0]) if entry.uses_control else None
        names = {"control_image": entry.inputs[0] if entry.uses_control else "control_image",
                 **{layer: f"{layer}_prompt" for layer in entry.outputs}}
        # The latent first: a wrong latent should not cost a file load.
        out_latent = expand_latent(latent, entry, cls.NODE_ID)
        patched = apply_attention_sharing(
            model, cls.FILE_ID, layer_conds=layer_conds, control_image=control, start_percent=start_percent,
            stop_percent=stop_percent, resize_mode=resize_mode or ResizeMode.CROP_AND_RESIZE, node=cls.NODE_ID,
            input_names=names, sets=latent["samples"].shape[0])
        return io.NodeOutput(patched, out_latent)


class SD15TransparentForeground(_SD15Layers):
    FILE_ID = "layer_sd15_transparent_attn"
    NODE_ID = "LayerStackSD15TransparentForeground"
    DISPLAY_NAME = "SD1.5 Transparent Foreground"
    DESCRIPTION = ("Makes SD1.5 generate a transparent foreground. The sampled latent is a transparent latent: "
                   "decode it with Split SD1.5 Layers (or Transparent Decode) to get RGBA.")


class SD15JointLayers(_SD15Layers):
    FILE_ID = "layer_sd15_joint"
    NODE_ID = "LayerStackSD15JointLayers"
    DISPLAY_NAME = "SD1.5 Foreground + Background + Blended"
    DESCRIPTION = ("Generates a transparent foreground, a background and the blended image together, as three "
                   "frames of each set.")


class SD15ForegroundToBackground(_SD15Layers):
    FILE_ID = "layer_sd15_fg2bg"
    NODE_ID = "LayerStackSD15ForegroundToBackground"
    DISPLAY_NAME = "SD1.5 Foreground → Background + Blended"
    DESCRIPTION = "Generates a background and the blended image for a given foreground, as two frames of each set."


class SD15BackgroundToForeground(_SD15Layers):
    FILE_ID = "layer_sd15_bg2fg"
    NODE_ID = "LayerStackSD15BackgroundToForeground"
    DISPLAY_NAME = "SD1.5 Background → Foreground + Blended"
    DESCRIPTION = ("Generates a transparent foreground and the blended image for a given background, as two frames "
                   "of each set.")


# --- splitting the sampled batch -----------------------------------------------------------------------------------

class SD15SplitLayers(LayerStackNode):
    """The frames of an attention-sharing batch as named layers; transparent frames decoded to RGB + alpha."""

    NODE_ID = "LayerStackSD15SplitLayers"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Split SD1.5 Layers",
            category=SD15_CATEGORY,
            description="Splits a batch sampled with an SD1.5 layer node into foreground, background and blended "
                        "images (one per set each). Foreground frames are transparent latents and are decoded with "
                        "the transparent decoder. A layer the mode does not generate blocks whatever is connected "
                        "to it, with a message.",
            inputs=[
                io.Latent.Input("samples", tooltip="The sampler's output latent."),
                io.Image.Input("images", tooltip="VAE Decode of 'samples' (the whole batch)."),
                LayerVAE.Input("layer_vae", optional=True,
                               tooltip="From Load Transparent VAE (SD1.5). Needed when the batch has a foreground."),
                io.Combo.Input("mode", options=[MODE_AUTO, *SPLIT_MODES], default=MODE_AUTO,
                               tooltip="Which frames the batch holds. 'auto' reads it from the latent of an SD1.5 "
                                       "layer node; choose it when the latent went through nodes that drop it."),
                advanced(io.Combo.Input, "passes", options=PASSES_OPTIONS, default="8",
                         tooltip="Transparent decoder flip/rotate passes (8 = the reference result)."),
            ],
            outputs=[
                io.Image.Output(display_name="foreground", tooltip="Foreground colour (straight alpha), [sets,H,W,3]."),
                io.Mask.Output(display_name="foreground_alpha",
                               tooltip="Foreground alpha, 1 = opaque (the inverse of LoadImage's mask)."),
                io.Image.Output(display_name="foreground_rgba", tooltip="Foreground RGBA [sets,H,W,4]."),
                io.Image.Output(display_name="background", tooltip="Background, [sets,H,W,3]."),
                io.Image.Output(display_name="blended", tooltip="Blended image, [sets,H,W,3]."),
            ],
        )

    @classmethod
    def execute(cls, samples, images, mode: str, passes: str, layer_vae=None) -> io.NodeOutput:
        node = cls.NODE_ID
        entry = _split_entry(node, samples, mode)
        latents = samples["samples"]
        runtime.check_decode_inputs(node, images, latents)
        frames = entry.frames
        if latents.shape[0] % frames:
            raise node_error(node, "samples", f"a batch that is a multiple of {frames} ({entry.id})",
                             f"{latents.shape[0]} samples")
        layers = {}
        for f, layer in enumerate(entry.outputs):
            frame_images, frame_latents = images[f::frames], latents[f::frames]
            if f in entry.transparent_output_frames:
                decoded = runtime.decode(_sd15_layer_vae(node, layer_vae), frame_images, frame_latents, node=node,
                                         passes=int(passes))
                layers[layer] = runtime.rgb_alpha_rgba(decoded)
            else:
                layers[layer] = frame_images[..., :3]

        def missing(layer: str) -> ExecutionBlocker:
            return ExecutionBlocker(f"{node}: this batch ({entry.id}) has no {layer} layer; it holds "
                                    f"{', '.join(entry.outputs)}.")

        foreground = layers.get("foreground") or (missing("foreground"),) * 3
        return io.NodeOutput(*foreground, layers.get("background", missing("background")),
                             layers.get("blended", missing("blended")))


def _split_entry(node: str, samples, mode: str) -> registry.LayerFile:
    if not isinstance(samples, dict) or "samples" not in samples:
        raise node_error(node, "samples", "a LATENT", type(samples).__name__)
    if mode == MODE_AUTO:
        tag = samples.get(LAYER_TAG)
        if tag is None:
            raise node_error(node, "mode", f"one of {list(SPLIT_MODES)} (the latent carries no layer order: it did "
                             f"not come from an SD1.5 layer node, or a node on the way dropped it)", repr(mode))
        return registry.get(tag)
    return registry.get(SPLIT_MODES[mode])


def _sd15_layer_vae(node: str, layer_vae):
    if layer_vae is None:
        raise node_error(node, "layer_vae", "Load Transparent VAE (SD1.5) to decode the foreground", "nothing")
    if not isinstance(layer_vae, TransparentVAE) or layer_vae.family is not registry.Family.SD15:
        got = f"the {layer_vae.family.value} transparent VAE" if isinstance(layer_vae, TransparentVAE) \
            else type(layer_vae).__name__
        raise node_error(node, "layer_vae", "the SD1.5 transparent VAE", got)
    return layer_vae


NODES = [SD15TransparentForeground, SD15JointLayers, SD15ForegroundToBackground, SD15BackgroundToForeground,
         SD15SplitLayers]
