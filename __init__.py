"""LayerStack: layered image generation for ComfyUI (LayerDiffuse latent transparency and Text2Layer-style stacks).

ComfyUI imports this file; it registers the `layer_model` model folder and the pack's V3 nodes.
"""

from __future__ import annotations

import os

from comfy_api.latest import ComfyExtension, io

from .models.registry import FOLDER_NAME


def register_layer_model_folder() -> None:
    """Add models/layer_model after any folder a user's extra_model_paths.yaml already registered."""
    import folder_paths

    folder_paths.add_model_folder_path(FOLDER_NAME, os.path.join(folder_paths.models_dir, FOLDER_NAME))
    paths, extensions = folder_paths.folder_names_and_paths[FOLDER_NAME]
    # A YAML-made entry has an empty extension set (= every file); the official files are all safetensors.
    folder_paths.folder_names_and_paths[FOLDER_NAME] = (paths, set(extensions) | {".safetensors"})


register_layer_model_folder()


class LayerStackExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .nodes import all_nodes

        return all_nodes()


async def comfy_entrypoint() -> LayerStackExtension:
    return LayerStackExtension()
