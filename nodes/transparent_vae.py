"""Transparent decode/encode nodes: the LayerDiffuse transparent VAE (layer_vae/) as ComfyUI nodes.

Load Transparent VAE -> LAYER_VAE; Transparent Decode (LATENT + its VAE-decoded IMAGE -> RGB, alpha, RGBA);
Transparent Encode (RGBA -> LATENT for img2img/inpaint); Preview RGBA (checkerboard).
Alpha convention: straight alpha, MASK = alpha (1 = opaque), the inverse of LoadImage's mask.
"""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..errors import node_error
from ..layer_stack.compositing import flatten
from ..layer_stack.inputs import rgb_and_alpha
from ..layer_vae import runtime
from ..models.registry import Family
from ..models.transparent_vae import TransparentVAE, check_latent_family, family_from
from .categories import VAE_CATEGORY
from .common import (
    MASK_IS_LOADIMAGE,
    PASSES_OPTIONS,
    LayerStackNode,
    LayerVAE,
    advanced,
    mask_meaning_input,
    schema,
)


class LoadTransparentVAE(LayerStackNode):
    NODE_ID = "LayerStackLoadTransparentVAE"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Load Transparent VAE",
            category=VAE_CATEGORY,
            description="The LayerDiffuse transparent decoder and offset encoder of one model family (SD1.5, "
            "SDXL or Flux), read from the layer_model folder when first used. Flux: TransparentVAE.pth, read as "
            "plain tensors only (Fetch Layer File converts it to safetensors once).",
            inputs=[
                io.Combo.Input("family", options=[f.value for f in Family], default=Family.SDXL.value,
                               tooltip="Which files to use when no model is connected. It must be the family of "
                                       "the latents you decode (Transparent Decode refuses an SD1.5 layer latent "
                                       "with the SDXL decoder; other latents cannot be told apart)."),
                io.Model.Input("model", optional=True,
                               tooltip="If connected, its family (SD1.5, SDXL or Flux) decides and 'family' is "
                                       "ignored."),
                io.Boolean.Input("allow_download", default=False,
                                 tooltip="Download a missing official file into the first layer_model folder."),
            ],
            outputs=[LayerVAE.Output(display_name="layer_vae",
                                     tooltip="Decoder + encoder for Transparent Decode / Encode.")],
        )

    @classmethod
    def execute(cls, family: str, allow_download: bool, model=None) -> io.NodeOutput:
        node = cls.NODE_ID
        chosen = family_from(node, family, model)
        return io.NodeOutput(TransparentVAE(chosen, download=allow_download))


def _decode_inputs() -> list[io.Input]:
    return [
        io.Latent.Input("samples", tooltip="The latent the image was decoded from (SD1.5/SDXL: 4 channels, Flux: 16; "
                                           "any batch)."),
        io.Image.Input("images", tooltip="The ordinary VAE Decode of 'samples'. Any size that is a multiple of 8; "
                                         "padded to 64 internally and cropped back."),
        advanced(io.Combo.Input, "passes", options=PASSES_OPTIONS, default="8",
                 tooltip="Flip/rotate passes whose per-pixel median is taken. 8 is the reference result; "
                               "4, 2, 1 are faster and slightly less clean."),
        advanced(io.Int.Input, "sub_batch_size", default=0, min=0, max=4096, step=1,
                 tooltip="Network samples per forward call (one pass of one image = 1). 0 = automatic: as "
                         "many as fit in free memory (on a GPU all of it, on a CPU a small share of free RAM, so "
                         "small images batch their passes). Lower it if you run out of memory."),
    ]


