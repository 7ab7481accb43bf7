"""The six SDXL layer files as ComfyUI-native weight patches, with weight, start/stop and the c_concat condition.

File format (docs/FORMATS.md#sdxl-patch-format): every key is `<model_key>::<lora|diff>::<index>`; a lora pair is (0 = up,
1 = down), a diff is a full-shape delta. Patch forms (docs/FORMATS.md#sdxl-patches-in-comfyui): `LoRAAdapter` objects and
`("diff", (delta, {"pad_weight": True}))`; the legacy `("lora", ...)` tuple is silently dropped by current ComfyUI,
which is exactly the failure this module exists to avoid, so every key is checked against the model before use.

Start/stop ("stop at", Forge semantics, schedule percent): each patch is a weight wrapper that adds it in the forward
pass only while the sigma being denoised lies in the window; no weight hook, so the host's dynamic-VRAM patcher keeps
its fast path (docs/HOSTS.md#start-stop). The conv_in zero-padding is an always-on base patch. Outside the window the
padded channels are zero, so the c_concat condition has no effect either, matching Forge's "original UNet, no
c_concat".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import comfy.conds
import comfy.lora
import comfy.patcher_extension
import torch
from comfy.weight_adapter import LoRAAdapter

from .. import host
from ..errors import FROM_SAMPLER, LayerStackError, node_error, require_finite, require_schedule_window
from . import files, registry
from .registry import Family, Kind, LayerFile

CONV_IN_KEY = "diffusion_model.input_blocks.0.0.weight"
OWNER_KEY = "layerstack_schedule"  # wrapper key on the patched clone
log = logging.getLogger("layerstack")
LATENT_CHANNELS = 4  # SDXL latent channels: the UNet input before any condition is concatenated

SDXL_FILES: tuple[LayerFile, ...] = registry.files_of(Family.SDXL, Kind.SDXL_PATCH)


@dataclass(frozen=True)
class LayerPatches:
    """One SDXL layer file turned into patches, already checked against a model."""

    entry: LayerFile
    source: str  # the file path (or a name) for error messages
    patches: dict[str, object]  # model key -> LoRAAdapter | ("diff", (delta, {"pad_weight": True}))


# --- file format -> patches ----------------------------------------------------------------------------------------

def group_by_model_key(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, dict[int, torch.Tensor]]]:
    """`{model_key: (patch_type, {index: tensor})}` from the `::`-keyed file; the grammar is checked when files.py reads it (registry.KINDS)."""
    grouped: dict[str, tuple[str, dict[int, torch.Tensor]]] = {}
    for key, tensor in state_dict.items():
        model_key, patch_type, index = key.split("::")
        grouped.setdefault(model_key, (patch_type, {}))[1][int(index)] = tensor
    return grouped


def to_native_patches(grouped: Mapping[str, tuple[str, dict[int, torch.Tensor]]]) -> dict[str, object]:
    """ComfyUI patch objects; a lora pair has no alpha in these files, so its scale is 1 (W + s·up@down)."""
    patches: dict[str, object] = {}
    for model_key, (patch_type, slots) in grouped.items():
        if patch_type == "lora":
            patches[model_key] = LoRAAdapter(set(), (slots[0], slots[1], None, None, None, None))
        else:
            patches[model_key] = ("diff", (slots[0], {"pad_weight": True}))
    return patches


def shape_problems(entry: LayerFile, grouped: Mapping[str, tuple[str, dict[int, torch.Tensor]]],
                   model_shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Every file key that would not land exactly on the model, as readable lines (empty = all fit).

    Works on shapes only, so the full-size check can run against a UNet built on the meta device.
    """
    problems: list[str] = []
    for model_key, (patch_type, slots) in grouped.items():
        target = model_shapes.get(model_key)
        if target is None:
            problems.append(f"{model_key}: no such parameter in the model")
            continue
        target = tuple(target)
        if patch_type == "lora":
            up, down = tuple(slots[0].shape), tuple(slots[1].shape)
            fits = (len(up) == 2 and len(down) == 2 and up[1] == down[0]
                    and target == (up[0], down[1]))
            if not fits:
                problems.append(f"{model_key}: LoRA up {list(up)} @ down {list(down)} does not make {list(target)}")
            continue
        delta = tuple(slots[0].shape)
        if delta == target:
            continue
        if model_key == CONV_IN_KEY and entry.extra_channels:
            widened = (target[0], LATENT_CHANNELS + entry.extra_channels, *target[2:])
            if target[1] == LATENT_CHANNELS and delta == widened:
                continue
            problems.append(f"{model_key}: delta {list(delta)} cannot widen the model's {list(target)} "
                            f"to {list(widened)}")
            continue
        problems.append(f"{model_key}: delta {list(delta)} does not match the model's {list(target)}")
    return problems


