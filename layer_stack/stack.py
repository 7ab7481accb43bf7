"""The layer stack that travels between LayerStack nodes (socket type LAYER_STACK).

The one convention, used by every node, writer and tool of the pack:

- Layers are ordered **bottom to top**: index 0 is drawn first. This is the PSD layer-record order, so a stack and
  the PSD written from it (and psd-tools' iteration over that PSD) list the layers the same way.
- Each layer is **straight (un-premultiplied) colour** `rgb` [B,H,W,3] plus `alpha` [B,H,W], both float32 in [0,1],
  alpha 1 = opaque. ComfyUI's LoadImage MASK is the inverse (1 = transparent); the build nodes convert it.
- Every layer of a stack has the same batch size, height and width; batch item i of every layer is picture i.
- Hidden layers (`visible=False`) travel with the stack and are written to PSD files (hidden), but they take no
  part in the composite. A model's own blended image and the foreground mask ride along this way.
- Each layer has an `opacity` in [0,1] (default 1), kept apart from its alpha the way editors keep a layer's
  opacity apart from its pixels: the composite uses alpha·opacity, and the layered files store it as the layer's
  opacity.
- Names are unique within a stack, so a layer can be taken out by name.
- A stack is immutable: nodes make new stacks and never change the one they were given, so ComfyUI's output cache
  never sees a value change under it.

Text2Layer's two-layer image (F, B, m) is the stack [background B (opaque), foreground F with alpha m]; its
composite m·F + (1 − m)·B is the Porter–Duff "over" of the visible layers (see compositing.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..errors import LayerStackError

FOREGROUND = "foreground"
BACKGROUND = "background"
BLENDED = "blended"
MASK = "mask"

# PSD stores a layer's legacy name as a Pascal string of at most 255 bytes; longer names would be cut by readers.
MAX_NAME_LENGTH = 255


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"a {t.dtype} tensor of shape {list(t.shape)}"
    return f"a {type(t).__name__}"


@dataclass(frozen=True, eq=False)
class Layer:
    """One named layer: straight colour and alpha (1 = opaque), both float32 in [0,1] on the CPU."""

    name: str
    rgb: torch.Tensor
    alpha: torch.Tensor
    visible: bool = True
    opacity: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise LayerStackError(f"Layer name: expected a non-empty string, got {self.name!r}.")
        if len(self.name) > MAX_NAME_LENGTH:
            raise LayerStackError(
                f"Layer name: expected at most {MAX_NAME_LENGTH} characters (the PSD limit), got {len(self.name)}."
            )
        rgb, alpha = self.rgb, self.alpha
        if not (isinstance(rgb, torch.Tensor) and rgb.dtype == torch.float32 and rgb.ndim == 4 and rgb.shape[-1] == 3):
            raise LayerStackError(f"Layer '{self.name}': rgb expected a float32 [B,H,W,3] tensor, got {_describe(rgb)}.")
        if not (isinstance(alpha, torch.Tensor) and alpha.dtype == torch.float32 and alpha.shape == rgb.shape[:3]):
            raise LayerStackError(
                f"Layer '{self.name}': alpha expected a float32 tensor of shape {list(rgb.shape[:3])} "
                f"(the rgb's batch, height, width), got {_describe(alpha)}."
            )
        if rgb.shape[0] < 1 or rgb.shape[1] < 1 or rgb.shape[2] < 1:
            raise LayerStackError(f"Layer '{self.name}': expected a non-empty image, got shape {list(rgb.shape)}.")
        opacity = self.opacity
        if isinstance(opacity, bool) or not isinstance(opacity, (int, float)) or not (
                math.isfinite(opacity) and 0.0 <= opacity <= 1.0):
            raise LayerStackError(f"Layer '{self.name}': opacity expected a number in [0, 1], got {opacity!r}.")
        object.__setattr__(self, "opacity", float(opacity))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(batch, height, width)."""
        return tuple(self.alpha.shape)

    def rgba(self) -> torch.Tensor:
        """[B,H,W,4] straight RGBA (the pixels; opacity not applied)."""
        return torch.cat([self.rgb, self.alpha.unsqueeze(-1)], dim=-1)

    def replaced(self, **changes) -> Layer:
        """A copy with some fields changed (checked like a new layer)."""
        return dataclasses.replace(self, **changes)


def make_layer(
    name: str, rgb: torch.Tensor, alpha: torch.Tensor | None = None, visible: bool = True, opacity: float = 1.0
) -> Layer:
    """A Layer from any float image/alpha: moved to the CPU as float32 and clamped to [0,1]; no alpha = opaque.

    Clamping is deliberate: ComfyUI images may overshoot [0,1] slightly (e.g. after bicubic upscales), and every
    consumer (compositing, 8-bit files) needs the valid range.
    """
    rgb = rgb.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
    if alpha is None:
        alpha = torch.ones(rgb.shape[:3], dtype=torch.float32)
    alpha = alpha.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
    return Layer(name=name, rgb=rgb.contiguous(), alpha=alpha.contiguous(), visible=visible, opacity=opacity)


@dataclass(frozen=True, eq=False)
class LayerStack:
    """Ordered layers, bottom first (see the module docstring for the whole convention)."""

    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise LayerStackError("LayerStack: expected at least one layer, got none.")
        if not all(isinstance(layer, Layer) for layer in layers):
            raise LayerStackError(f"LayerStack: expected Layer objects, got {[type(x).__name__ for x in layers]}.")
        names = [layer.name for layer in layers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise LayerStackError(f"LayerStack: layer names must be unique, got {repeated} more than once.")
        first = layers[0]
        for layer in layers[1:]:
            if layer.shape != first.shape:
                raise LayerStackError(
                    f"LayerStack: every layer must have the same [batch, height, width]; layer '{first.name}' has "
                    f"{list(first.shape)}, layer '{layer.name}' has {list(layer.shape)}."
                )

    @property
    def batch_size(self) -> int:
        return self.layers[0].shape[0]

    @property
    def height(self) -> int:
        return self.layers[0].shape[1]

    @property
    def width(self) -> int:
        return self.layers[0].shape[2]

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def get(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise LayerStackError(f"LayerStack: no layer named {name!r}; the stack has {self.names} (bottom to top).")

    def with_layer_on_top(self, layer: Layer) -> LayerStack:
        return LayerStack(self.layers + (layer,))

    def batch_item(self, index: int) -> LayerStack:
        """The stack of picture `index` alone (batch size 1)."""
        if not 0 <= index < self.batch_size:
            raise LayerStackError(f"LayerStack: batch index {index} is outside 0..{self.batch_size - 1}.")
        return LayerStack(tuple(
            layer.replaced(rgb=layer.rgb[index : index + 1], alpha=layer.alpha[index : index + 1])
            for layer in self.layers
        ))

    def __repr__(self) -> str:
        def describe(layer: Layer) -> str:
            hidden = "" if layer.visible else " (hidden)"
            opacity = "" if layer.opacity == 1.0 else f" {layer.opacity:.0%}"
            return f"{layer.name}{opacity}{hidden}"

        parts = [describe(layer) for layer in self.layers]
        return f"LayerStack({self.batch_size}x{self.height}x{self.width}, bottom→top: {', '.join(parts)})"
