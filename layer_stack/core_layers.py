"""ComfyUI core's LAYERS document <-> layer stacks (docs/FORMATS.md#comfyui-layers-documents).

The document is a plain dict, so this module needs no ComfyUI import; the nodes that use it exist only on hosts
whose API defines the LAYERS socket type (nodes/core_layers.py). Core marks the type experimental, so everything
read from a document is checked here and refused with a message naming the layer when it is not what we expect.

What a stack cannot hold is never dropped silently: a blend mode other than normal is refused (core's *Create
Layered Image* can flatten it), and flips, display sizes other than the native one and rotations are refused unless
the caller asks for them to be baked into the pixels.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ..errors import LayerStackError
from .psd_png import content_box
from .stack import LayerStack, make_layer

VERSION = 1
MAX_LAYERS = 50  # core's compositor refuses documents with more flattened layers


def _fail(what: str) -> LayerStackError:
    return LayerStackError(f"LAYERS document: {what}")


def stack_to_document(stack: LayerStack, index: int = 0, crop_to_content: bool = True) -> dict:
    """Picture `index` of the stack as a LAYERS document: one raster item per layer, z_index = stack position.

    With crop_to_content each item holds the box around the layer's visible pixels, placed at x/y (like our PSD
    and OpenRaster files); without, every item is the whole canvas at (0, 0) and a round trip is bit-identical.
    """
    if len(stack) > MAX_LAYERS:
        raise _fail(f"at most {MAX_LAYERS} layers fit in one document (core's limit), the stack has {len(stack)}.")
    item_stack = stack.batch_item(index)
    items = []
    for z, layer in enumerate(item_stack.layers):
        top, left, bottom, right = (content_box(layer.alpha[0]) if crop_to_content
                                    else (0, 0, stack.height, stack.width))
        items.append({
            "image": layer.rgba()[:, top:bottom, left:right].clone(),
            "type": "raster", "x": left, "y": top, "z_index": z, "name": layer.name,
            "opacity": layer.opacity, "blend_mode": "normal", "visible": layer.visible,
        })
    return {"version": VERSION, "canvas": (stack.width, stack.height), "layers": items}


def _number(item: dict, key: str, default, label: str, kind=numbers.Real):
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, kind) or (kind is numbers.Real and not math.isfinite(value)):
        raise _fail(f"{label}: '{key}' expected a {'whole ' if kind is numbers.Integral else ''}number, "
                    f"got {value!r}.")
    return value


def _item_rgba(item: dict, label: str) -> torch.Tensor:
    """[B,h,w,4] straight RGBA of one item: its image's alpha (or opaque) times (1 - its mask)."""
    image = item.get("image")
    if not (isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[-1] in (3, 4)
            and image.is_floating_point() and image.shape[0] >= 1):
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise _fail(f"{label}: 'image' expected a float IMAGE [batch, height, width, 3 or 4], got {shape}.")
    image = image.detach().to("cpu", torch.float32)
    rgb = image[..., :3]
    alpha = image[..., 3] if image.shape[-1] == 4 else torch.ones(image.shape[:3])
    mask = item.get("mask")
    if mask is not None:
        if not (isinstance(mask, torch.Tensor) and mask.ndim in (2, 3) and mask.is_floating_point()):
            raise _fail(f"{label}: 'mask' expected a float MASK [batch, height, width], got "
                        f"{list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}.")
        mask = mask.detach().to("cpu", torch.float32)
        mask = mask[None] if mask.ndim == 2 else mask
        if mask.shape[0] not in (1, image.shape[0]):
            raise _fail(f"{label}: 'mask' expected batch size 1 or {image.shape[0]}, got {mask.shape[0]}.")
        if mask.shape[1:] != image.shape[1:3]:  # core stretches a mask of another size over the image
            mask = F.interpolate(mask[:, None], size=tuple(image.shape[1:3]), mode="bilinear")[:, 0]
        alpha = alpha * (1.0 - mask.clamp(0, 1))
    return torch.cat([rgb, alpha.unsqueeze(-1)], dim=-1).clamp(0, 1)


