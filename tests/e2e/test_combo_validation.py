"""Every combo input of every LayerStack node, sent an out-of-list value through the HTTP API, is refused with a
message naming the node, the input, the options and the value (ComfyUI 0.3.75 does not check V3 combos itself)."""

from __future__ import annotations

import pytest

from fixtures.server import PromptFailed


def _sources(checkpoint: str) -> dict[str, tuple[dict, list]]:
    """For each socket type a LayerStack node takes: the nodes making one (API format) and the link to it."""
    loader = {"s1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}}
    image = {"s2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}}
    return {
        "MODEL": (loader, ["s1", 0]),
        "VAE": (loader, ["s1", 2]),
        "CONDITIONING": ({**loader, "s3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["s1", 1], "text": ""}}},
                         ["s3", 0]),
        "LATENT": ({"s4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}},
                   ["s4", 0]),
        "IMAGE": (image, ["s2", 0]),
        "MASK": ({"s5": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}}, ["s5", 0]),
        "LAYER_VAE": ({"s6": {"class_type": "LayerStackLoadTransparentVAE",
                              "inputs": {"family": "SD15", "allow_download": False}}}, ["s6", 0]),
        "LAYER_STACK": ({**image, "s7": {"class_type": "LayerStackAddLayer", "inputs": {
            "image": ["s2", 0], "mask_meaning": "alpha (1 = opaque)", "name": "a", "visible": True}}}, ["s7", 0]),
    }


def _prompt(node_id: str, info: dict, combo: str, bad: str, sources: dict) -> dict:
    prompt, inputs = {}, {}
    for name, (kind, options) in info["input"]["required"].items():
        if name == combo:
            inputs[name] = bad
        elif kind == "COMBO":
            inputs[name] = options.get("default", options["options"][0])
        elif kind in sources:
            nodes, link = sources[kind]
            prompt.update(nodes)
            inputs[name] = link
        else:
            inputs[name] = options["default"]
    prompt["t"] = {"class_type": node_id, "inputs": inputs}
    if not info["output_node"]:
        prompt["o"] = {"class_type": "PreviewAny", "inputs": {"source": ["t", 0]}}
    return prompt


def test_every_combo_refuses_an_out_of_list_value_over_the_api(comfy_server, fixture_paths):
    sources = _sources(fixture_paths["sd15_checkpoint"].name)
    info = {k: v for k, v in comfy_server.object_info().items()
            if k.startswith(("LayerStack", "LayeredDiffusion"))}
    cases = [(node_id, name) for node_id, node_info in sorted(info.items())
             for name, (kind, _) in node_info["input"]["required"].items() if kind == "COMBO"]
    assert len(cases) >= 30
    for node_id, combo in cases:
        bad = f"not an option of {combo}"
        with pytest.raises(PromptFailed) as failed:
            comfy_server.run(_prompt(node_id, info[node_id], combo, bad, sources), timeout=300)
        message = str(failed.value)
        if "value_not_in_list" in message:  # a newer ComfyUI refused it at /prompt, naming the input
            assert combo in message and bad in message, message
        else:
            assert f"{node_id}: input '{combo}' expected one of" in message and repr(bad) in message, message
    assert comfy_server.object_info("LayerStackFetchLayerFile")  # still serving
