"""SDXL layer nodes: a transparent foreground, and the four modes that turn given layers into another layer.

Each node patches a clone of the model with one official file (models/sdxl_patches.py; a narrowed start/stop window
is part of that patched model) and returns the conditioning it must be sampled with: the condition layers ride on it
as c_concat.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..errors import node_error
from ..models import registry, sdxl_patches
from ..models.conditioning_images import encode_condition_image
from .categories import SDXL_CATEGORY
from .common import (
    MAX_RESOLUTION,
    LayerStackNode,
    model_input,
    patched_model_output,
    resize_mode_input,
    schedule_inputs,
    schema,
)

TRANSPARENT_METHODS = {
    "attention injection": "layer_xl_transparent_attn",
    "conv injection": "layer_xl_transparent_conv",
}


# --- shared inputs and outputs -------------------------------------------------------------------------------------

def _model_and_conditioning_inputs() -> list[io.Input]:
    return [
        model_input("SDXL"),
        io.Conditioning.Input("positive", tooltip="Positive prompt conditioning for the sampler."),
        io.Conditioning.Input("negative", tooltip="Negative prompt conditioning for the sampler."),
    ]


def _strength_and_schedule_inputs() -> list[io.Input]:
    return [
        io.Float.Input("weight", default=1.0, min=-1.0, max=3.0, step=0.05,
                       tooltip="Patch strength. It also scales the condition channels of conv_in, so 0 turns the "
                               "layer model off entirely."),
        *schedule_inputs(),
    ]


def _outputs() -> list[io.Output]:
    return [
        patched_model_output(),
        io.Conditioning.Output(display_name="positive",
                               tooltip="Connect to the sampler: carries the condition layers."),
        io.Conditioning.Output(display_name="negative",
                               tooltip="Connect to the sampler: carries the condition layers."),
    ]


def apply_layer_file(node_id: str, file_id: str, model, positive, negative, *, weight: float,
                     start_percent: float = 0.0, stop_percent: float = 1.0, condition_latents=(),
                     condition_names=(), size_input: str = "width / height"):
    """The SDXL patch sequence of every SDXL layer node, the old ids included: load and fit-check the file, patch a
    clone (weight, window), and put the raw condition latents (file order) on both conditionings as c_concat.

    Returns (patched model, positive, negative); `size_input` names the input to blame for a size mismatch.
    """
    layer = sdxl_patches.load_layer_patches(model, file_id, node=node_id)
    patched, positive, negative = sdxl_patches.apply_layer_patches(
        model, layer, node=node_id, weight=weight, start_percent=start_percent, stop_percent=stop_percent,
        positive=positive, negative=negative)
    if condition_latents:
        c_concat = sdxl_patches.condition_c_concat(model, condition_latents, node=node_id, names=condition_names)
        sdxl_patches.require_sampled_size(patched, c_concat, node=node_id, input_name=size_input)
        positive = sdxl_patches.with_c_concat(positive, c_concat)
        negative = sdxl_patches.with_c_concat(negative, c_concat)
    return patched, positive, negative


# --- transparent foreground ----------------------------------------------------------------------------------------

class SDXLTransparentForeground(LayerStackNode):
    """Makes SDXL generate in the transparent latent space: decode the result with a transparent decoder."""

    NODE_ID = "LayerStackSDXLTransparentForeground"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="SDXL Transparent Foreground",
            category=SDXL_CATEGORY,
            description="Patches SDXL to generate a transparent foreground (LayerDiffuse). The sampled latent is a "
                        "transparent latent: decode it with the transparent decoder to get RGBA.",
            inputs=[
                *_model_and_conditioning_inputs(),
                io.Combo.Input("method", options=list(TRANSPARENT_METHODS), default="attention injection",
                               tooltip="attention injection: layer_xl_transparent_attn (a rank-256 LoRA on the "
                                       "attention layers); conv injection: layer_xl_transparent_conv (offsets of "
                                       "all other layers)."),
                *_strength_and_schedule_inputs(),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, negative, method: str, weight: float, start_percent: float,
                stop_percent: float) -> io.NodeOutput:
        return io.NodeOutput(*apply_layer_file(cls.NODE_ID, TRANSPARENT_METHODS[method], model, positive, negative,
                                               weight=weight, start_percent=start_percent, stop_percent=stop_percent))


# --- conditional modes ---------------------------------------------------------------------------------------------

class _SDXLFromLayers(LayerStackNode):
    """A conditional SDXL file: given layers (each an IMAGE or a LATENT) steer the generation of another layer."""

    FILE_ID: str
    NODE_ID: str
    DISPLAY_NAME: str
    DESCRIPTION: str

    @classmethod
    def define_schema(cls) -> io.Schema:
        entry = registry.get(cls.FILE_ID)
        layer_inputs: list[io.Input] = []
        for name in entry.inputs:
            layer_inputs += [
                io.Image.Input(name, optional=True,
                               tooltip=f"The {name} layer as an image (RGB, or RGBA: flattened on 50% grey). "
                                       f"Fitted to width x height, then encoded with the vae. Give this or "
                                       f"{name}_latent."),
                io.Latent.Input(f"{name}_latent", optional=True,
                                tooltip=f"The {name} layer as a latent (VAE Encode output, already width x height). "
                                        f"Give this or the {name} image."),
            ]
        return schema(
            node_id=cls.NODE_ID,
            display_name=cls.DISPLAY_NAME,
            category=SDXL_CATEGORY,
            description=f"{cls.DESCRIPTION} Uses {entry.filename}.",
            inputs=[
                *_model_and_conditioning_inputs(),
                *layer_inputs,
                io.Vae.Input("vae", optional=True, tooltip="Encodes the layers given as images."),
                io.Int.Input("width", default=1024, min=64, max=MAX_RESOLUTION, step=8,
                             tooltip="Generation width in pixels: the sampler's latent must have this size."),
                io.Int.Input("height", default=1024, min=64, max=MAX_RESOLUTION, step=8,
                             tooltip="Generation height in pixels: the sampler's latent must have this size."),
                resize_mode_input("How layer images of another size are fitted"),
                *_strength_and_schedule_inputs(),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, model, positive, negative, width: int, height: int, resize_mode: str, weight: float,
                start_percent: float, stop_percent: float, vae=None, **layers) -> io.NodeOutput:
        node_id = cls.NODE_ID
        names = registry.get(cls.FILE_ID).inputs
        latents = [_condition_latent(node_id, name, layers.get(name), layers.get(f"{name}_latent"), vae,
                                     width, height, resize_mode) for name in names]
        return io.NodeOutput(*apply_layer_file(node_id, cls.FILE_ID, model, positive, negative, weight=weight,
                                               start_percent=start_percent, stop_percent=stop_percent,
                                               condition_latents=latents, condition_names=names))


def _condition_latent(node_id: str, name: str, image, latent, vae, width: int, height: int, resize_mode: str):
    """Raw latent of one condition layer, from exactly one of its IMAGE / LATENT inputs."""
    if (image is None) == (latent is None):
        raise node_error(node_id, f"{name} / {name}_latent", f"exactly one of the {name} image or latent",
                         "both" if image is not None else "neither")
    if width % 8 or height % 8:
        raise node_error(node_id, "width / height", "multiples of 8", f"{width} x {height}")
    if image is not None:
        return encode_condition_image(vae, image, width, height, resize_mode, node=node_id, input_name=name)
    samples = latent["samples"]
    if samples.ndim != 4 or tuple(samples.shape[2:]) != (height // 8, width // 8):
        raise node_error(node_id, f"{name}_latent",
                         f"a latent of {width} x {height} px ([batch, 4, {height // 8}, {width // 8}])",
                         f"shape {list(samples.shape)}")
    return samples


class SDXLForegroundToBlended(_SDXLFromLayers):
    FILE_ID = "layer_xl_fg2ble"
    NODE_ID = "LayerStackSDXLForegroundToBlended"
    DISPLAY_NAME = "SDXL Foreground → Blended"
    DESCRIPTION = "Generates a blended image (a whole scene) around a given foreground."


class SDXLBackgroundToBlended(_SDXLFromLayers):
    FILE_ID = "layer_xl_bg2ble"
    NODE_ID = "LayerStackSDXLBackgroundToBlended"
    DISPLAY_NAME = "SDXL Background → Blended"
    DESCRIPTION = "Generates a blended image (something placed into the scene) over a given background."


class SDXLForegroundBlendedToBackground(_SDXLFromLayers):
    FILE_ID = "layer_xl_fgble2bg"
    NODE_ID = "LayerStackSDXLForegroundBlendedToBackground"
    DISPLAY_NAME = "SDXL Foreground + Blended → Background"
    DESCRIPTION = "Recovers the background behind a foreground, given the foreground and the blended image."


class SDXLBackgroundBlendedToForeground(_SDXLFromLayers):
    FILE_ID = "layer_xl_bgble2fg"
    NODE_ID = "LayerStackSDXLBackgroundBlendedToForeground"
    DISPLAY_NAME = "SDXL Background + Blended → Transparent Foreground"
    DESCRIPTION = ("Extracts the transparent foreground, given the background and the blended image. The sampled "
                   "latent is a transparent latent: decode it with the transparent decoder to get RGBA.")


NODES = [
    SDXLTransparentForeground,
    SDXLForegroundToBlended,
    SDXLBackgroundToBlended,
    SDXLForegroundBlendedToBackground,
    SDXLBackgroundBlendedToForeground,
]
