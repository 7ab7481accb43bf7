"""Flux LayerDiffuse: the layer LoRA as a node. The transparent VAE of Flux is a family of the transparent VAE nodes.

A node rather than core LoraLoaderModelOnly plus a note: the core loader places what it recognises and only logs the
rest, and a check that the user must remember to run is no check. This node applies the same ComfyUI LoRA patches
after checking that every tensor maps onto the model (models/flux_lora.py), and finds the file where Flux users
keep it (layer_model, then loras).
"""

from __future__ import annotations

from comfy_api.latest import io

from ..models import files, flux_lora, registry
from .categories import FLUX_CATEGORY
from .common import LayerStackNode, schema

LAYER_LORA = registry.get("layerlora")


class ApplyFluxLayerLoRA(LayerStackNode):
    NODE_ID = "LayerStackApplyFluxLayerLoRA"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Apply Flux Layer LoRA",
            category=FLUX_CATEGORY,
            description=f"Makes a FLUX.1-dev model generate transparent foregrounds: applies {LAYER_LORA.filename} "
            "(RedAIGC/Flux-version-LayerDiffuse) with ComfyUI's LoRA patches, after checking that every tensor of "
            "the file fits the model. Decode with Load Transparent VAE (Flux) + Transparent Decode.",
            inputs=[
                io.Model.Input("model", tooltip="A FLUX.1-dev model. It is cloned; the input model stays untouched."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="LoRA strength; the reference uses 1.0."),
                io.Boolean.Input("allow_download", default=False,
                                 tooltip=f"Download {LAYER_LORA.filename} into the first layer_model folder if it "
                                         "is in no layer_model or loras folder."),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="The patched clone of the model.")],
        )

    @classmethod
    def execute(cls, model, strength: float, allow_download: bool) -> io.NodeOutput:
        node = cls.NODE_ID
        flux_lora.require_flux_dev(model, node=node)  # before reading 1.2 GB for nothing
        loaded = files.load_layer_file(LAYER_LORA, download=allow_download)
        return io.NodeOutput(flux_lora.apply_layer_lora(model, loaded.state_dict, strength, node=node,
                                                        source=loaded.path))


NODES = [ApplyFluxLayerLoRA]
