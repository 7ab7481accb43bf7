"""UI-format (the editor's "Save") workflow → API-format prompt, using the server's ``/object_info``: ``ui_to_api``.

The one way in is ``ui_to_api``; nothing else of the runner depends on this module. It exists because a saved UI
workflow is what users have at hand, but ComfyUI has no server route for the conversion (the editor does it in
JavaScript, ``graphToPrompt``), so this re-states the editor's rules and can drift with new frontend releases. The
API format (the editor's "Export (API)") needs none of it and is what the README recommends. Rules of ComfyUI
frontend 1.32 (the one shipped with ComfyUI 0.3.75):

* ``widgets_values`` is positional: one value per widget input, in the node's ``input_order`` (required, then
  optional), with extra values the frontend stores but never sends: ``control_after_generate`` after INT inputs that
  ask for it (and after every ``seed``/``noise_seed``), plus ``control_filter_list`` after combos that ask for it, a
  ``refresh`` button after remote combos, and the ``upload`` button after the required inputs of media loaders;
* virtual nodes (Reroute, PrimitiveNode, Note, MarkdownNote) are not sent: a Reroute passes its input link through,
  a PrimitiveNode writes its value into the widgets it feeds;
* muted nodes (mode 2) are dropped together with every input linked to them; bypassed nodes (mode 4) are dropped
  and their consumers are linked to the bypassed node's input of the same type;
* STRING widgets with ``dynamicPrompts`` get ``//`` and ``/* */`` comments stripped and ``{a|b}`` choices resolved;
* ``_meta.title`` is the node's own title, else the host's display name for its class (hosts rename classes: 0.33.0
  shows EmptyImage as "Empty Image"), so the same file converts to different titles on different hosts.

Frontend 1.49 (shipped with ComfyUI 0.33.0) keeps these rules and draws more input types as widgets (``WIDGET_TYPES``),
some of them widget-only (``socketless``) with an object value: core's *Create Layered Image* (ImageCompositor) has a
required ``compositor`` input of type COMPOSITOR, default ``{}``, holding the layer editor's saved composition. Such a
value is one entry of ``widgets_values`` and is sent as it is (an object; an empty ``{}`` until the editor saves one).
An input's ``widgetType`` option, where present, names the widget drawn for it (e.g. ``FLOAT,INT`` drawn as FLOAT), and
a CURVE widget's list is sent as ``{"__type__": "CURVE", "__value__": [...]}``. Dynamic combos (COMFY_DYNAMICCOMBO_V3,
whose chosen option adds its own widgets) are not re-stated: a node with one is refused with a pointer to Export (API).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from .errors import BatchError
from .workflow import is_ui_workflow

MODE_NEVER = 2  # "muted" in the editor
MODE_BYPASS = 4
VIRTUAL_TYPES = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})
# Input types the frontend draws as a widget (ComfyWidgets of frontends 1.32 and 1.49 + core extensions); everything
# else is a socket. A type appears in /object_info only on hosts whose frontend knows it, so one set serves all hosts.
WIDGET_TYPES = frozenset(
    {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN", "IMAGEUPLOAD", "COLOR", "IMAGECOMPARE", "CHART",
     "GALLERIA", "TEXTAREA", "WEBCAM",
     # frontend 1.49 (ComfyUI 0.33.0)
     "BOUNDING_BOX", "BOUNDING_BOXES", "PAINTER", "COMPOSITOR", "CURVE", "RANGE", "VIDEO_EDIT", "COLORS"}
)
# Frontend 1.49's dynamic widgets (a combo whose options bring their own inputs): not converted, refused by name.
DYNAMIC_WIDGET_TYPES = frozenset({"COMFY_DYNAMICCOMBO_V3"})
# Widget types whose saved value is an object (JSON dict), sent to /prompt as it is.
OBJECT_WIDGET_TYPES = frozenset({"COMPOSITOR", "BOUNDING_BOX", "RANGE", "VIDEO_EDIT"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
SEED_NAMES = ("seed", "noise_seed")
MEDIA_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")

Warn = Callable[[str], None]


def ui_to_api(workflow: dict, object_info: dict, *, warn: Warn | None = None, seed: int = 0) -> dict:
    """Convert a UI-format workflow. ``seed`` drives the random choices of ``{a|b}`` dynamic prompts."""
    return _Converter(workflow, object_info, warn or (lambda _m: None), random.Random(seed)).run()


# --------------------------------------------------------------------------------------------------------------------
# widget helpers


def _opts(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _spec_type(spec: list) -> str:
    """The widget kind: COMBO for a list of choices, else the ``widgetType`` option where given, else the type."""
    if isinstance(spec[0], list):
        return "COMBO"
    return str(_opts(spec).get("widgetType") or spec[0])


def _is_widget(spec: list) -> bool:
    if _opts(spec).get("forceInput"):
        return False
    return _spec_type(spec) in WIDGET_TYPES


def _has_control(name: str, spec: list) -> bool:
    opts = _opts(spec)
    kind = _spec_type(spec)
    if kind == "INT":
        # frontend: `control_after_generate ?? ["seed", "noise_seed"].includes(name)`
        flag = opts.get("control_after_generate")
        return bool(flag) if flag is not None else name in SEED_NAMES
    return kind == "COMBO" and bool(opts.get("control_after_generate"))


def _default(spec: list):
    opts = _opts(spec)
    if "default" in opts:
        return opts["default"]
    kind = _spec_type(spec)
    choices = spec[0] if isinstance(spec[0], list) else opts.get("options")
    if kind == "COMBO":
        return choices[0] if choices else ""
    return {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False}.get(kind, "")


def _fits(spec: list, value) -> bool:
    kind = _spec_type(spec)
    if kind in ("INT", "FLOAT"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    if kind in ("STRING", "TEXTAREA", "MARKDOWN"):
        return isinstance(value, str)
    if kind == "COMBO":
        opts = _opts(spec)
        if isinstance(value, list):  # multi-select combos hold a list of choices
            return bool(opts.get("multi_select") or opts.get("multiselect"))
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if kind in OBJECT_WIDGET_TYPES:
        return isinstance(value, dict)
    return True


def _sent_value(spec: list, value):
    """What the frontend's graphToPrompt sends for a widget value: lists wrapped (a bare list means a link)."""
    if not isinstance(value, list):
        return value
    if _spec_type(spec) == "CURVE":
        return {"__type__": "CURVE", "__value__": value}
    return {"__value__": value}


