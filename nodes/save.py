"""Output nodes that write deliverables: layered PSD and OpenRaster files and RGBA PNG files, into ComfyUI's output
folder.

Names follow ComfyUI's SaveImage: '<prefix>_<counter:05>_.<ext>', the prefix may contain subfolders and
%width% / %height% / %year% ... / %batch_num%. A prefix that would leave the output folder is refused, and an existing
file is never replaced (the counter moves on instead).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import BinaryIO

import folder_paths
import torch
from comfy.cli_args import args
from comfy_api.latest import io, ui

from ..errors import LayerStackError
from ..layer_stack import compositing, openraster, psd_png
from ..layer_stack.inputs import rgb_and_alpha
from ..layer_stack.output_paths import check_folder, check_prefix, write_new_file
from ..layer_stack.stack import LayerStack
from .categories import SAVE_CATEGORY
from .common import (
    STACK_TOOLTIP,
    LayerStackNode,
    LayerStackType,
    alpha_input,
    check_stack,
    image_input,
    schema,
)

PREFIX_TOOLTIP = (
    "File name prefix inside the output folder; may include subfolders (e.g. 'LayerStack/portrait') and "
    "%width%, %height%, %year%, %month%, %day%, %batch_num%. Files are never overwritten."
)


def save_batch(
    node: str,
    prefix: str,
    extension: str,
    width: int,
    height: int,
    writers: list[Callable[[BinaryIO], None]],
) -> list[dict]:
    """Write one new file per writer into the output folder; returns SaveImage-style {filename, subfolder, type}."""
    output_dir = folder_paths.get_output_directory()
    check_prefix(prefix, output_dir, node)
    try:
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, output_dir, width, height)
    except Exception as e:  # ComfyUI raises a bare Exception for a prefix outside the output folder
        raise LayerStackError(f"{node}: input 'filename_prefix' was refused by ComfyUI: {e}") from e
    check_folder(folder, output_dir, node)
    results = []
    for batch_number, write in enumerate(writers):
        stem = filename.replace("%batch_num%", str(batch_number))
        name, used = write_new_file(folder, lambda n, stem=stem: f"{stem}_{n:05}_.{extension}", counter, write)
        results.append(ui.SavedResult(name, subfolder, io.FolderType.output))
        counter = used + 1
    return results


def png_text(cls: type[io.ComfyNode]) -> dict[str, str]:
    """The prompt/workflow text chunks ComfyUI's SaveImage embeds (none with --disable-metadata)."""
    if args.disable_metadata or cls.hidden is None:
        return {}
    text = {}
    if cls.hidden.prompt is not None:
        text["prompt"] = json.dumps(cls.hidden.prompt)
    for key, value in (cls.hidden.extra_pnginfo or {}).items():
        text[key] = json.dumps(value)
    return text


def layered_file_schema(node_id: str, display_name: str, description: str) -> io.Schema:
    return schema(
        node_id=node_id,
        display_name=display_name,
        category=SAVE_CATEGORY,
        description=description,
        inputs=[
            LayerStackType.Input("stack", tooltip=STACK_TOOLTIP),
            io.String.Input("filename_prefix", default="LayerStack/layers", tooltip=PREFIX_TOOLTIP),
        ],
        outputs=[],
        is_output_node=True,
    )


def save_layered_files(
    cls: type[io.ComfyNode], node: str, stack, prefix: str, extension: str,
    write: Callable[[LayerStack, int, BinaryIO], None],
) -> io.NodeOutput:
    """One layered file per picture. Browsers show neither PSD nor OpenRaster, and the frontend has no output key for
    a file to download: the files go under `extension` (/view serves them), which web/layerstack.js shows as download
    links on the node, and the composites under `images` as previews (docs/FORMATS.md#files-in-the-web-ui)."""
    stack = check_stack(stack, node)
    writers = [lambda out, i=i: write(stack, i, out) for i in range(stack.batch_size)]
    saved = save_batch(node, prefix, extension, stack.width, stack.height, writers)
    rgb, alpha = compositing.composite(stack)
    preview = ui.PreviewImage(torch.cat([rgb, alpha.unsqueeze(-1)], dim=-1), cls=cls)
    return io.NodeOutput(ui={**preview.as_dict(), extension: saved})


class LayerStackSavePSD(LayerStackNode):
    NODE_ID = "LayerStackSavePSD"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return layered_file_schema(
            cls.NODE_ID, "Save Layer Stack (PSD)",
            "Writes one layered PSD per picture: one pixel layer per stack layer (bottom to top, with its name, "
            "opacity, visibility, alpha and offset) and the composite as the merged image. Checked to open in GIMP "
            "2.10 (every layer, name and pixel) and Krita 5.1 (Photoshop and Photopea not tested). After a run the node shows "
            "a download link per file.")

    @classmethod
    def execute(cls, stack, filename_prefix) -> io.NodeOutput:
        return save_layered_files(cls, cls.NODE_ID, stack, filename_prefix, "psd", psd_png.write_psd)


class LayerStackSaveORA(LayerStackNode):
    NODE_ID = "LayerStackSaveORA"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return layered_file_schema(
            cls.NODE_ID, "Save Layer Stack (OpenRaster)",
            "Writes one OpenRaster (.ora) file per picture: one PNG layer per stack layer (name, opacity, "
            "visibility, offset), the composite as the merged image and a thumbnail. Checked to open in Krita 5.1 "
            "(MyPaint reads the format too, not tested; GIMP needs its OpenRaster plug-in). After a run the node "
            "shows a download link per file.")

    @classmethod
    def execute(cls, stack, filename_prefix) -> io.NodeOutput:
        return save_layered_files(cls, cls.NODE_ID, stack, filename_prefix, "ora", openraster.write_ora)


class LayerStackSaveRGBA(LayerStackNode):
    NODE_ID = "LayerStackSaveRGBA"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=cls.NODE_ID,
            display_name="Save RGBA PNG",
            category=SAVE_CATEGORY,
            description="Writes transparent PNGs (straight alpha) with the prompt and workflow embedded like "
            "ComfyUI's Save Image.",
            inputs=[
                image_input(), alpha_input(),
                io.String.Input("filename_prefix", default="LayerStack/rgba", tooltip=PREFIX_TOOLTIP),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, image, filename_prefix, alpha=None) -> io.NodeOutput:
        node = cls.NODE_ID
        rgb, a = rgb_and_alpha(image, alpha, node, alpha_required=True)
        text = png_text(cls)
        writers = [lambda out, i=i: psd_png.write_rgba_png(rgb[i], a[i], out, text) for i in range(rgb.shape[0])]
        saved = save_batch(node, filename_prefix, "png", rgb.shape[2], rgb.shape[1], writers)
        return io.NodeOutput(ui=ui.SavedImages(saved))


NODES = [LayerStackSavePSD, LayerStackSaveORA, LayerStackSaveRGBA]
