"""Draws the template thumbnails: example_workflows/<title>.jpg, a picture of each template's graph (and the pack's
icon, docs/icon.png).

ComfyUI's template browser shows `<template name>.jpg` from the pack's example_workflows/ folder beside each template.
No model weights exist where the pack is built, so a thumbnail is a diagram of the graph (node boxes where the
template puts them, coloured by role, and its links), with the sample pictures the graph loads shown inside their
Load Image boxes. Rerun after editing a template:

    python scripts/make_thumbnails.py        (Windows: python scripts\\make_thumbnails.py)
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TEMPLATES = Path(__file__).resolve().parents[1] / "example_workflows"
INPUTS = TEMPLATES / "input"
WIDTH, HEIGHT, MARGIN = 640, 480, 24
BACKDROP = (32, 34, 38)
LINK = (150, 150, 160)
ROLE_COLOURS = {  # fill, outline
    "note": ((90, 70, 40), (160, 130, 80)),
    "load": ((55, 65, 85), (110, 130, 170)),
    "layer": ((95, 55, 120), (185, 125, 225)),
    "save": ((45, 95, 60), (100, 190, 120)),
    "other": ((60, 62, 68), (120, 122, 130)),
}


def role(node_type: str) -> str:
    if node_type in ("Note", "MarkdownNote"):
        return "note"
    if node_type.startswith(("Load", "CheckpointLoader")) or node_type == "LayerStackLoadTransparentVAE":
        return "load"
    if node_type.startswith(("Save", "Preview", "LayerStackSave", "LayerStackPreview")) or node_type == "ImageCompositor":
        return "save"
    if node_type.startswith("LayerStack"):
        return "layer"
    return "other"


def label(node: dict, draw: ImageDraw.ImageDraw, fnt: ImageFont.ImageFont, width: float) -> str:
    """The node's title, or its type without the pack prefix, cut to fit its box."""
    name = "Read me" if node["type"] in ("Note", "MarkdownNote") else (
        node.get("title") or node["type"].removeprefix("LayerStack"))
    while len(name) > 1 and draw.textlength(name, font=fnt) > width:
        name = name[:-2] + "…"
    return name


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render(workflow: dict, title: str) -> Image.Image:
    nodes = workflow["nodes"]
    left = min(n["pos"][0] for n in nodes)
    top = min(n["pos"][1] for n in nodes)
    right = max(n["pos"][0] + n["size"][0] for n in nodes)
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes)
    header = 56
    scale = min((WIDTH - 2 * MARGIN) / (right - left), (HEIGHT - header - MARGIN) / (bottom - top))

    def box(node: dict) -> tuple[float, float, float, float]:
        x0 = MARGIN + (node["pos"][0] - left) * scale
        y0 = header + (node["pos"][1] - top) * scale
        return x0, y0, x0 + node["size"][0] * scale, y0 + node["size"][1] * scale

    image = Image.new("RGB", (WIDTH, HEIGHT), BACKDROP)
    draw = ImageDraw.Draw(image)
    by_id = {n["id"]: n for n in nodes}
    for link in workflow.get("links", []):
        origin, target = (link[1], link[3]) if isinstance(link, list) else (link["origin_id"], link["target_id"])
        if origin in by_id and target in by_id:
            a, b = box(by_id[origin]), box(by_id[target])
            draw.line([(a[2], (a[1] + a[3]) / 2), (b[0], (b[1] + b[3]) / 2)], fill=LINK, width=2)
    small = font(11)
    for node in nodes:
        x0, y0, x1, y1 = box(node)
        fill, outline = ROLE_COLOURS[role(node["type"])]
        draw.rounded_rectangle([x0, y0, x1, y1], radius=6, fill=fill, outline=outline, width=2)
        picture = INPUTS / str((node.get("widgets_values") or [""])[0])
        if node["type"] in ("LoadImage", "LoadImageMask") and picture.is_file() and y1 - y0 > 40:
            with Image.open(picture) as im:
                thumb = im.convert("RGB")
                thumb.thumbnail((int(x1 - x0) - 8, int(y1 - y0) - 22))
                image.paste(thumb, (int(x0) + 4, int(y0) + 18))
        draw.text((x0 + 5, y0 + 3), label(node, draw, small, x1 - x0 - 8), fill=(235, 235, 240), font=small)
    draw.text((MARGIN, 16), title, fill=(250, 250, 250), font=font(20))
    return image


def icon() -> Image.Image:
    """The pack's icon for the Registry (docs/icon.png): three offset layers, the top one see-through."""
    image = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate([(110, 130, 170, 255), (185, 125, 225, 255), (100, 190, 120, 170)]):
        x = 40 + 36 * i
        draw.rounded_rectangle([x, 136 - 36 * i, x + 120, 216 - 36 * i], radius=14, fill=colour,
                               outline=(250, 250, 250, 255), width=4)
    return image


def main() -> None:
    icon().save(TEMPLATES.parent / "docs" / "icon.png", optimize=True)
    for path in sorted(TEMPLATES.glob("*.json")):
        workflow = json.loads(path.read_text(encoding="utf-8"))
        render(workflow, path.stem).save(path.with_suffix(".jpg"), quality=85, optimize=True)
        print(path.with_suffix(".jpg"))


if __name__ == "__main__":
    main()
