"""Nodes about the official layer files themselves."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..models import files, registry
from .common import CATEGORY, LayerStackNode, schema


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
            "expected keys. Downloads it from the official URL only when 'allow_download' is on.",
            inputs=[
                io.Combo.Input("file", options=[f.filename for f in registry.FILES],
                               tooltip="The official LayerDiffusion/layerdiffusion-v1 file."),
                io.Boolean.Input("allow_download", default=False,
                                 tooltip="Download the file into the first layer_model folder if it is missing."),
            ],
            outputs=[io.String.Output(display_name="path", tooltip="Where the file is.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, file: str, allow_download: bool) -> io.NodeOutput:
        entry = registry.get(file)
        path = files.load_layer_file(entry, download=allow_download).path  # validates; raises naming the problem
        return io.NodeOutput(path, ui=ui.PreviewText(f"{entry.describe()}: {path}"))


NODES = [FetchLayerFile]