def _dynamic_prompt(text: str, rng: random.Random) -> str:
    """The frontend's ``processDynamicPrompt``: strip comments, resolve ``{a|b|c}`` (nested, ``\\`` escapes)."""
    text = re.sub(r"/\*[\s\S]*?\*/|//.*", "", text)
    pos = 0

    def escape() -> str:
        nonlocal pos
        out = "\\" + text[pos] if pos < len(text) else "\\"
        pos += 1
        return out

    def choice_block() -> str:
        nonlocal pos
        options, current, depth = [], "", 0
        while pos < len(text):
            ch = text[pos]
            pos += 1
            if ch == "\\":
                current += escape()
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                if not depth:
                    break
                depth -= 1
            elif ch == "|" and not depth:
                options.append(current)
                current = ""
                continue
            current += ch
        options.append(current)
        return _dynamic_prompt(rng.choice(options), rng)

    out = ""
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if ch == "\\":
            out += escape()
        elif ch == "{":
            out += choice_block()
        else:
            out += ch
    return re.sub(r"\\([{}|])", r"\1", out)


def _valid_connection(a: str, b: str) -> bool:
    """litegraph's ``isValidConnection`` for two type strings."""
    if a in ("", "*") or b in ("", "*") or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return a == b
    return bool(set(a.split(",")) & set(b.split(",")))


# --------------------------------------------------------------------------------------------------------------------


