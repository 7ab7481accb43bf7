"""The one home of what node modules share: the base class every node derives from (its id declared once, every
combo value checked), the Schema helper, socket types, option lists, and the input/output declarations several
nodes have in common.

Combo values are checked here because ComfyUI 0.3.75 does not validate V3 combo inputs sent through the API (it
checks only list-typed V1 inputs): without this, an out-of-list value would reach a node and be misread or fail
with a bare KeyError. Newer ComfyUIs check them at /prompt already; the check then never fires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect

from comfy_api.latest import io

from ..errors import LayerStackError, node_error
from ..layer_stack.stack import LayerStack
from ..layer_vae.runtime import PASSES_CHOICES
from ..models.conditioning_images import RESIZE_MODE_NAMES, ResizeMode
from .categories import LEGACY_CATEGORY
from .search_words import search_aliases

MAX_RESOLUTION = 16384  # ComfyUI's nodes.MAX_RESOLUTION; not imported, nodes.py pulls in the whole core


# --- the base class and the Schema helper --------------------------------------------------------------------------

class LayerStackNode(io.ComfyNode):
    """Base of every node of the pack.

    NODE_ID is the node's id, declared once: `define_schema` passes it to `schema()` and `execute` names it in
    errors (execute runs on a locked clone of the class, so it reads the class attribute, not GET_SCHEMA()).
    Every `execute` a subclass defines is wrapped so that each Combo input's value is checked against the options
    its schema declares before the node's own code runs.
    """

    NODE_ID: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        execute = cls.__dict__.get("execute")
        # ComfyUI clones node classes (with the same __dict__) before each run: wrap each execute only once.
        if isinstance(execute, classmethod) and not getattr(execute.__func__, "checks_combos", False):
            cls.execute = classmethod(_checking_combos(execute.__func__))


def _checking_combos(execute):
    signature = inspect.signature(execute)

    @functools.wraps(execute)
    def checked(cls, *args, **kwargs):
        # ComfyUI passes inputs by name; positional arguments come only from direct calls (tests, other code).
        check_combo_values(cls, _named_arguments(signature, cls, args, kwargs) if args else kwargs)
        return execute(cls, *args, **kwargs)

    checked.checks_combos = True
    return checked


def _named_arguments(signature: inspect.Signature, cls, args, kwargs) -> dict:
    named = dict(signature.bind_partial(cls, *args, **kwargs).arguments)
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            named.update(named.pop(parameter.name, {}))
    return named


def check_combo_values(node_class: type[LayerStackNode], inputs: dict) -> None:
    """Refuse a value of a Combo input that is not one of its options (naming node, input, options and value)."""
    for spec in node_class.define_schema().inputs:
        if isinstance(spec, io.Combo.Input) and inputs.get(spec.id) is not None:
            value = inputs[spec.id]
            if value not in spec.options:
                raise node_error(node_class.NODE_ID, spec.id, f"one of {list(spec.options)}", repr(value))


# --- newer-host fields: used where the host knows them, dropped where it does not --------------------------------
# Fields of newer ComfyUIs that only help a user find, sort or read a node (search_aliases, essentials_category on
# io.Schema; `advanced` on every io.*.Input: the frontend folds such inputs away behind "show advanced"). Where the
# host lacks one it is dropped; any other field the host does not know is a mistake (a typo must not vanish) and is
# refused.
NEWER_HOST_SCHEMA_FIELDS = frozenset({"search_aliases", "essentials_category"})
NEWER_HOST_INPUT_FIELDS = frozenset({"advanced"})
_SCHEMA_FIELDS = frozenset(f.name for f in dataclasses.fields(io.Schema))
SEARCH_WORDS_NOTE = " (Search words: {}.)"  # where the host has no search_aliases, the words end the description
# Set on every input declared with advanced(), on any host, so the pack's own help pages (scripts/make_node_docs.py)
# can say which inputs are advanced even where the host drops the field.
ADVANCED_MARK = "layerstack_advanced"


def _host_fields(what: str, fields: dict, host_fields: frozenset, newer_fields: frozenset) -> dict:
    """`fields` without the `newer_fields` this host does not know; TypeError for any other unknown field."""
    unknown = set(fields) - host_fields
    if unknown - newer_fields:
        raise TypeError(f"{what} has no field(s) {sorted(unknown - newer_fields)} on this ComfyUI, and they are not "
                        f"among the newer-host fields the pack drops ({sorted(newer_fields)})")
    return {k: v for k, v in fields.items() if k not in unknown}


@functools.cache
def _input_fields(input_class: type) -> frozenset:
    return frozenset(inspect.signature(input_class.__init__).parameters) - {"self"}


def schema(**fields) -> io.Schema:
    """io.Schema, without the NEWER_HOST_SCHEMA_FIELDS this ComfyUI does not know (search_aliases: after 0.3.75).

    Adds the search words of nodes/search_words.py: as `search_aliases` where the host has them, else at the end of
    the description (SEARCH_WORDS_NOTE). The legacy nodes keep exactly what the old pack declared.
    """
    if fields.get("category") != LEGACY_CATEGORY:
        words = search_aliases(fields["node_id"], fields.get("category", ""))
        if "search_aliases" in _SCHEMA_FIELDS:
            fields["search_aliases"] = list(dict.fromkeys([*fields.get("search_aliases", []), *words]))
        elif fields.get("description"):
            fields["description"] = fields["description"] + SEARCH_WORDS_NOTE.format(", ".join(words))
    return io.Schema(**_host_fields("io.Schema", fields, _SCHEMA_FIELDS, NEWER_HOST_SCHEMA_FIELDS))


def plain_description(made: io.Schema) -> str:
    """The node's description as declared, without the search words schema() appends where the host has no
    search_aliases (the same text on every host)."""
    description = made.description or ""
    if made.category != LEGACY_CATEGORY and "search_aliases" not in _SCHEMA_FIELDS:
        note = SEARCH_WORDS_NOTE.format(", ".join(search_aliases(made.node_id, made.category or "")))
        description = description.removesuffix(note)
    return description


def declare(input_class: type, id: str, **fields) -> io.Input:
    """input_class(id, **fields), without the NEWER_HOST_INPUT_FIELDS this ComfyUI's input class does not know."""
    what = f"the {getattr(getattr(input_class, 'Parent', None), 'io_type', '?')} input {id!r}"
    return input_class(id, **_host_fields(what, fields, _input_fields(input_class), NEWER_HOST_INPUT_FIELDS))


