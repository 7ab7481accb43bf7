"""Draws the sample pictures the templates load (example_workflows/input/), so they can be regenerated.

The pack copies them into ComfyUI's input folder at start-up (never over a file of the same name), so every template
finds its Load Image files on a fresh install. They are plain drawings (no model made them), all RGB except
layerstack_rgba_asset.png, which the refine template needs with transparency.

    python scripts/make_example_inputs.py        (Windows: python scripts\\make_example_inputs.py)
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parents[1] / "example_workflows" / "input"
SIZE = 1024


def background() -> Image.Image:
    """A sky over a table top: the scene the foreground sits in."""
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for y in range(SIZE):
        t = y / SIZE
        if y < 640:
            draw.line([(0, y), (SIZE, y)], fill=(int(120 + 90 * t), int(170 + 60 * t), int(235 - 20 * t)))
        else:
            draw.line([(0, y), (SIZE, y)], fill=(int(150 - 40 * t), int(105 - 30 * t), int(70 - 20 * t)))
    draw.ellipse([740, 110, 880, 250], fill=(255, 236, 170))
    return image


def subject_mask() -> Image.Image:
    """White where the subject (a bottle) is, black elsewhere; soft edges."""
    mask = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(mask)
    draw.rounded_rectangle([392, 380, 632, 840], radius=60, fill=255)  # body
    draw.rectangle([472, 220, 552, 400], fill=255)  # neck
    draw.rounded_rectangle([462, 190, 562, 240], radius=12, fill=255)  # cap
    return mask.filter(ImageFilter.GaussianBlur(2))


def subject() -> Image.Image:
    """The bottle, fully painted (also where the mask is black), as a camera would see it on a grey wall."""
    image = Image.new("RGB", (SIZE, SIZE), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle([392, 380, 632, 840], radius=60, fill=(40, 150, 90))
    draw.rectangle([472, 220, 552, 400], fill=(40, 150, 90))
    draw.rounded_rectangle([462, 190, 562, 240], radius=12, fill=(200, 60, 50))
    draw.rectangle([412, 520, 612, 680], fill=(240, 230, 200))  # label
    draw.rounded_rectangle([420, 400, 450, 800], radius=14, fill=(120, 210, 160))  # highlight
    return image


def make_all() -> dict[str, Image.Image]:
    fg, bg, mask = subject(), background(), subject_mask()
    rgba = fg.copy()
    rgba.putalpha(mask)
    return {
        "layerstack_foreground.png": fg,
        "layerstack_background.png": bg,
        "layerstack_mask.png": mask.convert("RGB"),
        "layerstack_blended.png": Image.composite(fg, bg, mask),
        "layerstack_rgba_asset.png": rgba,
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, image in make_all().items():
        image.save(OUT / name, optimize=True)
        print(OUT / name)


if __name__ == "__main__":
    main()
