"""Nodes that build, inspect, composite and preview layer stacks (socket type LAYER_STACK).

The stack convention (bottom-to-top order, straight alpha, 1 = opaque, hidden layers) is in layer_stack/stack.py.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..errors import node_error
from ..layer_stack import compositing, editing, matting
from ..layer_stack.inputs import check_image, rgb_and_alpha, same_size_and_batch
from ..layer_stack.stack import LayerStack, make_layer
from ..layer_stack.text2layer import text2layer_stack
from .categories import STACK_CATEGORY
from .common import (
    MASK_IS_LOADIMAGE,
    STACK_TOOLTIP,
    LayerStackNode,
    LayerStackType,
    advanced,
    check_stack,
    mask_meaning_input,
    node_errors,
    rgba_outputs,
    schema,
)

MASK_MEANING_TOOLTIP = (
    "How to read the connected MASK. 'alpha (1 = opaque)': the LayerStack decode nodes' MASK and Text2Layer's layer "
    "mask m. 'LoadImage mask (1 = transparent)': the MASK of ComfyUI's LoadImage and SplitImageWithAlpha, which is "
    "1 - alpha."
)


class LayerStackFromText2Layer(LayerStackNode):
    """Text2Layer's (foreground, background, mask) contract as a stack; accepts decode outputs or plain IMAGE/MASK."""

    NODE_ID = "LayerStackFromText2Layer"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Stack (Foreground + Background)",
            category=STACK_CATEGORY,
            description="Builds Text2Layer's two-layer image as a stack: background (opaque, bottom), foreground with "
            "its mask as alpha, and optionally the model's own blended image and the mask as hidden layers. The "
            "stack's composite is mask*foreground + (1 - mask)*background.",
            inputs=[
                io.Image.Input("foreground", tooltip="Foreground colours: RGB with a mask, or RGBA (alpha last)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="The foreground's mask; see mask_meaning. Leave unconnected for an RGBA "
                              "foreground."),
                mask_meaning_input(MASK_MEANING_TOOLTIP),
                io.Image.Input("background", optional=True, tooltip="Background (opaque); same size as foreground."),
                io.Image.Input("blended", optional=True,
                               tooltip="The model's own blended image (e.g. LayerDiffuse fg2ble, joint); kept as a "
                               "hidden layer for reference."),
                advanced(io.Boolean.Input, "include_mask_layer", default=True,
                         tooltip="Also keep the mask as a hidden grey layer named 'mask' (for PSD files)."),
            ],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, foreground, mask_meaning, include_mask_layer, mask=None, background=None,
                blended=None) -> io.NodeOutput:
        node = cls.NODE_ID
        fg_rgb, fg_alpha = rgb_and_alpha(foreground, mask, node, "foreground", "mask",
                                         mask_is_inverted=mask_meaning == MASK_IS_LOADIMAGE, alpha_required=True)
        images = {"foreground": fg_rgb, "mask": fg_alpha}
        if background is not None:
            images["background"], _ = rgb_and_alpha(background, None, node, "background")
        if blended is not None:
            images["blended"], _ = rgb_and_alpha(blended, None, node, "blended")
        images = same_size_and_batch(images, node, reference="foreground")
        stack = text2layer_stack(images["foreground"], images["mask"], images.get("background"),
                                 images.get("blended"), include_mask_layer)
        return io.NodeOutput(stack)


class LayerStackAddLayer(LayerStackNode):
    """Puts one IMAGE (+ MASK) on top of a stack, or starts a stack; chain it for any number of layers."""

    NODE_ID = "LayerStackAddLayer"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Add Layer to Stack",
            category=STACK_CATEGORY,
            description="Adds an image as a new top layer of a stack (or starts a new stack when none is connected). "
            "The alpha comes from the mask, or from an RGBA image, or else the layer is opaque.",
            inputs=[
                LayerStackType.Input("stack", optional=True, tooltip="The stack to add to; empty = a new stack."),
                io.Image.Input("image", tooltip="The layer's colours: RGB, or RGBA (alpha last)."),
                io.Mask.Input("mask", optional=True, tooltip="The layer's mask; see mask_meaning."),
                mask_meaning_input(MASK_MEANING_TOOLTIP),
                io.String.Input("name", default="layer", tooltip="Layer name (unique in the stack; PSD layer name)."),
                io.Boolean.Input("visible", default=True,
                                 tooltip="Hidden layers are kept (and written to PSD) but not composited."),
            ],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, image, mask_meaning, name, visible, stack=None, mask=None) -> io.NodeOutput:
        node = cls.NODE_ID
        rgb, alpha = rgb_and_alpha(image, mask, node, "image", "mask",
                                   mask_is_inverted=mask_meaning == MASK_IS_LOADIMAGE)
        if not name.strip():
            raise node_error(node, "name", "a non-empty layer name", repr(name))
        if stack is None:
            return io.NodeOutput(LayerStack((make_layer(name, rgb, alpha, visible),)))
        stack = check_stack(stack, node)
        if name in stack.names:
            raise node_error(node, "name", f"a name not already in the stack {stack.names}", repr(name))
        if (rgb.shape[1], rgb.shape[2]) != (stack.height, stack.width):
            raise node_error(node, "image", f"height x width {stack.height}x{stack.width} (the stack's size)",
                             f"{rgb.shape[1]}x{rgb.shape[2]}")
        stack, rgb, alpha = _match_stack_batch(stack, rgb, alpha, node)
        return io.NodeOutput(stack.with_layer_on_top(make_layer(name, rgb, alpha, visible)))