def _placed(rgba: torch.Tensor, x: float, y: float, w: float, h: float, rotation: float, flip_h: bool,
            flip_v: bool, width: int, height: int) -> torch.Tensor:
    """rgba [1,h0,w0,4] shown at display size w×h with its top-left at (x, y), turned `rotation` radians clockwise
    about the display box's centre (core's convention), drawn on a transparent width×height canvas.

    Each canvas pixel centre is mapped back into the source and sampled bilinearly in premultiplied colour; edges
    are hard (a pixel belongs to the layer when its centre does), shrinking is not low-pass filtered.
    """
    native_h, native_w = rgba.shape[1:3]
    vs, us = torch.meshgrid(torch.arange(height, dtype=torch.float64) + 0.5,
                            torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij")
    cx, cy = x + w / 2, y + h / 2
    cos, sin = math.cos(rotation), math.sin(rotation)
    dx, dy = us - cx, vs - cy
    local_x = dx * cos + dy * sin + w / 2  # rotate back by -rotation, into the display box
    local_y = -dx * sin + dy * cos + h / 2
    source_x, source_y = local_x * native_w / w, local_y * native_h / h
    if flip_h:
        source_x = native_w - source_x
    if flip_v:
        source_y = native_h - source_y
    grid = torch.stack([2 * source_x / native_w - 1, 2 * source_y / native_h - 1], dim=-1)[None].float()
    premultiplied = torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], dim=-1).movedim(-1, 1)
    sampled = F.grid_sample(premultiplied, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Border padding keeps the layer's own edge pixels whole; the layer ends where the mapped point leaves it.
    inside = (source_x >= 0) & (source_x < native_w) & (source_y >= 0) & (source_y < native_h)
    sampled = sampled.movedim(1, -1) * inside[None, ..., None].float()
    alpha = sampled[..., 3:]
    rgb = torch.where(alpha > 0, sampled[..., :3] / alpha.clamp_min(1e-12), torch.zeros_like(sampled[..., :3]))
    return torch.cat([rgb, alpha], dim=-1).clamp(0, 1)


def _on_canvas(rgba: torch.Tensor, x: int, y: int, width: int, height: int) -> torch.Tensor:
    """rgba [1,h,w,4] at integer offset (x, y) on a transparent canvas; parts outside the canvas are cut off."""
    canvas = torch.zeros(1, height, width, 4)
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + rgba.shape[1], height), min(x + rgba.shape[2], width)
    if top < bottom and left < right:
        canvas[:, top:bottom, left:right] = rgba[:, top - y : bottom - y, left - x : right - x]
    return canvas


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name} ({n})"
        seen[candidate] = 1
        out.append(candidate)
    return out