def load_layer_patches(model, file_id: str, *, node: str) -> LayerPatches:
    """Family check, file load (key grammar checked on reading, registry.KINDS), and a strict fit check against this model."""
    entry = registry.get(file_id)
    require_family(model, entry, node=node)
    loaded = files.load_layer_file(entry)
    grouped = group_by_model_key(loaded.state_dict)
    problems = shape_problems(entry, grouped, unpatched_shapes(model))
    if problems:
        raise _rejected(node, loaded.path, entry, problems, registry.model_type_name(model))
    return LayerPatches(entry, loaded.path, to_native_patches(grouped))


def unpatched_shapes(model) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the model as loaded from its checkpoint.

    Not the module's current weights: clones share one module, and while a patched clone is loaded its weights (a
    conv_in widened to 8 channels, say) are what the module holds; the patcher's backup keeps the originals. Not
    `get_key_patches` either: on quantized models newer hosts raise there for the scale entries
    (docs/HOSTS.md#quantized-base-models). A quantized weight reports its logical shape.
    """
    shapes = {}
    for key, value in model.model_state_dict("diffusion_model.").items():
        backup = model.backup.get(key)
        weight = backup.weight if backup is not None else value
        if isinstance(weight, torch.Tensor):
            shapes[key] = tuple(weight.shape)
    return shapes


def require_family(model, entry: LayerFile, *, node: str) -> None:
    family = registry.family_of_model(model)
    if family is not entry.family:
        raise node_error(node, "model", f"an {entry.family.value} model for {entry.filename}",
                         f"a {registry.model_type_name(model)} model"
                         + (f" ({family.value} family)" if family is not None else ""))


def _rejected(node: str, source: str, entry: LayerFile, problems: list[str], model_type: str) -> LayerStackError:
    shown = "\n  ".join(problems[:8]) + (f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else "")
    return LayerStackError(
        f"{node}: {source} ({entry.describe()}) does not fit this {model_type} model; "
        f"{len(problems)} key(s) rejected:\n  {shown}")


# --- applying: weight, start/stop ----------------------------------------------------------------------------------

def apply_layer_patches(model, layer: LayerPatches, *, node: str, weight: float = 1.0,
                        start_percent: float = 0.0, stop_percent: float = 1.0, positive=None, negative=None):
    """(patched clone, positive, negative). Always on → plain patches; a narrower window → scheduled weight wrappers.

    The conditionings pass through unchanged (the schedule lives on the patched model); they stay in the signature
    because the nodes add the c_concat condition to them.
    """
    require_schedule_window(node, start_percent, stop_percent)
    patched = model.clone()
    if start_percent <= 0.0 and stop_percent >= 1.0:
        _add_patches_strictly(patched, layer.patches, weight, node=node, layer=layer)
        return patched, positive, negative
    padding = {}
    if layer.entry.extra_channels:  # only the conditional files widen conv_in
        delta = layer.patches[CONV_IN_KEY][1][0]
        padding[CONV_IN_KEY] = ("diff", (torch.zeros_like(delta), {"pad_weight": True}))
    # A weight wrapper cannot change a shape: widen conv_in for good (with zeros), schedule only the deltas.
    _add_patches_strictly(patched, padding, 1.0, node=node, layer=layer)
    scheduled = _without_padding(layer.patches)  # every key vouched for by shape_problems
    window = ScheduleWindow(start_percent, stop_percent, node=node, keys=scheduled)
    for key, patch in scheduled.items():
        patched.add_weight_wrapper(key, ScheduledPatch(key, patch, weight, window, _separate_scale(model, key)))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, OWNER_KEY, window)
    return patched, positive, negative


class ScheduleWindow:
    """The start/stop window, set per model call from the sigma being denoised (an APPLY_MODEL wrapper).

    Active while sigma(stop) < sigma <= sigma(start), sigma(p) = model_sampling.percent_to_sigma(p): the switch
    points of ComfyUI's hook keyframes and of Forge's "stop at" (docs/HOSTS.md#start-stop). Outside a model call it
    is inactive, so the wrapped weights are the base weights.

    It also notes which wrapped weights a model call inside the window reached: a host that runs a layer without
    its weight functions (ComfyUI's dynamic VRAM pre-loads modules under 16 KB, norm layers among them, that way)
    would leave those deltas out, and that is said once in the log instead of passing silently
    (docs/HOSTS.md#start-stop).
    """

    def __init__(self, start_percent: float, stop_percent: float, *, node: str = "", keys: Sequence[str] = ()):
        self.start_percent = start_percent
        self.stop_percent = stop_percent
        self.node = node
        self.keys = frozenset(keys)
        self.active = False
        self.reached: set[str] = set()
        self.warned = False

    def contains(self, model_sampling, sigma: float) -> bool:
        sigma_start = model_sampling.percent_to_sigma(self.start_percent)
        sigma_stop = model_sampling.percent_to_sigma(self.stop_percent)
        return sigma_stop < sigma <= sigma_start

    def __call__(self, executor, x, t, *args, **kwargs):
        self.active = active = self.contains(executor.class_obj.model_sampling, float(t[0]))
        self.reached.clear()
        try:
            out = executor(x, t, *args, **kwargs)
        finally:
            self.active = False
        if active and not self.warned:
            self.warn_if_unreached()
        return out

    def warn_if_unreached(self) -> None:
        missing = sorted(self.keys - self.reached)
        if not missing:
            return
        self.warned = True
        log.warning(
            "LayerStack: %s: start/stop: %d of %d patched weights were not reached inside the window (%s); this "
            "ComfyUI ran their layers without weight functions (dynamic VRAM pre-loads layers under 16 KB, such as "
            "norm layers, that way), so their part of the layer file is missing from this result. For the exact "
            "result start ComfyUI with --disable-dynamic-vram, or use start 0 and stop 1 (plain patches).",
            self.node, len(missing), len(self.keys), ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else ""))


class ScheduledPatch:
    """A weight wrapper: the layer file's patch added to the weight the layer runs with, while the window is active.

    Applied in the forward pass by ComfyUI's cast ops (any patcher, dynamic VRAM included), in fp32 as ComfyUI
    merges patches, on the weight as the layer computes with it (dequantized where the base model is quantized).
    """

    def __init__(self, key: str, patch, strength: float, window: ScheduleWindow, scaled_layer=None):
        self.key = key
        self.patches = [(strength, patch, 1.0, None, None)]
        self.window = window
        self.scaled_layer = scaled_layer  # a layer that multiplies its weight by `scale_weight` after this

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.window.active:
            return weight
        self.window.reached.add(self.key)
        full = weight.to(torch.float32, copy=True)
        scale = None if self.scaled_layer is None else self.scaled_layer.scale_weight.to(full)
        if scale is not None:
            full *= scale
        merged = comfy.lora.calculate_weight(self.patches, full, self.key)
        if scale is not None:
            merged /= scale
        return merged.to(weight.dtype)


def _separate_scale(model, key: str):
    """The layer of `key` if it applies a `scale_weight` after its weight functions (the scaled-fp8 layers of hosts
    before quantized tensors, docs/HOSTS.md#quantized-base-models), else None: its functions see weight / scale."""
    path, _, name = key.rpartition(".")
    layer = model.get_model_object(path)
    scale = getattr(layer, "scale_weight", None)
    if name != "weight" or not isinstance(scale, torch.Tensor) or host.is_quantized(layer.weight):
        return None
    return layer


def _without_padding(patches: Mapping[str, object]) -> dict[str, object]:
    """Diffs without the pad flag: they add onto the conv_in the base patch already widened."""
    return {k: ("diff", (p[1][0],)) if isinstance(p, tuple) else p for k, p in patches.items()}


def _add_patches_strictly(model, patches: Mapping[str, object], strength: float, *, node: str,
                          layer: LayerPatches) -> None:
    accepted = set(model.add_patches(dict(patches), strength))
    rejected = sorted(set(patches) - accepted)
    if rejected:
        raise _rejected(node, layer.source, layer.entry, [f"{k}: not accepted by add_patches" for k in rejected],
                        registry.model_type_name(model))


# --- c_concat ------------------------------------------------------------------------------------------------------

def with_c_concat(conditioning, c_concat: torch.Tensor):
    """Copies of the conditioning whose entries carry `c_concat` (model space) for the UNet input.

    CONDNoiseShape repeats it to the sampled batch and crops it with area conds; SDXL's own extra_conds never
    produce a c_concat, so this one survives (docs/FORMATS.md#c-concat).
    """
    out = []
    for embedding, options in conditioning:
        options = options.copy()
        model_conds = dict(options.get("model_conds", {}))
        model_conds["c_concat"] = comfy.conds.CONDNoiseShape(c_concat)
        options["model_conds"] = model_conds
        out.append([embedding, options])
    return out


def condition_c_concat(model, latents: Sequence[torch.Tensor], *, node: str, names: Sequence[str]) -> torch.Tensor:
    """Raw condition latents (file order) → one model-space c_concat [B, 4·n, h, w].

    Batches must agree or be 1 (a single condition serves every image).
    """
    for latent, name in zip(latents, names):
        if latent.ndim != 4 or latent.shape[1] != LATENT_CHANNELS:
            raise node_error(node, name, f"a {LATENT_CHANNELS}-channel SDXL latent [batch, 4, h, w]",
                             f"shape {list(latent.shape)}")
        require_finite(latent, node, name, FROM_SAMPLER)
    sizes = {tuple(latent.shape[2:]) for latent in latents}
    if len(sizes) > 1:
        raise node_error(node, " / ".join(names), "condition latents of one size",
                         ", ".join(f"{n} {list(lat.shape[2:])}" for n, lat in zip(names, latents)))
    batches = {latent.shape[0] for latent in latents} - {1}
    if len(batches) > 1:
        raise node_error(node, " / ".join(names), "equal batch sizes (or 1)",
                         ", ".join(f"{n} {lat.shape[0]}" for n, lat in zip(names, latents)))
    batch = max(batches, default=1)
    raw = torch.cat([latent.expand(batch, -1, -1, -1) for latent in latents], dim=1)
    return model.model.process_latent_in(raw)


def require_sampled_size(model, c_concat: torch.Tensor, *, node: str, input_name: str) -> None:
    """Refuse, before sampling starts, a sampled latent of another size than the condition (else: torch.cat error).

    A sampler wrapper on the patched clone: it sees the latent whichever sampler node runs the model.
    """
    height, width = c_concat.shape[-2:]

    def check(executor, noise, latent_image, *args, **kwargs):
        if tuple(latent_image.shape[-2:]) != (height, width):
            raise node_error(node, input_name, f"the size of the latent being sampled, "
                             f"{latent_image.shape[-1] * 8} x {latent_image.shape[-2] * 8} px",
                             f"condition layers of {width * 8} x {height * 8} px")
        return executor(noise, latent_image, *args, **kwargs)

    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, "layerstack_condition_size", check)