class LayerStackComposite(LayerStackNode):
    NODE_ID = "LayerStackComposite"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Composite Layer Stack",
            category=STACK_CATEGORY,
            description="Flattens the visible layers, bottom to top, with Porter-Duff 'over' on straight alpha. "
            "For a foreground over an opaque background this is mask*foreground + (1 - mask)*background.",
            inputs=[LayerStackType.Input("stack", tooltip=STACK_TOOLTIP)],
            outputs=rgba_outputs("The composite"),
        )

    @classmethod
    def execute(cls, stack) -> io.NodeOutput:
        rgb, alpha = compositing.composite(check_stack(stack, cls.NODE_ID))
        return io.NodeOutput(rgb, alpha)


class LayerStackGetLayer(LayerStackNode):
    NODE_ID = "LayerStackGetLayer"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Get Layer from Stack",
            category=STACK_CATEGORY,
            description="Takes one layer out of a stack by name, as RGB + alpha.",
            inputs=[
                LayerStackType.Input("stack", tooltip=STACK_TOOLTIP),
                io.String.Input("name", default="foreground",
                                tooltip="The layer's name, e.g. foreground, background, blended, mask."),
            ],
            outputs=rgba_outputs("The layer"),
        )

    @classmethod
    def execute(cls, stack, name) -> io.NodeOutput:
        node = cls.NODE_ID
        stack = check_stack(stack, node)
        if name not in stack.names:
            raise node_error(node, "name", f"one of the stack's layer names {stack.names}", repr(name))
        layer = stack.get(name)
        return io.NodeOutput(layer.rgb, layer.alpha)


class LayerStackPreview(LayerStackNode):
    NODE_ID = "LayerStackPreview"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Preview Layer Stack",
            category=STACK_CATEGORY,
            description="Shows the composite and then every layer (top to bottom, hidden ones too) on a backdrop.",
            inputs=[
                LayerStackType.Input("stack", tooltip=STACK_TOOLTIP),
                io.Combo.Input("backdrop", options=list(compositing.BACKDROPS), default="checkerboard",
                               tooltip="What transparent areas show."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, stack, backdrop) -> io.NodeOutput:
        stack = check_stack(stack, cls.NODE_ID)
        pictures = [compositing.composite(stack)] + [(layer.rgb, layer.alpha) for layer in reversed(stack.layers)]
        # Picture by picture: composite, then its layers, so each batch item's previews sit together.
        flat = torch.stack([compositing.flatten(rgb, alpha, backdrop) for rgb, alpha in pictures], dim=1)
        return io.NodeOutput(ui=ui.PreviewImage(flat.flatten(0, 1), cls=cls))


DROP_FIRST_FRAME_TOOLTIP = (
    "Drop frame 0 before building the stack. Qwen-Image-Layered decodes layers + 1 frames: frame 0 is the "
    "regenerated whole picture, not a layer, and should be dropped; frames 1.. are the layers, bottom first. Leave "
    "off when a 'Latent Cut' (index 1) already removed it."
)
ORDER_TOOLTIP = (
    "Order of the frames: 'bottom to top' (frame 0 = bottom layer; Qwen-Image-Layered and ComfyUI's LAYERS z-order) "
    "or 'top to bottom'."
)


def order_input() -> io.Combo.Input:
    return io.Combo.Input("order", options=list(editing.ORDERS), default=editing.BOTTOM_TO_TOP, tooltip=ORDER_TOOLTIP)


class LayerStackFromBatch(LayerStackNode):
    """An RGBA image batch (a layered generator's output) as a stack, one layer per frame."""

    NODE_ID = "LayerStackFromBatch"


    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Stack from RGBA Batch",
            category=STACK_CATEGORY,
            description="Makes one layer per frame of an image batch: RGBA (alpha last, e.g. Qwen-Image-Layered's "
            "decoded layers), or RGB with a MASK. The stack holds one picture.",
            inputs=[
                io.Image.Input("images", tooltip="The layers as a batch: RGBA, or RGB with a mask."),
                io.Mask.Input("mask", optional=True, tooltip="Alpha per frame for RGB images; see mask_meaning."),
                mask_meaning_input(MASK_MEANING_TOOLTIP),
                order_input(),
                io.Boolean.Input("drop_first_frame", default=False, tooltip=DROP_FIRST_FRAME_TOOLTIP),
                io.String.Input("names", default="",
                                tooltip="Layer names, bottom to top, separated by commas; one per layer. Empty = "
                                "layer_0, layer_1, ... from the bottom."),
            ],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, images, mask_meaning, order, drop_first_frame, names, mask=None) -> io.NodeOutput:
        node = cls.NODE_ID
        rgb, alpha = rgb_and_alpha(images, mask, node, "images", "mask",
                                   mask_is_inverted=mask_meaning == MASK_IS_LOADIMAGE)
        with node_errors(node):
            return io.NodeOutput(editing.stack_from_frames(rgb, alpha, names, order, drop_first_frame))