class _Converter:
    def __init__(self, workflow: dict, object_info: dict, warn: Warn, rng: random.Random):
        if not is_ui_workflow(workflow):
            raise BatchError(
                "UI workflow: expected a JSON object with a 'nodes' list (the editor's Save format), "
                f"got {type(workflow).__name__} with keys {sorted(workflow)[:8] if isinstance(workflow, dict) else '-'}"
            )
        self.info = object_info
        self.warn = warn
        self.rng = rng
        self.nodes: dict[str, dict] = {}
        for node in workflow["nodes"]:
            if not isinstance(node, dict) or "id" not in node or "type" not in node:
                raise BatchError(f"UI workflow: every entry of 'nodes' needs 'id' and 'type', got {node!r:.200}")
            if str(node["id"]) in self.nodes:
                raise BatchError(f"UI workflow: node id {node['id']} is used by two nodes ({node['type']} and "
                                 f"{self.nodes[str(node['id'])]['type']}); expected unique ids")
            self.nodes[str(node["id"])] = node
        self.links: dict[int, tuple[str, int, str, int, str]] = {}
        for link in workflow.get("links") or []:
            if isinstance(link, dict):  # schema version 1 stores links as objects
                row = (link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                       link.get("type", "*"))
            else:
                row = tuple(link)
            if len(row) < 5:
                raise BatchError(f"UI workflow: a link needs [id, origin_id, origin_slot, target_id, target_slot, "
                                 f"type], got {link!r}")
            lid, oid, oslot, tid, tslot = row[:5]
            ltype = row[5] if len(row) > 5 else "*"
            self.links[int(lid)] = (str(oid), int(oslot), str(tid), int(tslot), ltype)
        subgraph_ids = {
            sg.get("id") for sg in ((workflow.get("definitions") or {}).get("subgraphs") or []) if isinstance(sg, dict)
        }
        for nid, node in self.nodes.items():
            ntype = node["type"]
            if ntype in subgraph_ids:
                raise BatchError(
                    f"UI workflow: node {nid} is a subgraph ({node.get('title') or ntype}); subgraphs are not "
                    "supported by the converter: unpack it in the editor (right-click → Unpack Subgraph) or export "
                    "the workflow in API format"
                )
            if str(ntype).startswith(("workflow>", "workflow/")):
                raise BatchError(
                    f"UI workflow: node {nid} is a group node ({ntype}), which the converter does not support: "
                    "convert it back to nodes in the editor or export the workflow in API format"
                )

    # -- helpers -------------------------------------------------------------------------------------------------
    def _mode(self, node: dict) -> int:
        return int(node.get("mode") or 0)

    def _is_virtual(self, node: dict) -> bool:
        return node["type"] in VIRTUAL_TYPES and node["type"] not in self.info

    def _input_link(self, node: dict, slot: int):
        inputs = node.get("inputs") or []
        if slot >= len(inputs) or slot < 0:
            return None
        lid = inputs[slot].get("link")
        if lid is None:
            return None
        link = self.links.get(int(lid))
        if link is None:
            raise BatchError(f"UI workflow: node {node['id']} input '{inputs[slot].get('name')}' refers to link "
                             f"{lid}, which is not in 'links'")
        if link[0] not in self.nodes:
            raise BatchError(f"UI workflow: link {lid} comes from node {link[0]}, which is not in 'nodes'")
        return link

    # -- link resolution (ExecutableNodeDTO.resolveInput / resolveOutput) ----------------------------------------
    def _resolve_input(self, node: dict, slot: int, want: str | None, seen: set) -> tuple[str, int] | None:
        key = ("I", str(node["id"]), slot)
        if key in seen:
            raise BatchError(f"UI workflow: circular link through node {node['id']} input {slot}")
        seen.add(key)
        link = self._input_link(node, slot)
        if link is None:
            return None
        slot_type = (node.get("inputs") or [])[slot].get("type", "*")
        return self._resolve_output(self.nodes[link[0]], link[1], want if want is not None else slot_type, seen)

    def _resolve_output(self, node: dict, slot: int, want: str, seen: set) -> tuple[str, int] | None:
        key = ("O", str(node["id"]), slot)
        if key in seen:
            raise BatchError(f"UI workflow: circular link through node {node['id']} output {slot}")
        seen.add(key)
        if self._mode(node) == MODE_BYPASS:
            through = self._bypass_input(node, slot, want)
            if through is None:
                self.warn(f"node {node['id']} ({node['type']}) is bypassed but has no input of type {want} to pass "
                          "on; its consumers lose that input")
                return None
            return self._resolve_input(node, through, None, seen)
        if self._is_virtual(node):
            link = self._input_link(node, slot)  # a Reroute passes input i to output i; others have no inputs
            if link is None:
                return None
            return self._resolve_output(self.nodes[link[0]], link[1], want, seen)
        return str(node["id"]), slot

    def _bypass_input(self, node: dict, slot: int, want: str) -> int | None:
        inputs = node.get("inputs") or []
        outputs = node.get("outputs") or []
        out_type = outputs[slot].get("type", "*") if slot < len(outputs) else "*"
        if want in ("*", ""):
            index = slot if len(inputs) > slot else 0
            return index if index < len(inputs) else None
        if slot < len(inputs):
            t = inputs[slot].get("type", "*")
            if _valid_connection(t, out_type) and _valid_connection(t, want):
                return slot
        for i, inp in enumerate(inputs):
            if inp.get("type") == want:
                return i
        for i, inp in enumerate(inputs):
            t = inp.get("type", "*")
            if _valid_connection(t, out_type) and _valid_connection(t, want):
                return i
        return None

    # -- widgets ---------------------------------------------------------------------------------------------------
    def _widget_values(self, nid: str, node: dict, spec: dict) -> dict:
        sections = spec.get("input") or {}
        order = spec.get("input_order") or {sec: list((sections.get(sec) or {}).keys()) for sec in sections}
        widgets: list[tuple[str, list]] = []
        slots: list[tuple[str, str, list]] = []  # (kind, name, spec)
        ordered: list[tuple[str, list, bool]] = []  # widget or forceInput inputs, for the old-layout migration
        for sec in ("required", "optional"):
            defs = sections.get(sec) or {}
            media = False
            for name in order.get(sec) or []:
                ispec = defs.get(name)
                if not isinstance(ispec, list) or not ispec:
                    continue
                if isinstance(ispec[0], str) and ispec[0] in DYNAMIC_WIDGET_TYPES:
                    raise BatchError(
                        f"UI workflow: node {nid} ({node['type']}) input '{name}' is a {ispec[0]} (a choice whose "
                        "widgets the editor adds and removes as it changes), which the converter does not support: "
                        "export the workflow in API format (Export (API)) instead"
                    )
                opts = _opts(ispec)
                if not _is_widget(ispec):
                    if opts.get("forceInput"):
                        ordered.append((name, ispec, True))
                    continue
                ordered.append((name, ispec, False))
                widgets.append((name, ispec))
                slots.append(("widget", name, ispec))
                if isinstance(opts.get("remote"), dict) and opts["remote"].get("refresh_button"):
                    slots.append(("refresh", name, ispec))
                if _has_control(name, ispec):
                    slots.append(("control", name, ispec))
                    if _spec_type(ispec) == "COMBO":
                        slots.append(("filter", name, ispec))
                media = media or any(opts.get(f) for f in MEDIA_UPLOAD_FLAGS)
            if sec == "required" and media:
                slots.append(("upload", "upload", []))

        values = node.get("widgets_values")
        label = f"node {nid} ({node['type']})"
        names = [n for n, _ in widgets]
        if isinstance(values, dict):  # some packs save widgets by name
            return {k: v for k, v in values.items() if k in names}
        values = self._drop_force_input_values(list(values or []), ordered)

        out: dict = {}
        missing: list[str] = []
        i = 0
        control_taken = False
        for kind, name, ispec in slots:
            have = i < len(values)
            value = values[i] if have else None
            if kind == "widget":
                if not have:
                    out[name] = _default(ispec)
                    missing.append(name)
                    continue
                if not _fits(ispec, value):
                    raise BatchError(
                        f"UI workflow: {label}: saved widget value #{i} {value!r} does not fit input '{name}' "
                        f"({_spec_type(ispec)}); widgets_values {values!r} does not match the server's widget "
                        f"inputs {names} - the workflow was probably saved with another version of this node"
                    )
                if _spec_type(ispec) == "STRING" and _opts(ispec).get("dynamicPrompts"):
                    value = _dynamic_prompt(value, self.rng)
                out[name] = _sent_value(ispec, value)
                i += 1
            elif kind == "control":
                control_taken = have and isinstance(value, str) and value in CONTROL_VALUES
                i += control_taken
            elif kind == "filter":
                if control_taken and have and (value is None or isinstance(value, str)):
                    i += 1
            elif kind == "refresh":
                if have and value in ("refresh", None):
                    i += 1
            elif kind == "upload":
                if have and value in ("image", None):
                    i += 1
        extra = [v for v in values[i:] if v is not None]
        if extra:
            raise BatchError(
                f"UI workflow: {label}: widgets_values {values!r} has {len(extra)} value(s) more than the server's "
                f"widget inputs {names} take (left over: {extra!r}) - the workflow was probably saved with another "
                "version of this node"
            )
        if missing:
            self.warn(f"{label}: no saved value for {missing}; using the server's defaults")
        return out

    @staticmethod
    def _drop_force_input_values(values: list, ordered: list[tuple[str, list, bool]]) -> list:
        """Old frontends also stored a value for ``forceInput`` inputs; ``migrateWidgetsValues`` drops them when the
        count matches that layout (each seed input counted twice, as the frontend does)."""
        if not any(forced for _n, _s, forced in ordered):
            return values
        count = sum(2 if (_opts(s).get("control_after_generate") or n in SEED_NAMES) else 1 for n, s, _f in ordered)
        if count != len(values):
            return values
        return [v for (_n, _s, forced), v in zip(ordered, values) if not forced]

    def _apply_primitives(self, prompt: dict) -> None:
        """PrimitiveNode.applyToGraph: the primitive's value replaces the widget value of every input it feeds."""
        for pid, prim in self.nodes.items():
            if prim["type"] != "PrimitiveNode" or not self._is_virtual(prim):
                continue
            values = prim.get("widgets_values") or []
            if not values:
                continue
            for _lid, (oid, _oslot, tid, tslot, _t) in self.links.items():
                if oid != pid or tid not in prompt:
                    continue
                target = self.nodes[tid]
                slot = (target.get("inputs") or [])[tslot] if tslot < len(target.get("inputs") or []) else None
                if slot is None:
                    continue
                name = (slot.get("widget") or {}).get("name") or slot.get("name")
                value = values[0]
                ispec = self._input_spec(target["type"], name)
                if isinstance(value, str) and ispec and _opts(ispec).get("dynamicPrompts"):
                    value = _dynamic_prompt(value, self.rng)
                prompt[tid]["inputs"][name] = _sent_value(ispec or ["*"], value)

    def _input_spec(self, ntype: str, name: str) -> list | None:
        sections = (self.info.get(ntype) or {}).get("input") or {}
        for sec in ("required", "optional"):
            ispec = (sections.get(sec) or {}).get(name)
            if ispec is not None:
                return ispec
        return None

    def run(self) -> dict:
        prompt: dict = {}
        for nid, node in self.nodes.items():
            if self._mode(node) in (MODE_NEVER, MODE_BYPASS) or self._is_virtual(node):
                continue
            ntype = node["type"]
            spec = self.info.get(ntype)
            if spec is None:
                raise BatchError(
                    f"UI workflow: node {nid} has type '{ntype}', which the server does not know (missing custom "
                    "node pack?); expected one of the classes in /object_info"
                )
            inputs = self._widget_values(nid, node, spec)
            for slot, inp in enumerate(node.get("inputs") or []):
                src = self._resolve_input(node, slot, None, set())
                if src is not None:
                    inputs[inp["name"]] = [src[0], src[1]]
            prompt[nid] = {"inputs": inputs, "class_type": ntype,
                           "_meta": {"title": node.get("title") or spec.get("display_name") or ntype}}
        self._apply_primitives(prompt)
        for entry in prompt.values():  # frontend: drop inputs linked to nodes that are not sent
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                    del entry["inputs"][name]
        return prompt
