"""Strict loading of a state dict into the decoder/encoder, with errors that say what is wrong.

torch's own strict load already refuses a mismatch; this runs first so the message names the
file and counts what is missing/unexpected/misshapen. Which official file a state dict looks like is
models/registry.py's business (the file loaders check the key grammar before a state dict gets here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..errors import LayerStackError

_SHOWN = 5
Hint = Callable[[Mapping[str, torch.Tensor]], str]


def _sample(items: list[str]) -> str:
    more = f", … and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def state_dict_mismatch(
    expected: Mapping[str, tuple[int, ...]], state_dict: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """(missing keys, unexpected keys, (key, expected shape, found shape)) of a state dict against a module's shapes.

    Keys come in the order of `expected`, then of `state_dict`; callers word the error for their kind of file.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshapen = [(k, tuple(expected[k]), tuple(state_dict[k].shape)) for k in expected
                 if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])]
    return missing, unexpected, misshapen


# The one layer whose width depends on the latent channels, in the decoder and in the encoder.
_LATENT_LAYERS = {"latent_conv_in.weight": 1, "blocks.16.weight": 0}
_FAMILY_OF_CHANNELS = {4: "an SD1.5/SDXL file", 16: "the Flux TransparentVAE"}


def _latent_hint(wrong: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> str:
    for key, want, got in wrong:
        dim = _LATENT_LAYERS.get(key)
        if dim is not None and len(got) > dim and got[dim] in _FAMILY_OF_CHANNELS:
            return (f" {key} is for {got[dim]}-channel latents, as in {_FAMILY_OF_CHANNELS[got[dim]]}, where "
                    f"{want[dim]} are expected: pick the matching family.")
    return ""


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, what: str,
                     hint: Hint | None = None) -> None:
    """Raise LayerStackError unless ``state_dict`` has exactly the module's keys and shapes.

    ``hint`` adds a sentence saying what the state dict looks like instead (models/registry.looks_like).
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing, unexpected, wrong = state_dict_mismatch(expected, state_dict)
    misshapen = [f"{k} {list(got)} (expected {list(want)})" for k, want, got in wrong]
    if not (missing or unexpected or misshapen):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors ({_sample(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors ({_sample(unexpected)})")
    if misshapen:
        problems.append(f"{len(misshapen)} tensors of the wrong shape ({_sample(misshapen)})")
    raise LayerStackError(
        f"{source}: is not a {what} state dict (expected {len(expected)} tensors, got {len(state_dict)}): "
        + "; ".join(problems)
        + "."
        + (_latent_hint(wrong) or (hint(state_dict) if hint else ""))
    )


def load_strict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, what: str, assign: bool = False,
    hint: Hint | None = None,
) -> nn.Module:
    """Check, then load. ``assign=True`` adopts the tensors (for a module built on the meta device)."""
    check_state_dict(module, state_dict, source=source, what=what, hint=hint)
    non_float = [k for k, v in state_dict.items() if not v.dtype.is_floating_point]
    if non_float:
        raise LayerStackError(f"{source}: {what} tensors must be floating point; {_sample(non_float)} are not.")
    module.load_state_dict(state_dict, strict=True, assign=assign)
    return module