class TransparentDecode(LayerStackNode):
    NODE_ID = "LayerStackTransparentDecode"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Transparent Decode",
            category=VAE_CATEGORY,
            description="Turns a transparent latent (LayerDiffuse) into RGB + alpha with the transparent decoder. "
            "Connect the latent and its ordinary VAE Decode.",
            inputs=[LayerVAE.Input("layer_vae", tooltip="From Load Transparent VAE (match the model family).")]
            + _decode_inputs(),
            outputs=[
                io.Image.Output(display_name="rgb", tooltip="Straight (un-premultiplied) colour, [B,H,W,3]."),
                io.Mask.Output(display_name="alpha",
                               tooltip="Alpha, 1 = opaque. This is the inverse of LoadImage's mask: use "
                                       "InvertMask before nodes that expect a LoadImage-style mask."),
                io.Image.Output(display_name="rgba", tooltip="RGBA image [B,H,W,4] (alpha last); saves as RGBA PNG."),
            ],
        )

    @classmethod
    def execute(cls, layer_vae, samples, images, passes: str, sub_batch_size: int) -> io.NodeOutput:
        node = cls.NODE_ID
        if not isinstance(layer_vae, TransparentVAE):
            raise node_error(node, "layer_vae", "the output of Load Transparent VAE", type(layer_vae).__name__)
        check_latent_family(node, layer_vae, samples)
        decoded = runtime.decode(layer_vae, images, samples["samples"], node=node, passes=int(passes),
                                 sub_batch_size=sub_batch_size or None)
        return io.NodeOutput(*runtime.rgb_alpha_rgba(decoded))


class TransparentEncode(LayerStackNode):
    NODE_ID = "LayerStackTransparentEncode"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Transparent Encode (RGBA)",
            category=VAE_CATEGORY,
            description="Encodes an RGBA image into a latent that keeps its transparency, for img2img / inpaint "
            "with a LayerDiffuse model; decode the result with Transparent Decode. The image is cropped to a "
            "multiple of 8 like VAE Encode.",
            inputs=[
                LayerVAE.Input("layer_vae", tooltip="From Load Transparent VAE (match the model family)."),
                io.Vae.Input("vae", tooltip="The checkpoint's ordinary VAE."),
                io.Image.Input("image", tooltip="RGB (then connect 'mask') or RGBA [B,H,W,4]; straight alpha."),
                io.Mask.Input("mask", optional=True, tooltip="The alpha, when 'image' is RGB; see 'mask_meaning'."),
                mask_meaning_input("LoadImage's MASK is 1 where the PNG is transparent: pick the second option for "
                                   "it. LayerStack's own alpha outputs are the first."),
                advanced(io.Float.Input, "offset_multiplier", default=1.0, min=0.0, max=1000.0, step=0.01,
                         tooltip="Scale of the transparency offset added to the VAE latent. 1 with the "
                                 "official files (the Flux encoder's fixed x300 is applied inside); 0 gives "
                                 "a plain VAE encode of the image on grey."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="Raw latent for KSampler (set denoise < 1).")],
        )

    @classmethod
    def execute(cls, layer_vae, vae, image, mask_meaning: str, offset_multiplier: float, mask=None) -> io.NodeOutput:
        node = cls.NODE_ID
        if not isinstance(layer_vae, TransparentVAE):
            raise node_error(node, "layer_vae", "the output of Load Transparent VAE", type(layer_vae).__name__)
        rgb, alpha = rgb_and_alpha(image, mask, node, alpha_input="mask", alpha_required=True,
                                   mask_is_inverted=mask_meaning == MASK_IS_LOADIMAGE)
        latent = runtime.encode(layer_vae, vae, rgb.movedim(-1, 1), alpha.unsqueeze(1), node=node,
                                multiplier=offset_multiplier)
        return io.NodeOutput({"samples": latent})


class PreviewRGBA(LayerStackNode):
    NODE_ID = "LayerStackPreviewRGBA"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Preview RGBA",
            category=VAE_CATEGORY,
            description="Shows an RGBA image (or RGB + alpha) over a grey checkerboard, the way Forge's "
            "LayerDiffuse shows transparent results.",
            inputs=[
                io.Image.Input("image", tooltip="RGBA [B,H,W,4], or RGB with 'alpha' connected."),
                io.Mask.Input("alpha", optional=True, tooltip="Alpha, 1 = opaque (not LoadImage's mask)."),
            ],
            outputs=[io.Image.Output(display_name="preview", tooltip="The composite over the checkerboard.")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, image, alpha=None) -> io.NodeOutput:
        rgb, alpha = rgb_and_alpha(image, alpha, cls.NODE_ID, alpha_required=True)
        preview = flatten(rgb, alpha, "checkerboard")
        return io.NodeOutput(preview, ui=ui.PreviewImage(preview, cls=cls))


NODES = [LoadTransparentVAE, TransparentDecode, TransparentEncode, PreviewRGBA]
