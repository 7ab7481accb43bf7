"""Alpha tools around transparent layers: premultiply, unpremultiply, halo-free resize, edge cleanup, backdrops.

Every 'alpha' input and output here is alpha (1 = opaque), the inverse of LoadImage's mask (use InvertMask on that).
An RGBA IMAGE (alpha last) may be connected instead of an RGB IMAGE + alpha.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..errors import node_error
from ..layer_stack import alpha as alpha_tools
from ..layer_stack import compositing
from ..layer_stack.inputs import rgb_and_alpha
from ..layer_stack.stack import Layer, LayerStack
from .categories import ALPHA_CATEGORY
from .common import (
    MAX_RESOLUTION,
    STACK_TOOLTIP,
    LayerStackNode,
    LayerStackType,
    advanced,
    alpha_input,
    check_stack,
    image_input,
    rgba_outputs,
    schema,
)


class LayerStackPremultiply(LayerStackNode):
    NODE_ID = "LayerStackPremultiply"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Premultiply Alpha",
            category=ALPHA_CATEGORY,
            description="Straight RGB to premultiplied RGB (colour times alpha).",
            inputs=[image_input(), alpha_input()],
            outputs=[io.Image.Output(display_name="image", tooltip="Premultiplied RGB.")],
        )

    @classmethod
    def execute(cls, image, alpha=None) -> io.NodeOutput:
        rgb, a = rgb_and_alpha(image, alpha, cls.NODE_ID, alpha_required=True)
        return io.NodeOutput(alpha_tools.premultiply(rgb, a))


class LayerStackUnpremultiply(LayerStackNode):
    NODE_ID = "LayerStackUnpremultiply"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Unpremultiply Alpha",
            category=ALPHA_CATEGORY,
            description="Premultiplied RGB to straight RGB (colour divided by alpha; black where alpha is 0).",
            inputs=[image_input("Premultiplied RGB, or RGBA (alpha last)."), alpha_input()],
            outputs=[io.Image.Output(display_name="image", tooltip="Straight RGB.")],
        )

    @classmethod
    def execute(cls, image, alpha=None) -> io.NodeOutput:
        rgb, a = rgb_and_alpha(image, alpha, cls.NODE_ID, alpha_required=True)
        return io.NodeOutput(alpha_tools.unpremultiply(rgb, a))


def size_inputs() -> list[io.Input]:
    return [
        io.Int.Input("width", default=1024, min=0, max=MAX_RESOLUTION, step=8,
                     tooltip="Target width; 0 = follow the height, keeping the aspect ratio."),
        io.Int.Input("height", default=1024, min=0, max=MAX_RESOLUTION, step=8,
                     tooltip="Target height; 0 = follow the width, keeping the aspect ratio."),
        io.Combo.Input("method", options=list(alpha_tools.RESIZE_METHODS), default="lanczos",
                       tooltip="Resampling filter, used for colour and alpha alike."),
    ]


def target_size(width: int, height: int, source_height: int, source_width: int, node: str) -> tuple[int, int]:
    if width <= 0 and height <= 0:
        raise node_error(node, "width", "a positive width or height (0 only for one of them)", "both 0")
    if width <= 0:
        width = max(1, round(source_width * height / source_height))
    if height <= 0:
        height = max(1, round(source_height * width / source_width))
    return height, width


class LayerStackResizeRGBA(LayerStackNode):
    NODE_ID = "LayerStackResizeRGBA"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Resize RGBA (no halos)",
            category=ALPHA_CATEGORY,
            description="Resizes RGB and alpha together without dark or light edge halos: transparent pixels are "
            "first filled with colours extended from the visible ones, then colour and alpha are resampled alike.",
            inputs=[image_input(), alpha_input(), *size_inputs()],
            outputs=rgba_outputs("The resized picture (transparent areas hold extended colours)"),
        )

    @classmethod
    def execute(cls, image, width, height, method, alpha=None) -> io.NodeOutput:
        node = cls.NODE_ID
        rgb, a = rgb_and_alpha(image, alpha, node, alpha_required=True)
        size = target_size(width, height, rgb.shape[1], rgb.shape[2], node)
        return io.NodeOutput(*alpha_tools.resize_rgba(rgb, a, *size, method=method))


class LayerStackResizeStack(LayerStackNode):
    NODE_ID = "LayerStackResizeStack"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Resize Layer Stack (no halos)",
            category=ALPHA_CATEGORY,
            description="Resizes every layer of a stack the way 'Resize RGBA (no halos)' does.",
            inputs=[LayerStackType.Input("stack", tooltip=STACK_TOOLTIP), *size_inputs()],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, stack, width, height, method) -> io.NodeOutput:
        node = cls.NODE_ID
        stack = check_stack(stack, node)
        size = target_size(width, height, stack.height, stack.width, node)

        def resized(layer: Layer) -> Layer:
            rgb, alpha = alpha_tools.resize_rgba(layer.rgb, layer.alpha, *size, method=method)
            return layer.replaced(rgb=rgb, alpha=alpha)

        return io.NodeOutput(LayerStack(tuple(resized(layer) for layer in stack.layers)))


class LayerStackCleanEdges(LayerStackNode):
    NODE_ID = "LayerStackCleanEdges"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Clean Edge Colours",
            category=ALPHA_CATEGORY,
            description="Removes colour fringes: edge pixels less opaque than the threshold take colours extended "
            "from the solid interior. Optionally fills fully transparent pixels the same way (LayerDiffuse's "
            "padded-RGB convention). Alpha is not changed.",
            inputs=[
                image_input(), alpha_input(),
                io.Float.Input("threshold", default=0.9, min=0.01, max=1.0, step=0.01,
                               tooltip="Pixels at least this opaque are trusted and kept as they are."),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.05,
                               tooltip="How far edge colours move to the interior colour: 0 = unchanged, 1 = replaced."),
                advanced(io.Boolean.Input, "fill_transparent", default=True,
                         tooltip="Also give fully transparent pixels extended colours instead of whatever "
                         "they held."),
            ],
            outputs=rgba_outputs("The cleaned picture (alpha unchanged)"),
        )

    @classmethod
    def execute(cls, image, threshold, strength, fill_transparent, alpha=None) -> io.NodeOutput:
        rgb, a = rgb_and_alpha(image, alpha, cls.NODE_ID, alpha_required=True)
        cleaned = alpha_tools.clean_edge_colors(rgb, a, threshold=threshold, strength=strength)
        if fill_transparent:
            cleaned = alpha_tools.fill_transparent(cleaned, a)
        return io.NodeOutput(cleaned, a)


def backdrop_input(extra: tuple[str, ...] = ()) -> io.Combo.Input:
    return io.Combo.Input("backdrop", options=[*compositing.BACKDROPS, *extra], default="checkerboard",
                          tooltip="What transparent areas show.")


class LayerStackFlatten(LayerStackNode):
    NODE_ID = "LayerStackFlatten"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Flatten RGBA onto Backdrop",
            category=ALPHA_CATEGORY,
            description="Draws straight RGBA over an opaque checkerboard, black, white or grey backdrop.",
            inputs=[image_input(), alpha_input(), backdrop_input()],
            outputs=[io.Image.Output(display_name="image", tooltip="Opaque RGB.")],
        )

    @classmethod
    def execute(cls, image, backdrop, alpha=None) -> io.NodeOutput:
        rgb, a = rgb_and_alpha(image, alpha, cls.NODE_ID, alpha_required=True)
        return io.NodeOutput(compositing.flatten(rgb, a, backdrop))


class LayerStackPreviewOnBackdrop(LayerStackNode):
    NODE_ID = "LayerStackPreviewOnBackdrop"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Preview RGBA on Backdrop",
            category=ALPHA_CATEGORY,
            description="Shows transparent images on a checkerboard, black, white or grey backdrop, on all of "
            "checkerboard/black/white side by side ('all'), or as RGBA PNGs ('transparent').",
            inputs=[image_input(), alpha_input(), backdrop_input(extra=("all", "transparent"))],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, image, backdrop, alpha=None) -> io.NodeOutput:
        rgb, a = rgb_and_alpha(image, alpha, cls.NODE_ID, alpha_required=True)
        if backdrop == "transparent":
            pictures = torch.cat([rgb, a.unsqueeze(-1)], dim=-1)
        elif backdrop == "all":
            pictures = torch.cat([compositing.flatten(rgb, a, name) for name in ("checkerboard", "black", "white")],
                                 dim=2)
        else:
            pictures = compositing.flatten(rgb, a, backdrop)
        return io.NodeOutput(ui=ui.PreviewImage(pictures, cls=cls))


NODES = [
    LayerStackPremultiply, LayerStackUnpremultiply, LayerStackResizeRGBA, LayerStackResizeStack,
    LayerStackCleanEdges, LayerStackFlatten, LayerStackPreviewOnBackdrop,
]