def advanced(input_class: type, id: str, **fields) -> io.Input:
    """An input artists rarely touch: `advanced` where the host has it (the frontend folds it away), a plain input
    on older hosts (0.3.75). Same id, default and position either way, so workflows store the same values."""
    spec = declare(input_class, id, advanced=True, **fields)
    setattr(spec, ADVANCED_MARK, True)
    return spec


def is_advanced(spec: io.Input) -> bool:
    """Declared with advanced(), on any host."""
    return bool(getattr(spec, ADVANCED_MARK, False))


# --- socket types and option lists ---------------------------------------------------------------------------------

LayerStackType = io.Custom("LAYER_STACK")
LayerVAE = io.Custom("LAYER_VAE")

PASSES_OPTIONS = [str(p) for p in PASSES_CHOICES]

# What a connected MASK means. Our decode nodes output alpha; LoadImage outputs its inverse.
MASK_IS_ALPHA = "alpha (1 = opaque)"
MASK_IS_LOADIMAGE = "LoadImage mask (1 = transparent)"
MASK_MEANINGS = [MASK_IS_ALPHA, MASK_IS_LOADIMAGE]

STACK_TOOLTIP = (
    "A layer stack: named layers, bottom to top, each straight (un-premultiplied) RGB plus alpha (1 = opaque); "
    "hidden layers are kept but not composited."
)
ALPHA_IN_TOOLTIP = (
    "Alpha, 1 = opaque (the LayerStack decode nodes' MASK). For LoadImage's mask (1 = transparent) put InvertMask "
    "in between. Leave unconnected when 'image' is RGBA."
)


def check_stack(stack: object, node: str, input_name: str = "stack") -> LayerStack:
    if not isinstance(stack, LayerStack):
        raise node_error(node, input_name, "a LAYER_STACK", f"a {type(stack).__name__}")
    return stack


@contextlib.contextmanager
def node_errors(node: str):
    """Prefix the node id to errors from the pure helpers, whose messages name the input."""
    try:
        yield
    except LayerStackError as e:
        raise LayerStackError(f"{node}: {e}") from e


# --- inputs and outputs several nodes declare alike ----------------------------------------------------------------

def image_input(tooltip: str = "Straight RGB, or RGBA (alpha last).") -> io.Image.Input:
    return io.Image.Input("image", tooltip=tooltip)


def alpha_input() -> io.Mask.Input:
    return io.Mask.Input("alpha", optional=True, tooltip=ALPHA_IN_TOOLTIP)


def mask_meaning_input(tooltip: str) -> io.Combo.Input:
    return io.Combo.Input("mask_meaning", options=MASK_MEANINGS, default=MASK_IS_ALPHA, tooltip=tooltip)


def rgba_outputs(subject: str) -> list[io.Output]:
    """The IMAGE + alpha MASK pair every node that hands out a transparent picture returns."""
    return [
        io.Image.Output(display_name="image", tooltip=f"{subject}: straight RGB."),
        io.Mask.Output(display_name="alpha", tooltip=f"{subject}: alpha (1 = opaque; the inverse of LoadImage's mask)."),
    ]


# --- declarations shared by the SD1.5 and SDXL layer nodes (ids, defaults and ranges are relied on by workflows) ---

def model_input(family: str) -> io.Input:
    """The `model` input of a layer node for `family` ("SD1.5", "SDXL")."""
    return io.Model.Input("model", tooltip=f"An {family} model. It is cloned; the input model stays untouched.")


def patched_model_output() -> io.Output:
    return io.Model.Output(display_name="model", tooltip="The patched clone of the model.")


def schedule_inputs() -> list[io.Input]:
    """`start_percent` / `stop_percent`: the part of the noise schedule in which the layer model is active."""
    return [
        advanced(io.Float.Input, "start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
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
