"""OpenRaster (.ora) encoding of stacks: the layered format Krita, GIMP and MyPaint open natively.

Layout (docs/FORMATS.md#openraster): a zip whose first entry is `mimetype` (the text image/openraster, stored
uncompressed, so the file type can be read at a fixed offset), one straight-alpha 8-bit PNG per layer under
`data/`, `stack.xml`, the composite as `mergedimage.png` and a preview of at most 256 px as
`Thumbnails/thumbnail.png`. stack.xml lists the layers top first (the reverse of the stack's order) with name,
x/y offset, opacity and visibility; like the PSD writer, each layer PNG holds only the box around its visible pixels.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from typing import BinaryIO

from PIL import Image

from .compositing import composite
from .psd_png import cropped_layers, rgba_image
from .stack import Layer, LayerStack

MIMETYPE = b"image/openraster"
THUMBNAIL_MAX = 256
# The version of the OpenRaster specification whose elements this file uses.
SPEC_VERSION = "0.0.5"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def stack_xml(width: int, height: int, placed: list[tuple[Layer, str, int, int]]) -> bytes:
    """stack.xml for (layer, PNG path, top, left) entries given bottom first."""
    image = ET.Element("image", {"version": SPEC_VERSION, "w": str(width), "h": str(height)})
    root_stack = ET.SubElement(image, "stack")
    for layer, source, top, left in reversed(placed):
        ET.SubElement(root_stack, "layer", {
            "name": layer.name, "src": source, "x": str(left), "y": str(top),
            "opacity": f"{layer.opacity:.6g}", "visibility": "visible" if layer.visible else "hidden",
            "composite-op": "svg:src-over",
        })
    return ET.tostring(image, encoding="utf-8", xml_declaration=True)


def write_ora(stack: LayerStack, index: int, out: BinaryIO) -> None:
    """Picture `index` of the stack as an OpenRaster file written to `out` (a seekable binary file)."""
    rgb, alpha = composite(stack.batch_item(index))
    merged = rgba_image(rgb[0], alpha[0])
    thumbnail = merged.copy()
    thumbnail.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX), Image.Resampling.LANCZOS)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        placed = []
        for number, (layer, image, top, left) in enumerate(cropped_layers(stack, index)):
            source = f"data/layer{number:03d}.png"
            # PNG data is compressed already; storing it saves time and nothing else.
            archive.writestr(source, _png(image), compress_type=zipfile.ZIP_STORED)
            placed.append((layer, source, top, left))
        archive.writestr("stack.xml", stack_xml(stack.width, stack.height, placed))
        archive.writestr("mergedimage.png", _png(merged), compress_type=zipfile.ZIP_STORED)
        archive.writestr("Thumbnails/thumbnail.png", _png(thumbnail), compress_type=zipfile.ZIP_STORED)


def ora_bytes(stack: LayerStack, index: int) -> bytes:
    buffer = io.BytesIO()
    write_ora(stack, index, buffer)
    return buffer.getvalue()
