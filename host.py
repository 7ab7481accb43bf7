"""What the running ComfyUI offers that older ones lack, each behind a feature check (docs/HOSTS.md).

ComfyUI is imported inside the functions, so layer_vae/ stays importable without it.
"""

from __future__ import annotations


def model_patcher_class():
    """The patcher class core models get: `CoreModelPatcher` where the host has it (a dynamic-VRAM patcher when
    dynamic VRAM is on), else the plain `ModelPatcher`. Our networks then load, offload and move between devices
    like core ones."""
    import comfy.model_patcher

    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


def is_oom(error: BaseException) -> bool:
    """The host's out-of-memory predicate (it also knows accelerator errors that mean OOM), else the OOM type."""
    import comfy.model_management as mm

    predicate = getattr(mm, "is_oom", None)
    if predicate is not None:
        return bool(predicate(error))
    return isinstance(error, mm.OOM_EXCEPTION)


def is_quantized(weight) -> bool:
    """A weight in the host's quantized tensor type (fp8 scaled and other layouts); False on hosts without one."""
    try:
        from comfy.quant_ops import QuantizedTensor
    except ImportError:
        return False
    return isinstance(weight, QuantizedTensor)
