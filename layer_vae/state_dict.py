"""Strict loading of a state dict into the decoder/encoder, with errors that say what is wrong.

torch's own strict load already refuses a mismatch; this runs first so the message names the
file, counts what is missing/unexpected/misshapen and says which file it looks like instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import LayerStackError
from ..models.files import state_dict_mismatch

_SHOWN = 5


def _sample(items: list[str]) -> str:
    more = f", … and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _looks_like(state_dict: Mapping[str, torch.Tensor]) -> str:
    keys = list(state_dict)
    if any("::" in k for k in keys):
        return " It looks like an SDXL weight-patch file (layer_xl_*), not a transparent VAE file."
    if any(k.startswith("hookers.") for k in keys):
        return " It looks like an SD1.5 attention-sharing file (layer_sd15_*), not a transparent VAE file."
    if any(k.startswith(("decoder.", "encoder.", "sd_vae.")) for k in keys):
        return " It looks like the Flux TransparentVAE, which is not supported (SD1.5/SDXL files only)."
    if "latent_conv_in.weight" in state_dict:
        return " It looks like a transparent decoder file."
    if "blocks.0.weight" in state_dict and "conv_in.weight" not in state_dict:
        return " It looks like a transparent offset-encoder file."
    return ""


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, what: str) -> None:
    """Raise LayerStackError unless ``state_dict`` has exactly the module's keys and shapes."""
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
        + _looks_like(state_dict)
    )


def load_strict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, what: str, assign: bool = False
) -> nn.Module:
    """Check, then load. ``assign=True`` adopts the tensors (for a module built on the meta device)."""
    check_state_dict(module, state_dict, source=source, what=what)
    non_float = [k for k, v in state_dict.items() if not v.dtype.is_floating_point]
    if non_float:
        raise LayerStackError(f"{source}: {what} tensors must be floating point; {_sample(non_float)} are not.")
    module.load_state_dict(state_dict, strict=True, assign=assign)
    return module
