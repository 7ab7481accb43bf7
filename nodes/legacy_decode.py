"""Drop-in ids of huchenlei/ComfyUI-layerdiffuse's decode nodes (docs/FORMATS.md#old-nodes), running on layer_vae.

Inputs, combo strings, defaults, ranges and output order are exactly the old ones, so shared workflows load and
run unchanged; the RGBA node works again (the old one calls a JoinImageWithAlpha method current ComfyUI removed).
Differences that only help: any multiple-of-8 size (the old nodes asserted multiples of 64), batched passes, and
the decoder is managed by ComfyUI. The network samples per forward call are chosen by memory
(layer_vae/runtime.auto_sub_batch) and never exceed what the old node ran per call: ``sub_batch_size`` images, one
pass each, so never more memory than the old node. Deprecated: new workflows should use Load Transparent VAE +
Transparent Decode (family from the model, fewer passes on demand).
"""

from __future__ import annotations

import copy

import torch
from comfy_api.latest import io

from ..errors import node_error
from ..layer_vae import runtime
from ..models.registry import Family
from ..models.transparent_vae import reused
from .categories import LEGACY_CATEGORY
from .common import LayerStackNode, advanced, schema

SD_VERSIONS = ["SD15", "SDXL"]  # the old StableDiffusionVersion values, in the old order
MAX_FRAMES = 3


def _common_inputs() -> list[io.Input]:
    return [
        io.Combo.Input("sd_version", options=SD_VERSIONS, default="SDXL"),
        advanced(io.Int.Input, "sub_batch_size", default=16, min=1, max=4096, step=1),
    ]


def _decode(node: str, samples, images, sd_version: str, sub_batch_size: int) -> torch.Tensor:
    """[B,H,W,4] alpha-first decode, as the old decode node computed it (8 passes)."""
    # The old node kept its decoder on the node instance; here it is reused while its file is unchanged
    # (models/transparent_vae.reused). The sub-batch is the automatic, memory-bounded one, and the old parameter only
    # caps it: the old node ran `sub_batch_size` images per forward call, one pass each, so at most that many network
    # samples (fewer when the batch is smaller) is the memory it used. Read as samples, the old default of 16 would
    # put all 8 passes of an image in one call: 8 times the old node's memory.
    tvae = reused(Family(sd_version))
    cap = min(sub_batch_size, images.shape[0]) if isinstance(images, torch.Tensor) and images.ndim == 4 else 1
    return runtime.decode(tvae, images, samples["samples"], node=node, passes=8, sub_batch_cap=max(1, cap))


def _rgba(decoded: torch.Tensor) -> torch.Tensor:
    return runtime.rgb_alpha_rgba(decoded)[2]


class LayeredDiffusionDecode(LayerStackNode):
    NODE_ID = "LayeredDiffusionDecode"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Diffuse Decode",
            category=LEGACY_CATEGORY,
            description="ComfyUI-layerdiffuse's transparent decode (deprecated; use Transparent Decode). Outputs "
            "RGB and the alpha as MASK (1 = opaque, the inverse of LoadImage's mask).",
            inputs=[io.Latent.Input("samples"), io.Image.Input("images")] + _common_inputs(),
            outputs=[io.Image.Output(), io.Mask.Output()],
            is_deprecated=True,
        )

    @classmethod
    def execute(cls, samples, images, sd_version: str, sub_batch_size: int) -> io.NodeOutput:
        decoded = _decode(cls.NODE_ID, samples, images, sd_version, sub_batch_size)
        return io.NodeOutput(*runtime.rgb_alpha_rgba(decoded)[:2])


class LayeredDiffusionDecodeRGBA(LayerStackNode):
    NODE_ID = "LayeredDiffusionDecodeRGBA"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Diffuse Decode (RGBA)",
            category=LEGACY_CATEGORY,
            description="ComfyUI-layerdiffuse's RGBA decode (deprecated; use Transparent Decode's rgba output).",
            inputs=[io.Latent.Input("samples"), io.Image.Input("images")] + _common_inputs(),
            outputs=[io.Image.Output()],
            is_deprecated=True,
        )

    @classmethod
    def execute(cls, samples, images, sd_version: str, sub_batch_size: int) -> io.NodeOutput:
        return io.NodeOutput(_rgba(_decode(cls.NODE_ID, samples, images, sd_version, sub_batch_size)))


class LayeredDiffusionDecodeSplit(LayerStackNode):
    NODE_ID = "LayeredDiffusionDecodeSplit"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Diffuse Decode (Split)",
            category=LEGACY_CATEGORY,
            description="ComfyUI-layerdiffuse's split decode for SD1.5 joint batches (deprecated): frame 0 of each "
            "group is decoded as RGBA, the other frames' images pass through; unused outputs are empty.",
            inputs=[
                io.Latent.Input("samples"),
                io.Image.Input("images"),
                io.Int.Input("frames", default=2, min=2, max=MAX_FRAMES, step=1),
            ]
            + _common_inputs(),
            outputs=[io.Image.Output(), io.Image.Output(), io.Image.Output()],
            is_deprecated=True,
        )

    @classmethod
    def execute(cls, samples, images, frames: int, sd_version: str, sub_batch_size: int) -> io.NodeOutput:
        node = cls.NODE_ID
        if not 2 <= frames <= MAX_FRAMES:
            raise node_error(node, "frames", f"2..{MAX_FRAMES}", str(frames))
        first = copy.copy(samples)
        first["samples"] = samples["samples"][::frames]
        decoded = _rgba(_decode(node, first, images[0::frames], sd_version, sub_batch_size))
        outputs = [decoded] + [images[i::frames] for i in range(1, frames)]
        return io.NodeOutput(*outputs, *([None] * (MAX_FRAMES - frames)))


NODES = [LayeredDiffusionDecode, LayeredDiffusionDecodeRGBA, LayeredDiffusionDecodeSplit]
