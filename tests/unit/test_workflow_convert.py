"""UI-format → API-format conversion (batch_runner.convert.ui_to_api, its only entry) against saved node specs.

`object_info_core.json` is a slice of the real 0.3.75 `/object_info`, used as data: titles are compared with the display
names it holds, never with one host's names written into a test (hosts rename core classes). The e2e tests convert
against a live server too. Synthetic classes below cover spec shapes that no core node has (combo with
control_after_generate, forceInput).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch_runner.convert import ui_to_api
from batch_runner.errors import BatchError
from fixtures.api_twins import assert_converts_to_twin

DATA = Path(__file__).resolve().parents[1] / "data" / "batch"
INFO = json.loads((DATA / "object_info_core.json").read_text())


def _node(nid, ntype, widgets=None, inputs=(), outputs=(), mode=0, title=None):
    node = {"id": nid, "type": ntype, "mode": mode, "inputs": list(inputs), "outputs": list(outputs)}
    if widgets is not None:
        node["widgets_values"] = widgets
    if title:
        node["title"] = title
    return node


def _in(name, typ, link=None, widget=False):
    slot = {"name": name, "type": typ, "link": link}
    if widget:
        slot["widget"] = {"name": name}
    return slot


def _out(typ, links):
    return {"name": typ, "type": typ, "links": links}


def _wf(nodes, links):
    return {"nodes": nodes, "links": links, "version": 0.4}


def test_core_pair_converts_to_its_api_twin():
    ui = json.loads((DATA / "core_nodes.ui.json").read_text())
    twin = json.loads((DATA / "core_nodes.api.json").read_text())
    assert_converts_to_twin(ui_to_api(ui, INFO), twin, ui, INFO)


def test_core_pair_matches_its_twin_on_a_host_that_renames_every_class():
    ui = json.loads((DATA / "core_nodes.ui.json").read_text())
    twin = json.loads((DATA / "core_nodes.api.json").read_text())
    renamed = {cls: {**spec, "display_name": f"{spec.get('display_name') or cls} (new)"} for cls, spec in INFO.items()}
    converted = ui_to_api(ui, renamed)
    assert converted != twin  # the untitled nodes took the new names...
    assert_converts_to_twin(converted, twin, ui, renamed)  # ...and nothing else changed


def test_titles_are_the_nodes_own_else_the_hosts_display_name():
    renamed = {**INFO, "EmptyImage": {**INFO["EmptyImage"], "display_name": "Empty Image (renamed by a host)"}}
    nodes = [_node(1, "EmptyImage", [8, 8, 1, 0]), _node(2, "EmptyImage", [8, 8, 1, 0], title="Canvas")]
    api = ui_to_api(_wf(nodes, []), renamed)
    assert [api[n]["_meta"]["title"] for n in ("1", "2")] == ["Empty Image (renamed by a host)", "Canvas"]


def test_ksampler_advanced_skips_the_control_value_after_noise_seed():
    wf = _wf([_node(1, "KSamplerAdvanced", ["enable", 42, "fixed", 20, 8, "euler", "normal", 0, 10000, "disable"])], [])
    inputs = ui_to_api(wf, INFO)["1"]["inputs"]
    assert inputs == {"add_noise": "enable", "noise_seed": 42, "steps": 20, "cfg": 8, "sampler_name": "euler",
                      "scheduler": "normal", "start_at_step": 0, "end_at_step": 10000,
                      "return_with_leftover_noise": "disable"}


def test_seed_without_a_saved_control_value_still_maps():
    # A file written by a tool that does not store the control value: the next value is not a control word.
    wf = _wf([_node(1, "ImageAddNoise", [5, 0.3], [_in("image", "IMAGE")])], [])
    assert ui_to_api(wf, INFO)["1"]["inputs"] == {"seed": 5, "strength": 0.3}


def test_muted_source_drops_the_input_and_bypass_follows_the_matching_type():
    nodes = [
        _node(1, "EmptyImage", [8, 8, 1, 0], outputs=[_out("IMAGE", [1])]),
        _node(2, "LoadImageMask", ["m.png", "alpha", "image"], outputs=[_out("MASK", [2])]),
        # bypassed: its IMAGE output must be fed from its IMAGE input (slot 0), not the MASK one
        _node(3, "JoinImageWithAlpha", None, [_in("image", "IMAGE", 1), _in("alpha", "MASK", 2)],
              [_out("IMAGE", [3])], mode=4),
        _node(4, "SaveImage", ["a"], [_in("images", "IMAGE", 3), _in("filename_prefix", "STRING", widget=True)]),
        _node(5, "EmptyImage", [8, 8, 1, 0], outputs=[_out("IMAGE", [4])], mode=2),
        _node(6, "SaveImage", ["b"], [_in("images", "IMAGE", 4)]),
    ]
    links = [[1, 1, 0, 3, 0, "IMAGE"], [2, 2, 0, 3, 1, "MASK"], [3, 3, 0, 4, 0, "IMAGE"], [4, 5, 0, 6, 0, "IMAGE"]]
    api = ui_to_api(_wf(nodes, links), INFO)
    assert sorted(api) == ["1", "2", "4", "6"]
    assert api["4"]["inputs"]["images"] == ["1", 0]
    assert "images" not in api["6"]["inputs"]  # linked to a muted node: the frontend sends no value at all


def test_bypassed_node_without_an_input_of_the_wanted_type_cuts_the_link():
    warnings = []
    nodes = [
        _node(1, "LoadImageMask", ["m.png", "alpha", "image"], outputs=[_out("MASK", [1])]),
        _node(2, "ImageInvert", None, [_in("image", "IMAGE", None)], [_out("IMAGE", [2])], mode=4),
        _node(3, "SaveImage", ["x"], [_in("images", "IMAGE", 2)]),
    ]
    api = ui_to_api(_wf(nodes, [[2, 2, 0, 3, 0, "IMAGE"]]), INFO, warn=warnings.append)
    assert "images" not in api["3"]["inputs"]


def test_reroute_chain_and_unconnected_reroute():
    nodes = [
        _node(1, "EmptyImage", [8, 8, 1, 0], outputs=[_out("IMAGE", [1])]),
        _node(2, "Reroute", None, [_in("", "*", 1)], [_out("IMAGE", [2])]),
        _node(3, "Reroute", None, [_in("", "*", 2)], [_out("IMAGE", [3])]),
        _node(4, "SaveImage", ["x"], [_in("images", "IMAGE", 3)]),
        _node(5, "Reroute", None, [_in("", "*", None)], [_out("IMAGE", [4])]),
        _node(6, "SaveImage", ["y"], [_in("images", "IMAGE", 4)]),
    ]
    links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "IMAGE"], [4, 5, 0, 6, 0, "IMAGE"]]
    api = ui_to_api(_wf(nodes, links), INFO)
    assert sorted(api) == ["1", "4", "6"]
    assert api["4"]["inputs"]["images"] == ["1", 0]
    assert api["6"]["inputs"] == {"filename_prefix": "y"}


def test_circular_reroutes_are_an_error():
    nodes = [
        _node(1, "Reroute", None, [_in("", "*", 2)], [_out("IMAGE", [1])]),
        _node(2, "Reroute", None, [_in("", "*", 1)], [_out("IMAGE", [2, 3])]),
        _node(3, "SaveImage", ["x"], [_in("images", "IMAGE", 3)]),
    ]
    links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 1, 0, "IMAGE"], [3, 2, 0, 3, 0, "IMAGE"]]
    with pytest.raises(BatchError, match="circular"):
        ui_to_api(_wf(nodes, links), INFO)


def test_links_saved_as_objects_schema_v1():
    nodes = [_node(1, "EmptyImage", [8, 8, 1, 0], outputs=[_out("IMAGE", [7])]),
             _node(2, "SaveImage", ["x"], [_in("images", "IMAGE", 7)])]
    links = [{"id": 7, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"}]
    assert ui_to_api(_wf(nodes, links), INFO)["2"]["inputs"]["images"] == ["1", 0]


def test_primitive_node_value_wins_over_the_stale_widget_value():
    nodes = [
        _node(1, "PrimitiveNode", [300, "fixed"], outputs=[{"name": "INT", "type": "INT", "links": [1],
                                                             "widget": {"name": "height"}}]),
        _node(2, "EmptyImage", [8, 8, 1, 0], [_in("height", "INT", 1, widget=True)]),
    ]
    api = ui_to_api(_wf(nodes, [[1, 1, 0, 2, 0, "INT"]]), INFO)
    assert api == {"2": {"inputs": {"width": 8, "height": 300, "batch_size": 1, "color": 0},
                         "class_type": "EmptyImage", "_meta": {"title": INFO["EmptyImage"]["display_name"]}}}


def test_widget_count_mismatch_names_node_and_values():
    wf = _wf([_node(7, "EmptyImage", [8, 8, 1, 0, 99])], [])
    with pytest.raises(BatchError, match=r"node 7 \(EmptyImage\).*left over: \[99\]"):
        ui_to_api(wf, INFO)


def test_widget_type_mismatch_names_the_input():
    wf = _wf([_node(3, "EmptyImage", ["wide", 8, 1, 0])], [])
    with pytest.raises(BatchError, match=r"node 3 \(EmptyImage\).*'wide'.*'width' \(INT\)"):
        ui_to_api(wf, INFO)


def test_missing_trailing_values_take_server_defaults_with_a_warning():
    warnings = []
    api = ui_to_api(_wf([_node(1, "EmptyImage", [32])], []), INFO, warn=warnings.append)
    assert api["1"]["inputs"] == {"width": 32, "height": 512, "batch_size": 1, "color": 0}
    assert warnings and "height" in warnings[0]


def test_unknown_node_type_is_an_error_unless_muted():
    with pytest.raises(BatchError, match="'NoSuchNode', which the server does not know"):
        ui_to_api(_wf([_node(1, "NoSuchNode", [])], []), INFO)
    assert ui_to_api(_wf([_node(1, "NoSuchNode", [], mode=2)], []), INFO) == {}


def test_subgraph_and_group_nodes_are_refused_with_a_way_out():
    sg = "0b4e6f3c-1111-4222-8333-944455556666"
    wf = _wf([_node(1, sg)], [])
    wf["definitions"] = {"subgraphs": [{"id": sg, "name": "inner"}]}
    with pytest.raises(BatchError, match="subgraph.*Unpack"):
        ui_to_api(wf, INFO)
    with pytest.raises(BatchError, match="group node"):
        ui_to_api(_wf([_node(1, "workflow>Mine")], []), INFO)


def test_not_a_ui_workflow():
    with pytest.raises(BatchError, match="'nodes' list"):
        ui_to_api({"1": {"class_type": "EmptyImage", "inputs": {}}}, INFO)


SYNTH = {
    "Synth": {
        "display_name": "Synthetic",
        "input": {
            "required": {
                "pick": [["a", "b", "c"], {"control_after_generate": True}],
                "media": [["x.png"], {"image_upload": True}],
                "remote": ["COMBO", {"options": ["r1"], "remote": {"route": "/r", "refresh_button": True}}],
                "text_in": ["STRING", {"forceInput": True}],
                "list_value": ["COMBO", {"options": ["p", "q"], "multi_select": True}],
            },
            "optional": {"opt_seed": ["INT", {"default": 3}], "ratio": ["FLOAT", {"default": 0.5}]},
        },
        "input_order": {"required": ["pick", "media", "remote", "text_in", "list_value"],
                        "optional": ["opt_seed", "ratio"]},
    }
}


def test_extra_widget_values_of_combo_control_refresh_and_upload():
    # pick + control + filter list, media, remote + refresh button, list value, then the upload button after the
    # required inputs, then the optional ones: opt_seed is not named seed/noise_seed, so no control value follows it.
    values = ["b", "increment-wrap", "", "x.png", "r1", "refresh", ["p", "q"], "image", 9, 0.25]
    api = ui_to_api(_wf([_node(1, "Synth", values)], []), SYNTH)
    assert api["1"]["inputs"] == {"pick": "b", "media": "x.png", "remote": "r1", "list_value": {"__value__": ["p", "q"]},
                                  "opt_seed": 9, "ratio": 0.25}
    assert api["1"]["_meta"] == {"title": SYNTH["Synth"]["display_name"]}


def test_old_layout_with_a_value_for_a_force_input_is_migrated():
    info = {"Old": {"display_name": "Old", "input": {"required": {
        "a": ["INT", {}], "s": ["STRING", {"forceInput": True}], "b": ["FLOAT", {}]}},
        "input_order": {"required": ["a", "s", "b"]}}}
    assert ui_to_api(_wf([_node(1, "Old", [1, "stale", 2.5])], []), info)["1"]["inputs"] == {"a": 1, "b": 2.5}
    assert ui_to_api(_wf([_node(1, "Old", [1, 2.5])], []), info)["1"]["inputs"] == {"a": 1, "b": 2.5}


def _text_after_conversion(text: str, seed: int = 0) -> str:
    wf = _wf([_node(1, "CLIPTextEncode", [text], [_in("clip", "CLIP")])], [])
    return ui_to_api(wf, INFO, seed=seed)["1"]["inputs"]["text"]


def test_dynamic_prompts_strip_comments_and_resolve_choices():
    assert _text_after_conversion("a cat // the subject\n/* block */in a box") == "a cat \nin a box"
    assert _text_after_conversion(r"a \{literal\} {red|red} {x|{y|y}|x}") in ("a {literal} red x", "a {literal} red y")
    seen = {_text_after_conversion("{one|two|three}", seed) for seed in range(200)}
    assert seen == {"one", "two", "three"}
    assert _text_after_conversion("{glass|glass} bottle // note") == "glass bottle "
    assert _text_after_conversion("{one|two|three}", 5) == _text_after_conversion("{one|two|three}", 5)


def test_duplicate_node_ids_are_an_error():
    with pytest.raises(BatchError, match="node id 3 is used by two nodes"):
        ui_to_api(_wf([_node(3, "EmptyImage", [8, 8, 1, 0]), _node(3, "ImageInvert")], []), INFO)


# The shape ComfyUI 0.33.0's /object_info gives core's Create Layered Image (tooltips shortened), and an input whose
# widgetType names the widget drawn for a multi-type input (0.33.0's LTXVEmptyLatentAudio frame_rate).
NEWER = {
    "ImageCompositor": {
        "display_name": "Create Layered Image",
        "input": {"required": {"layers": ["LAYERS", {"tooltip": "Layer stack to composite."}],
                               "compositor": ["COMPOSITOR", {"tooltip": "Layered composition saved by the compositor "
                                                                        "editor.", "default": {}, "socketless": True}]},
                  "hidden": {"prompt": ["PROMPT"], "extra_pnginfo": ["EXTRA_PNGINFO"]}},
        "input_order": {"required": ["layers", "compositor"], "hidden": ["prompt", "extra_pnginfo"]},
    },
    "MultiType": {
        "display_name": "Multi",
        "input": {"required": {"rate": ["FLOAT,INT", {"default": 25, "widgetType": "FLOAT"}],
                               "curve": ["CURVE", {"socketless": True}]}},
        "input_order": {"required": ["rate", "curve"]},
    },
}
LAYERS_SOURCE = _node(1, "LayerStackToCoreLayers", [0, True], outputs=[_out("LAYERS", [1])])
LAYERS_INFO = {**NEWER, "LayerStackToCoreLayers": {"display_name": "Layer Stack to LAYERS", "input": {"required": {
    "picture": ["INT", {"default": 0}], "crop_to_content": ["BOOLEAN", {"default": True}]}},
    "input_order": {"required": ["picture", "crop_to_content"]}}}


def _compositor(values, inputs=(_in("layers", "LAYERS", 1),)):
    return _wf([LAYERS_SOURCE, _node(2, "ImageCompositor", values, list(inputs))], [[1, 1, 0, 2, 0, "LAYERS"]])


def test_widget_only_compositor_value_is_sent_as_the_object_it_is():
    """Create Layered Image's `compositor` is a widget without a socket: its saved value (an object, `{}` until the
    layer editor saves a composition) is one entry of widgets_values and goes to /prompt unwrapped."""
    api = ui_to_api(_compositor([{}]), LAYERS_INFO)
    assert api["2"] == {"inputs": {"compositor": {}, "layers": ["1", 0]}, "class_type": "ImageCompositor",
                        "_meta": {"title": "Create Layered Image"}}
    saved = {"version": 1, "canvas": {"w": 64, "h": 48}, "inputs": ["a1"], "layers": [{"x": 3, "y": 4}]}
    # 1.49 also gives the widget an input slot named after it; the value still comes from widgets_values
    slot = _in("compositor", "COMPOSITOR", None, widget=True)
    assert ui_to_api(_compositor([saved], [_in("layers", "LAYERS", 1), slot]), LAYERS_INFO)["2"]["inputs"] == {
        "compositor": saved, "layers": ["1", 0]}


def test_compositor_value_missing_or_of_the_wrong_kind():
    warnings = []
    api = ui_to_api(_compositor([]), LAYERS_INFO, warn=warnings.append)
    assert api["2"]["inputs"]["compositor"] == {} and "compositor" in warnings[0]
    with pytest.raises(BatchError, match=r"node 2 \(ImageCompositor\).*'compositor' \(COMPOSITOR\)"):
        ui_to_api(_compositor(["not a composition"]), LAYERS_INFO)
    with pytest.raises(BatchError, match=r"left over: \[\{\}\]"):  # a host without the widget: one value too many
        ui_to_api(_compositor([{}]), {**LAYERS_INFO, "ImageCompositor": {
            **NEWER["ImageCompositor"], "input": {"required": {"layers": ["LAYERS", {}]}},
            "input_order": {"required": ["layers"]}}})


def test_widget_type_option_names_the_widget_and_curve_lists_are_tagged():
    api = ui_to_api(_wf([_node(1, "MultiType", [24, [[0, 0], [1, 1]]])], []), NEWER)
    assert api["1"]["inputs"] == {"rate": 24, "curve": {"__type__": "CURVE", "__value__": [[0, 0], [1, 1]]}}


def test_dynamic_combo_is_refused_by_name():
    info = {"Resize": {"display_name": "Resize", "input": {"required": {"resize_type": ["COMFY_DYNAMICCOMBO_V3", {
        "options": [{"key": "scale by multiplier", "inputs": {"required": {"multiplier": ["FLOAT", {"default": 1.0}]}}}]
    }]}}, "input_order": {"required": ["resize_type"]}}}
    with pytest.raises(BatchError, match=r"node 4 \(Resize\) input 'resize_type' is a COMFY_DYNAMICCOMBO_V3.*API format"):
        ui_to_api(_wf([_node(4, "Resize", ["scale by multiplier", 2.0])], []), info)
    assert ui_to_api(_wf([_node(4, "Resize", ["scale by multiplier", 2.0], mode=2)], []), info) == {}  # muted: not sent