def document_to_stack(document: object, bake_transforms: bool = False) -> LayerStack:
    """A LAYERS document as a stack of batch size 1 on the document's canvas (or, without one, the extent of its
    placed layers), bottom first by z_index (stable, like core). An item with a batch of images becomes consecutive
    layers named '<name>_0', '<name>_1', ...; repeated names get ' (2)', ' (3)', ..."""
    if not isinstance(document, dict):
        raise _fail(f"expected a dict with 'version' and 'layers', got a {type(document).__name__}.")
    if document.get("version", VERSION) != VERSION:
        raise _fail(f"version {document.get('version')!r} is not supported (expected {VERSION}).")
    raw_items = document.get("layers")
    if not isinstance(raw_items, list) or not raw_items:
        raise _fail(f"'layers' expected a non-empty list of layer items, got {raw_items!r:.80}.")

    frames = []  # (name, rgba [1,h,w,4], placement dict)
    for position, item in enumerate(raw_items):
        label = f"layer {position}" + (f" ({item.get('name')!r})" if isinstance(item, dict) and item.get("name")
                                       else "")
        if not isinstance(item, dict):
            raise _fail(f"{label}: expected a dict, got a {type(item).__name__}.")
        if item.get("type", "raster") != "raster":
            raise _fail(f"{label}: type {item.get('type')!r} cannot be a stack layer (only 'raster').")
        blend = item.get("blend_mode", "normal")
        if blend != "normal":
            raise _fail(f"{label}: blend mode {blend!r} cannot be represented (a layer stack composites with "
                        f"'normal' only); set it to normal, or flatten the document with core's Create Layered "
                        f"Image first.")
        rgba = _item_rgba(item, label)
        name = item.get("name") if isinstance(item.get("name"), str) and item.get("name").strip() else None
        opacity = _number(item, "opacity", 1.0, label)
        if not 0.0 <= opacity <= 1.0:
            raise _fail(f"{label}: 'opacity' expected a number in [0, 1], got {opacity!r}.")
        visible = item.get("visible", True)
        if not isinstance(visible, bool):
            raise _fail(f"{label}: 'visible' expected true or false, got {visible!r}.")
        native_h, native_w = rgba.shape[1:3]
        w = _number(item, "w", 0, label, numbers.Integral) or native_w
        h = _number(item, "h", 0, label, numbers.Integral) or native_h
        placement = {
            "x": _number(item, "x", 0, label, numbers.Integral), "y": _number(item, "y", 0, label, numbers.Integral),
            "w": w, "h": h, "rotation": float(_number(item, "rotation", 0.0, label)),
            "flip_h": bool(item.get("flip_h", False)), "flip_v": bool(item.get("flip_v", False)),
            "z": _number(item, "z_index", 0, label, numbers.Integral), "opacity": float(opacity), "visible": visible,
        }
        transformed = [k for k, on in (("rotation", placement["rotation"] % (2 * math.pi) != 0),
                                       ("flip_h", placement["flip_h"]), ("flip_v", placement["flip_v"]),
                                       ("w/h", (w, h) != (native_w, native_h))) if on]
        if transformed and not bake_transforms:
            raise _fail(f"{label}: {', '.join(transformed)} cannot be represented in a layer stack (layers are "
                        f"unrotated, unflipped pixels); switch on bake_transforms to resample them into the "
                        f"layer's pixels.")
        placement["transformed"] = bool(transformed)
        base = name or f"layer_{position}"
        for b in range(rgba.shape[0]):
            frames.append((base if rgba.shape[0] == 1 else f"{base}_{b}", rgba[b : b + 1], placement))
    if len(frames) > MAX_LAYERS:
        raise _fail(f"at most {MAX_LAYERS} layers (core's limit), got {len(frames)}.")

    frames.sort(key=lambda frame: frame[2]["z"])  # stable: equal z_index keeps list order
    width, height = _canvas(document, frames)
    layers = []
    for name, (_, rgba, p) in zip(_unique([f[0] for f in frames]), frames):
        if p["transformed"]:
            placed = _placed(rgba, p["x"], p["y"], p["w"], p["h"], p["rotation"], p["flip_h"], p["flip_v"],
                             width, height)
        else:
            placed = _on_canvas(rgba, p["x"], p["y"], width, height)
        layers.append(make_layer(name, placed[..., :3], placed[..., 3], p["visible"], p["opacity"]))
    return LayerStack(tuple(layers))


def _canvas(document: dict, frames: list) -> tuple[int, int]:
    canvas = document.get("canvas")
    if canvas is not None:
        if not (isinstance(canvas, (tuple, list)) and len(canvas) == 2
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in canvas)):
            raise _fail(f"'canvas' expected (width, height) in whole pixels, got {canvas!r}.")
        return int(canvas[0]), int(canvas[1])
    right = bottom = 1
    for _, _, p in frames:  # the placed extent, rotated boxes included, like core
        corners = [(dx * p["w"], dy * p["h"]) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)]
        cos, sin = math.cos(p["rotation"]), math.sin(p["rotation"])
        cx, cy = p["x"] + p["w"] / 2, p["y"] + p["h"] / 2
        right = max(right, math.ceil(max(cx + a * cos - b * sin for a, b in corners)))
        bottom = max(bottom, math.ceil(max(cy + a * sin + b * cos for a, b in corners)))
    return right, bottom
