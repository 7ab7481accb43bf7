"""Stacks from and to RGBA image batches (one layer per frame), and the edits of a decompose → edit → recompose loop.

Layered generators hand out a batch of RGBA frames, one per layer (docs/FORMATS.md#rgba-layer-batches): Qwen-Image-
Layered decodes `layers + 1` frames, bottom layer first, of which frame 0 is the regenerated whole picture and not a
layer. Every function returns a new stack; the given one is never changed (stacks are immutable, see stack.py).
"""

from __future__ import annotations

import torch

from ..errors import LayerStackError
from .stack import Layer, LayerStack, make_layer

BOTTOM_TO_TOP = "bottom to top"
TOP_TO_BOTTOM = "top to bottom"
ORDERS = (BOTTOM_TO_TOP, TOP_TO_BOTTOM)


def input_error(input_name: str, expected: str, got: str) -> LayerStackError:
    """The node-independent part of errors.node_error's message; nodes prefix their name (see nodes/stack.py)."""
    return LayerStackError(f"input '{input_name}' expected {expected}, got {got}.")


def parse_names(names: str) -> list[str]:
    """'a, b ,c' -> ['a', 'b', 'c']; empty parts are dropped."""
    return [part.strip() for part in names.split(",") if part.strip()]


def layer_names(count: int, names: str = "") -> list[str]:
    """`count` names, bottom first: the comma list when it has exactly `count` entries, else layer_0 .. layer_{n-1}
    for an empty list. Any other length is refused (guessing which name belongs to which layer would be wrong)."""
    given = parse_names(names)
    if not given:
        return [f"layer_{i}" for i in range(count)]
    if len(given) != count:
        raise input_error("names", f"{count} comma-separated names (one per layer)", f"{len(given)}: {given}")
    return given


def stack_from_frames(
    rgb: torch.Tensor, alpha: torch.Tensor, names: str = "", order: str = BOTTOM_TO_TOP,
    drop_first_frame: bool = False,
) -> LayerStack:
    """rgb [N,H,W,3] + alpha [N,H,W] (1 = opaque) -> a stack of batch size 1 with one layer per frame.

    drop_first_frame removes frame 0 before anything else (Qwen-Image-Layered's whole picture); `order` says how the
    remaining frames are ordered; `names` name the layers bottom to top.
    """
    if order not in ORDERS:
        raise input_error("order", f"one of {list(ORDERS)}", repr(order))
    if drop_first_frame:
        if rgb.shape[0] < 2:
            raise input_error("drop_first_frame", "at least 2 frames (the whole picture and a layer)",
                              f"{rgb.shape[0]}")
        rgb, alpha = rgb[1:], alpha[1:]
    frames = list(range(rgb.shape[0]))
    if order == TOP_TO_BOTTOM:
        frames.reverse()
    labels = layer_names(len(frames), names)
    return LayerStack(tuple(make_layer(label, rgb[i : i + 1], alpha[i : i + 1]) for label, i in zip(labels, frames)))


def stack_to_frames(
    stack: LayerStack, order: str = BOTTOM_TO_TOP, include_hidden: bool = True,
) -> tuple[torch.Tensor, list[str]]:
    """The layers as one RGBA batch [B·L,H,W,4] (picture by picture, each picture's layers in `order`) and their names.

    A layer's opacity is multiplied into its alpha (a plain RGBA frame has nowhere else to keep it).
    """
    if order not in ORDERS:
        raise input_error("order", f"one of {list(ORDERS)}", repr(order))
    layers = [layer for layer in stack.layers if include_hidden or layer.visible]
    if not layers:
        raise input_error("include_hidden", "True when every layer is hidden", f"False with only hidden layers "
                          f"{stack.names}")
    if order == TOP_TO_BOTTOM:
        layers.reverse()
    frames = torch.stack([
        torch.cat([layer.rgb, (layer.alpha * layer.opacity).unsqueeze(-1)], dim=-1) for layer in layers], dim=1)
    return frames.flatten(0, 1), [layer.name for layer in layers]


def _index(stack: LayerStack, name: str) -> int:
    if name not in stack.names:
        raise input_error("name", f"one of the stack's layer names {stack.names}", repr(name))
    return stack.names.index(name)


def layer_named(stack: LayerStack, name: str) -> Layer:
    return stack.layers[_index(stack, name)]


def with_layer(stack: LayerStack, name: str, layer: Layer) -> LayerStack:
    """The stack with layer `name` replaced by `layer` (same place; same batch, height and width)."""
    index = _index(stack, name)
    if layer.shape != stack.layers[index].shape:
        raise input_error("image", f"[batch, height, width] {list(stack.layers[index].shape)} (layer '{name}')",
                          f"{list(layer.shape)}")
    return LayerStack(stack.layers[:index] + (layer,) + stack.layers[index + 1 :])


def set_properties(
    stack: LayerStack, name: str, opacity: float | None = None, visible: bool | None = None, new_name: str = "",
) -> LayerStack:
    """Layer `name` with a new opacity / visibility / name (None or '' keeps the current one)."""
    layer = layer_named(stack, name)
    changes = {"opacity": opacity, "visible": visible, "name": new_name.strip() or None}
    return with_layer(stack, name, layer.replaced(**{k: v for k, v in changes.items() if v is not None}))


def reordered(stack: LayerStack, order: str) -> LayerStack:
    """The layers in the order of the comma list `order` (every name exactly once, bottom first)."""
    wanted = parse_names(order)
    if sorted(wanted) != sorted(stack.names):
        raise input_error("order", f"each of the stack's layer names {stack.names} exactly once", f"{wanted}")
    return LayerStack(tuple(stack.get(name) for name in wanted))


def reversed_stack(stack: LayerStack) -> LayerStack:
    return LayerStack(tuple(reversed(stack.layers)))
