"""LayerStack: layered image generation for ComfyUI (LayerDiffuse latent transparency and Text2Layer-style stacks).

ComfyUI imports this file; it registers the `layer_model` model folder and the pack's V3 nodes, and at start-up puts
the templates' sample pictures into ComfyUI's input folder.
"""

from __future__ import annotations

import logging
import os
import shutil

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
WEB_DIRECTORY = "./web"  # the Settings entry for downloads and the PSD/OpenRaster download links (web/layerstack.js)


EXAMPLE_INPUTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example_workflows", "input")


def copy_example_inputs() -> None:
    """Copy the templates' sample pictures into the input folder, so Load Image finds them; never over a user's file."""
    import folder_paths

    target = folder_paths.get_input_directory()
    copied = []
    for name in sorted(os.listdir(EXAMPLE_INPUTS)):
        destination = os.path.join(target, name)
        try:
            with open(destination, "xb") as out, open(os.path.join(EXAMPLE_INPUTS, name), "rb") as src:
                shutil.copyfileobj(src, out)  # "x": a file that already exists (the user's, or ours) is left alone
        except FileExistsError:
            continue
        except OSError as e:  # a read-only input folder must not stop the server; the templates then say what to load
            logging.warning("LayerStack: could not copy the sample picture %s into %s: %s", name, target, e)
            return
        copied.append(name)
    if copied:
        logging.info("LayerStack: copied the templates' sample pictures into %s: %s", target, ", ".join(copied))


class LayerStackExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .nodes import all_nodes

        return all_nodes()


async def comfy_entrypoint() -> LayerStackExtension:
    copy_example_inputs()  # here, not at import: only a starting server has its input folder set
    return LayerStackExtension()
