"""The Flux layer LoRA (layerlora.safetensors) on ComfyUI's Flux model, through ComfyUI's own LoRA path, strictly.

ComfyUI's LoRA loader places the tensors it recognises and only logs the others; a layer LoRA that silently loses
part of its tensors gives plausible but wrong images. So before anything is patched, every tensor of the file must
map onto the model (name and shape), else the error lists the ones that do not (docs/FORMATS.md#flux-layer-lora).
The patches themselves are ComfyUI's: comfy.lora key map and adapters, ModelPatcher.add_patches on a clone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import torch

from ..errors import LayerStackError

# (up, down) name endings of one LoRA module "<base><ending>", as ComfyUI's LoRA adapter accepts them.
UP_DOWN = (
    (".lora_up.weight", ".lora_down.weight"),  # kohya: lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight
    (".lora_B.weight", ".lora_A.weight"),  # diffusers/PEFT: transformer.transformer_blocks.0.attn.to_q.lora_B.weight
    ("_lora.up.weight", "_lora.down.weight"),
    (".lora.up.weight", ".lora.down.weight"),
    (".lora_B.default.weight", ".lora_A.default.weight"),
    (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight"),
    (".lora_B", ".lora_A"),
)
OPTIONAL = (".alpha", ".dora_scale")
_ENDINGS = sorted([(e, role) for pair in UP_DOWN for e, role in zip(pair, ("up", "down"))]
                  + [(e, e[1:]) for e in OPTIONAL], key=lambda item: -len(item[0]))
_SHOWN = 12


def split_key(key: str) -> tuple[str, str] | None:
    """(module base name, role: up/down/alpha/dora_scale), or None for a name that is not a LoRA tensor."""
    for ending, role in _ENDINGS:
        if key.endswith(ending) and len(key) > len(ending):
            return key[: -len(ending)], role
    return None


def modules(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """({base: {role: tensor key}}, keys that are no LoRA tensor)."""
    grouped: dict[str, dict[str, str]] = defaultdict(dict)
    foreign = []
    for key in state_dict:
        split = split_key(key)
        if split is None:
            foreign.append(key)
        else:
            grouped[split[0]][split[1]] = key
    return dict(grouped), foreign


def naming(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'diffusers' (transformer.*), 'kohya' (lora_unet_*) or 'other', for messages."""
    keys = list(state_dict)
    if keys and all(k.startswith("transformer.") for k in keys):
        return "diffusers"
    if keys and all(k.startswith("lora_unet_") for k in keys):
        return "kohya"
    return "other"


def lora_grammar_problems(state_dict: Mapping[str, torch.Tensor]) -> Iterable[str]:
    """File-level check: every tensor is part of an up/down pair (plus optional alpha)."""
    grouped, foreign = modules(state_dict)
    if foreign:
        yield f"{len(foreign)} tensors are not LoRA tensors (e.g. {foreign[0]!r})"
    incomplete = [base for base, parts in grouped.items() if not {"up", "down"} <= parts.keys()]
    if incomplete:
        yield f"{len(incomplete)} LoRA modules lack their up or down matrix (e.g. {incomplete[0]!r})"


def require_flux_dev(model, *, node: str) -> None:
    import comfy.supported_models as sm

    config = getattr(getattr(model, "model", None), "model_config", None)
    if type(config) is not sm.Flux:
        from .registry import model_type_name

        raise LayerStackError(
            f"{node}: input 'model' expected a FLUX.1-dev model (the layer LoRA was trained on it), "
            f"got a {model_type_name(model)} model."
        )


def _target_shape(target, weights: Mapping[str, torch.Size]) -> tuple[str, int, int] | None:
    """(weight key, rows, columns) a LoRA module must produce; rows are a slice for fused qkv/mlp weights."""
    if isinstance(target, str):
        key, rows = target, None
    else:  # (weight key, (dim, offset, length)): a slice of a fused weight
        key, (_, _, rows) = target[0], target[1]
    shape = weights.get(key)
    if shape is None or len(shape) != 2:
        return None
    return key, rows if rows is not None else shape[0], shape[1]


def unmapped(model, state_dict: Mapping[str, torch.Tensor], key_map: Mapping[str, object]) -> list[str]:
    """Every tensor of the file that would not patch the model, with the reason."""
    weights = {k: v.shape for k, v in model.model.state_dict().items()}
    grouped, foreign = modules(state_dict)
    problems = [f"{k} (not a LoRA tensor name)" for k in foreign]
    for base, parts in grouped.items():
        target = key_map.get(base)
        if target is None:
            problems += [f"{k} (no model weight is called {base!r})" for k in parts.values()]
            continue
        if not {"up", "down"} <= parts.keys():
            problems += [f"{k} (its up/down partner is missing)" for k in parts.values()]
            continue
        expected = _target_shape(target, weights)
        up, down = state_dict[parts["up"]], state_dict[parts["down"]]
        if expected is None:
            problems.append(f"{parts['up']} (maps to {target}, which is not a linear weight)")
            continue
        key, rows, cols = expected
        if up.ndim != 2 or down.ndim != 2 or up.shape[0] != rows or down.shape[1] != cols or up.shape[1] != down.shape[0]:
            problems.append(f"{parts['up']} {list(up.shape)} / {parts['down']} {list(down.shape)} (the model weight "
                            f"{key} needs up [{rows}, r] and down [r, {cols}])")
    return problems


def apply_layer_lora(model, state_dict: Mapping[str, torch.Tensor], strength: float, *, node: str, source: str):
    """A clone of ``model`` with the LoRA patched in by ComfyUI; the base model is not touched."""
    import comfy.lora
    import comfy.lora_convert

    require_flux_dev(model, node=node)
    lora = comfy.lora_convert.convert_lora(dict(state_dict))
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    problems = unmapped(model, lora, key_map)
    if problems:
        shown = "\n  ".join(problems[:_SHOWN]) + (f"\n  … and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN
                                                  else "")
        raise LayerStackError(
            f"{node}: {source} ({naming(state_dict)} key naming, {len(state_dict)} tensors) does not fit this Flux "
            f"model; {len(problems)} tensor(s) would not be applied:\n  {shown}"
        )
    patches = comfy.lora.load_lora(lora, key_map)
    if len(patches) != len(modules(lora)[0]):
        raise LayerStackError(f"{node}: ComfyUI built {len(patches)} patches from the {len(modules(lora)[0])} LoRA "
                              f"modules of {source}; every module must become one patch.")
    patched = model.clone()
    applied = set(patched.add_patches(patches, strength))
    missed = [str(k) for k in patches if k not in applied]
    if missed:
        raise LayerStackError(f"{node}: ComfyUI did not apply {len(missed)} patch(es) of {source}: {missed[:_SHOWN]}")
    return patched