class LayerStackToBatch(LayerStackNode):
    NODE_ID = "LayerStackToBatch"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Stack to RGBA Batch",
            category=STACK_CATEGORY,
            description="The stack's layers as one RGBA image batch (alpha last, 1 = opaque), one frame per layer; "
            "for several pictures, picture by picture. A layer's opacity is multiplied into its alpha.",
            inputs=[
                LayerStackType.Input("stack", tooltip=STACK_TOOLTIP),
                order_input(),
                advanced(io.Boolean.Input, "include_hidden", default=True,
                         tooltip="Also output hidden layers (off = only the layers the composite uses)."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="RGBA frames [layers, height, width, 4]."),
                io.String.Output(display_name="names", tooltip="The frames' layer names, comma-separated."),
            ],
        )

    @classmethod
    def execute(cls, stack, order, include_hidden) -> io.NodeOutput:
        node = cls.NODE_ID
        stack = check_stack(stack, node)
        with node_errors(node):
            frames, names = editing.stack_to_frames(stack, order, include_hidden)
        return io.NodeOutput(frames, ", ".join(names))


def layer_name_input(tooltip: str = "The layer's name.") -> io.String.Input:
    return io.String.Input("name", default="layer_0", tooltip=tooltip)


class LayerStackReplaceLayer(LayerStackNode):
    NODE_ID = "LayerStackReplaceLayer"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Replace Layer in Stack",
            category=STACK_CATEGORY,
            description="Puts an edited image in place of one layer (same place, name, opacity and visibility). "
            "The image must have the stack's size. Without a mask or alpha channel the layer keeps its alpha.",
            inputs=[
                LayerStackType.Input("stack", tooltip=STACK_TOOLTIP),
                layer_name_input("The layer to replace."),
                io.Image.Input("image", tooltip="The new colours: RGB (keeps the layer's alpha) or RGBA."),
                io.Mask.Input("mask", optional=True, tooltip="The new alpha; see mask_meaning."),
                mask_meaning_input(MASK_MEANING_TOOLTIP),
            ],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, stack, name, image, mask_meaning, mask=None) -> io.NodeOutput:
        node = cls.NODE_ID
        stack = check_stack(stack, node)
        rgb, alpha = rgb_and_alpha(image, mask, node, "image", "mask",
                                   mask_is_inverted=mask_meaning == MASK_IS_LOADIMAGE)
        with node_errors(node):
            old = editing.layer_named(stack, name)
        if (rgb.shape[1], rgb.shape[2]) != (stack.height, stack.width):
            raise node_error(node, "image", f"height x width {stack.height}x{stack.width} (the stack's size)",
                             f"{rgb.shape[1]}x{rgb.shape[2]}")
        if mask is None and image.shape[-1] == 3:  # an RGB edit keeps the layer's alpha
            n = max(rgb.shape[0], stack.batch_size)
            alpha = old.alpha.expand(n, -1, -1) if old.alpha.shape[0] == 1 else old.alpha
            rgb = rgb.expand(n, -1, -1, -1) if rgb.shape[0] == 1 else rgb
        stack, rgb, alpha = _match_stack_batch(stack, rgb, alpha, node)
        with node_errors(node):
            return io.NodeOutput(editing.with_layer(stack, name, make_layer(name, rgb, alpha, old.visible,
                                                                            old.opacity)))


