"""Layer stacks <-> ComfyUI core's LAYERS documents (the input of core's *Create Layered Image* compositor).

Registered only where this ComfyUI defines the LAYERS socket type (io.Layers); on older hosts NODES is empty and
nothing else changes. The document layout is checked at run time (layer_stack/core_layers.py), since core marks the
type experimental.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..errors import LayerStackError
from ..layer_stack import core_layers
from .categories import STACK_CATEGORY
from .common import STACK_TOOLTIP, LayerStackNode, LayerStackType, check_stack, node_errors, schema

HAS_LAYERS_TYPE = hasattr(io, "Layers")
LAYERS_TOOLTIP = "ComfyUI's layer document (LAYERS): placed, named raster layers for Create Layered Image."


class LayerStackToCoreLayers(LayerStackNode):
    NODE_ID = "LayerStackToCoreLayers"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Stack to LAYERS",
            category=STACK_CATEGORY,
            description="One picture of a stack as ComfyUI's LAYERS document: one raster layer per stack layer "
            "with its name, opacity, visibility and z-order, on the stack's canvas (e.g. for Create Layered "
            "Image).",
            inputs=[
                LayerStackType.Input("stack", tooltip=STACK_TOOLTIP),
                io.Int.Input("picture", default=0, min=0, max=4095,
                             tooltip="Which picture of the stack's batch (a LAYERS document holds one)."),
                io.Boolean.Input("crop_to_content", default=True,
                                 tooltip="Each layer holds only the box around its visible pixels, placed at "
                                 "its x/y offset. Off: every layer covers the whole canvas at (0, 0)."),
            ],
            outputs=[io.Layers.Output(display_name="layers", tooltip=LAYERS_TOOLTIP)],
        )

    @classmethod
    def execute(cls, stack, picture, crop_to_content) -> io.NodeOutput:
        node = cls.NODE_ID
        stack = check_stack(stack, node)
        with node_errors(node):
            if picture >= stack.batch_size:
                raise LayerStackError(f"input 'picture' expected 0..{stack.batch_size - 1} (the stack's batch), "
                                      f"got {picture}.")
            return io.NodeOutput(core_layers.stack_to_document(stack, picture, crop_to_content))


class LayerStackFromCoreLayers(LayerStackNode):
    NODE_ID = "LayerStackFromCoreLayers"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Layer Stack from LAYERS",
            category=STACK_CATEGORY,
            description="ComfyUI's LAYERS document as a stack: layers bottom to top by z_index, placed at x/y "
            "on the document's canvas, with names, opacity and visibility. Blend modes other than normal are "
            "refused; rotation, flips and display sizes are refused unless bake_transforms is on.",
            inputs=[
                io.Layers.Input("layers", tooltip=LAYERS_TOOLTIP),
                io.Boolean.Input("bake_transforms", default=False,
                                 tooltip="Resample rotated, flipped or resized layers into plain pixels on the "
                                 "canvas (bilinear). Off: such layers are refused with a message."),
            ],
            outputs=[LayerStackType.Output(display_name="stack", tooltip=STACK_TOOLTIP)],
        )

    @classmethod
    def execute(cls, layers, bake_transforms) -> io.NodeOutput:
        with node_errors(cls.NODE_ID):
            return io.NodeOutput(core_layers.document_to_stack(layers, bake_transforms))



# The classes refer to io.Layers only inside their methods, so they are defined (not registered) on any host.
NODES = [LayerStackToCoreLayers, LayerStackFromCoreLayers] if HAS_LAYERS_TYPE else []
