"""Nodes about the official layer files themselves."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..models import files, registry
from .categories import CATEGORY
from .common import LayerStackNode, schema


class FetchLayerFile(LayerStackNode):
    """Makes sure an official file is present, downloading it only when explicitly allowed."""

    NODE_ID = "LayerStackFetchLayerFile"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Fetch Layer File",
            category=CATEGORY,
            description="Checks that an official LayerDiffuse file is in a layer_model folder and parses with the "
            "expected keys. Downloads it from the official URL only when 'allow_download' is on. A pickled file "
            "(Flux TransparentVAE.pth) can be converted to safetensors once.",
            inputs=[
                io.Combo.Input("file", options=[f.filename for f in registry.FILES],
                               tooltip="The official file (LayerDiffusion/layerdiffusion-v1, or "
                                       "RedAIGC/Flux-version-LayerDiffuse for the Flux ones)."),
                io.Boolean.Input("allow_download", default=False,
                                 tooltip="Download the file into the first layer_model folder if it is missing."),
                io.Boolean.Input("convert_to_safetensors", default=False, optional=True,
                                 tooltip="For TransparentVAE.pth: write TransparentVAE.safetensors (decoder + encoder "
                                         "only) beside it, so later loads read no pickle. Never overwrites."),
            ],
            outputs=[io.String.Output(display_name="path", tooltip="Where the file is.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, file: str, allow_download: bool, convert_to_safetensors: bool = False) -> io.NodeOutput:
        entry = registry.get(file)
        loaded = files.load_layer_file(entry, download=allow_download)  # validates; raises naming the problem
        path = loaded.path
        if convert_to_safetensors:
            path = files.convert_to_safetensors(entry, loaded.path, loaded.state_dict)
        return io.NodeOutput(path, ui=ui.PreviewText(f"{entry.describe()}: {path}"))


NODES = [FetchLayerFile]