class LayerStackSetLayer(LayerStackNode):
    NODE_ID = "LayerStackSetLayer"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Set Layer Opacity / Visibility",
            category=STACK_CATEGORY,
            description="Sets one layer's opacity and visibility, and optionally renames it.",
            inputs=[
                LayerStackType.Input("stack", tooltip=STACK_TOOLTIP),
                layer_name_input(),
                io.Float.Input("opacity", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Layer opacity (multiplies its alpha in the composite; PSD/ORA layer opacity)."),
                io.Boolean.Input("visible", default=True, tooltip="Hidden layers are kept but not composited."),
                io.String.Input("new_name", default="", tooltip="A new name for the layer; empty = keep the name."),
            ],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, stack, name, opacity, visible, new_name) -> io.NodeOutput:
        node = cls.NODE_ID
        stack = check_stack(stack, node)
        with node_errors(node):
            return io.NodeOutput(editing.set_properties(stack, name, opacity, visible, new_name))


class LayerStackReorder(LayerStackNode):
    NODE_ID = "LayerStackReorder"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Reorder Layers",
            category=STACK_CATEGORY,
            description="Puts the layers in a new order, given as all layer names bottom to top, or reverses it.",
            inputs=[
                LayerStackType.Input("stack", tooltip=STACK_TOOLTIP),
                io.String.Input("order", default="",
                                tooltip="Every layer name exactly once, bottom to top, separated by commas. Empty = "
                                "reverse the current order."),
            ],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, stack, order) -> io.NodeOutput:
        node = cls.NODE_ID
        stack = check_stack(stack, node)
        if not order.strip():
            return io.NodeOutput(editing.reversed_stack(stack))
        with node_errors(node):
            return io.NodeOutput(editing.reordered(stack, order))


ESTIMATE_COLORS = "estimate edge colours (blur-fusion)"
NAIVE_CUT = "naive cut (image colours)"


class LayerStackSplitByMask(LayerStackNode):
    NODE_ID = "LayerStackSplitByMask"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Split Image by Mask (Foreground + Background)",
            category=STACK_CATEGORY,
            description="Splits an image by a mask from any source (background removal, a segmenter, a painted "
            "mask) into a stack: background (bottom) with a transparent hole where the foreground is, and the "
            "foreground with the mask as alpha. Edge colours are estimated (blur-fusion, Forte and Pitie 2021) so "
            "the cut-out carries no fringe of the old background.",
            inputs=[
                io.Image.Input("image", tooltip="The picture to split (RGB; the alpha of an RGBA image is ignored)."),
                io.Mask.Input("mask", tooltip="The foreground's mask; see mask_meaning."),
                mask_meaning_input(MASK_MEANING_TOOLTIP),
                io.Combo.Input("method", options=[ESTIMATE_COLORS, NAIVE_CUT], default=ESTIMATE_COLORS,
                               tooltip="How colours on the soft edge are found: estimated foreground and background "
                               "colours (no halo), or the image's own colours in both layers."),
                advanced(io.Float.Input, "hole_threshold", default=1.0, min=0.01, max=1.0, step=0.01,
                         tooltip="The background is transparent (a hole, e.g. for an inpainting model) where "
                         "the foreground is at least this opaque. 1 = only under the fully opaque foreground, "
                         "so the two layers together give back the image; lower it to cover the soft edge too."),
            ],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, image, mask, mask_meaning, method, hole_threshold) -> io.NodeOutput:
        node = cls.NODE_ID
        rgb = check_image(image, node, "image")[..., :3]
        rgb, alpha = rgb_and_alpha(rgb, mask, node, "image", "mask",
                                   mask_is_inverted=mask_meaning == MASK_IS_LOADIMAGE)
        return io.NodeOutput(matting.split_by_mask(rgb, alpha, method == ESTIMATE_COLORS, hole_threshold))


def _match_stack_batch(stack: LayerStack, rgb: torch.Tensor, alpha: torch.Tensor, node: str):
    """A batch-1 side is repeated to the other side's batch size."""
    if rgb.shape[0] == stack.batch_size:
        return stack, rgb, alpha
    if rgb.shape[0] == 1:
        n = stack.batch_size
        return stack, rgb.expand(n, -1, -1, -1), alpha.expand(n, -1, -1)
    if stack.batch_size == 1:
        n = rgb.shape[0]
        layers = tuple(layer.replaced(rgb=layer.rgb.expand(n, -1, -1, -1).contiguous(),
                                      alpha=layer.alpha.expand(n, -1, -1).contiguous()) for layer in stack.layers)
        return LayerStack(layers), rgb, alpha
    raise node_error(node, "image", f"batch size 1 or {stack.batch_size} (the stack's)", str(rgb.shape[0]))


NODES = [
    LayerStackFromText2Layer, LayerStackAddLayer, LayerStackFromBatch, LayerStackToBatch, LayerStackReplaceLayer,
    LayerStackSetLayer, LayerStackReorder, LayerStackSplitByMask, LayerStackComposite, LayerStackGetLayer, LayerStackPreview,
]
