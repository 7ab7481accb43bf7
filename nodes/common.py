"""Small helpers every node module shares: categories, a Schema that tolerates fields newer ComfyUIs add, and the
input/output declarations the SD1.5 and SDXL layer nodes have in common."""

from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from ..models.conditioning_images import RESIZE_MODE_NAMES, ResizeMode

CATEGORY = "LayerStack"
LEGACY_CATEGORY = "LayerStack/legacy (ComfyUI-layerdiffuse)"

_SCHEMA_FIELDS = {f.name for f in dataclasses.fields(io.Schema)}


def schema(**fields) -> io.Schema:
    """io.Schema without the fields this ComfyUI does not know (e.g. search_aliases arrived after 0.3.75)."""
    return io.Schema(**{k: v for k, v in fields.items() if k in _SCHEMA_FIELDS})


# --- declarations shared by the SD1.5 and SDXL layer nodes (ids, defaults and ranges are relied on by workflows) ---

def model_input(family: str) -> io.Input:
    """The `model` input of a layer node for `family` ("SD1.5", "SDXL")."""
    return io.Model.Input("model", tooltip=f"An {family} model. It is cloned; the input model stays untouched.")


def patched_model_output() -> io.Output:
    return io.Model.Output(display_name="model", tooltip="The patched clone of the model.")


def schedule_inputs() -> list[io.Input]:
    """`start_percent` / `stop_percent`: the part of the noise schedule in which the layer model is active."""
    return [
        io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                       tooltip="Where in the noise schedule the layer model switches on (0 = first step)."),
        io.Float.Input("stop_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                       tooltip="Forge's 'Stop At': where in the noise schedule the layer model switches off and the "
                               "base model finishes (1 = never). Schedule percent, not step count."),
    ]


def resize_mode_input(what_is_fitted: str) -> io.Input:
    """The `resize_mode` combo; `what_is_fitted` starts the tooltip, e.g. "How an image of another size is fitted"."""
    return io.Combo.Input("resize_mode", options=list(RESIZE_MODE_NAMES), default=ResizeMode.CROP_AND_RESIZE.value,
                          tooltip=f"{what_is_fitted}: crop and resize (cover, crop the overflow), just resize "
                                  f"(stretch), resize and fill (fit inside, fill with the median border colour).")
