"""Our regression fixtures of ComfyUI-layerdiffuse's ten example workflows (docs/FORMATS.md#old-workflows), in both formats.

Each graph keeps the original's node types, links and widget values, with what a test machine cannot have
substituted (for CPU time and because the files are not here): the fixture checkpoints, generated 64×64 input
images, 64×64 instead of 1024²/512², 2 sampling steps instead of 20, SD1.5 batches of one set (2 or 3 instead of
4 or 6), and core `ImageScale` for the essentials pack's `ImageResize+`. Four graphs follow the original files node
for node (fg_example_rgba, fg_example, diff_bg_stop_at, cond_joint_fg); the others are rebuilt from the description
of their graph in docs/FORMATS.md#old-workflows. The originals' mistakes are kept on purpose (cond_joint_bg decodes its SD1.5
latents with sd_version "SDXL"): shared files contain them.

The UI file is written the way the old frontend saved it (sockets only in `inputs`, positional `widgets_values`
with the seed's control value); the API twin is written from the hand table WIDGETS below, which is the old node
definitions' widget order, not /object_info. So "the UI file converts to its API twin" checks both our converter
and that our drop-in nodes keep the old widget order. `python -m legacy_workflows` (run in tests/) rewrites the JSON files
under tests/data/legacy_workflows/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data" / "legacy_workflows"
SDXL_CKPT = "layerstack_fixture_sdxl.safetensors"
SD15_CKPT = "layerstack_fixture_sd15.safetensors"
SIZE = 64
STEPS = 2
SKIP = None  # a widget value the frontend stores but never sends (control_after_generate, the upload button)

# Widget names in the order the old frontend stored them, per node type (old node definitions and ComfyUI core).
WIDGETS: dict[str, list[str | None]] = {
    "CheckpointLoaderSimple": ["ckpt_name"],
    "CLIPTextEncode": ["text"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "KSampler": ["seed", SKIP, "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": ["add_noise", "noise_seed", SKIP, "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"],
    "LoadImage": ["image", SKIP],
    "ImageScale": ["upscale_method", "width", "height", "crop"],
    "LayeredDiffusionApply": ["config", "weight"],
    "LayeredDiffusionJointApply": ["config"],
    "LayeredDiffusionCondApply": ["config", "weight"],
    "LayeredDiffusionCondJointApply": ["config"],
    "LayeredDiffusionDiffApply": ["config", "weight"],
    "LayeredDiffusionDecode": ["sd_version", "sub_batch_size"],
    "LayeredDiffusionDecodeRGBA": ["sd_version", "sub_batch_size"],
    "LayeredDiffusionDecodeSplit": ["frames", "sd_version", "sub_batch_size"],
}
# Socket inputs (name, type) in slot order, and output types, for the UI layout.
SOCKETS: dict[str, list[tuple[str, str]]] = {
    "CLIPTextEncode": [("clip", "CLIP")],
    "KSampler": [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                 ("latent_image", "LATENT")],
    "KSamplerAdvanced": [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                         ("latent_image", "LATENT")],
    "VAEDecode": [("samples", "LATENT"), ("vae", "VAE")],
    "VAEEncode": [("pixels", "IMAGE"), ("vae", "VAE")],
    "ImageScale": [("image", "IMAGE")],
    "PreviewImage": [("images", "IMAGE")],
    "MaskToImage": [("mask", "MASK")],
    "InvertMask": [("mask", "MASK")],
    "JoinImageWithAlpha": [("image", "IMAGE"), ("alpha", "MASK")],
    "LayeredDiffusionApply": [("model", "MODEL")],
    "LayeredDiffusionJointApply": [("model", "MODEL"), ("fg_cond", "CONDITIONING"), ("bg_cond", "CONDITIONING"),
                                   ("blended_cond", "CONDITIONING")],
    "LayeredDiffusionCondApply": [("model", "MODEL"), ("cond", "CONDITIONING"), ("uncond", "CONDITIONING"),
                                  ("latent", "LATENT")],
    "LayeredDiffusionCondJointApply": [("model", "MODEL"), ("image", "IMAGE"), ("cond", "CONDITIONING"),
                                       ("blended_cond", "CONDITIONING")],
    "LayeredDiffusionDiffApply": [("model", "MODEL"), ("cond", "CONDITIONING"), ("uncond", "CONDITIONING"),
                                  ("blended_latent", "LATENT"), ("latent", "LATENT")],
    "LayeredDiffusionDecode": [("samples", "LATENT"), ("images", "IMAGE")],
    "LayeredDiffusionDecodeRGBA": [("samples", "LATENT"), ("images", "IMAGE")],
    "LayeredDiffusionDecodeSplit": [("samples", "LATENT"), ("images", "IMAGE")],
}
OUTPUTS: dict[str, list[str]] = {
    "CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "CLIPTextEncode": ["CONDITIONING"],
    "EmptyLatentImage": ["LATENT"], "KSampler": ["LATENT"], "KSamplerAdvanced": ["LATENT"], "VAEDecode": ["IMAGE"],
    "VAEEncode": ["LATENT"], "LoadImage": ["IMAGE", "MASK"], "ImageScale": ["IMAGE"], "PreviewImage": [],
    "MaskToImage": ["IMAGE"], "InvertMask": ["MASK"], "JoinImageWithAlpha": ["IMAGE"],
    "LayeredDiffusionApply": ["MODEL"], "LayeredDiffusionJointApply": ["MODEL"],
    "LayeredDiffusionCondApply": ["MODEL", "CONDITIONING", "CONDITIONING"],
    "LayeredDiffusionCondJointApply": ["MODEL"],
    "LayeredDiffusionDiffApply": ["MODEL", "CONDITIONING", "CONDITIONING"],
    "LayeredDiffusionDecode": ["IMAGE", "MASK"], "LayeredDiffusionDecodeRGBA": ["IMAGE"],
    "LayeredDiffusionDecodeSplit": ["IMAGE", "IMAGE", "IMAGE"],
}
DISPLAY = {
    "CheckpointLoaderSimple": "Load Checkpoint", "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "EmptyLatentImage": "Empty Latent Image", "KSampler": "KSampler", "KSamplerAdvanced": "KSampler (Advanced)",
    "VAEDecode": "VAE Decode", "VAEEncode": "VAE Encode", "LoadImage": "Load Image", "ImageScale": "Upscale Image",
    "PreviewImage": "Preview Image", "MaskToImage": "Convert Mask to Image", "InvertMask": "InvertMask",
    "JoinImageWithAlpha": "Join Image with Alpha", "LayeredDiffusionApply": "Layer Diffuse Apply",
    "LayeredDiffusionJointApply": "Layer Diffuse Joint Apply", "LayeredDiffusionCondApply": "Layer Diffuse Cond Apply",
    "LayeredDiffusionCondJointApply": "Layer Diffuse Cond Joint Apply",
    "LayeredDiffusionDiffApply": "Layer Diffuse Diff Apply", "LayeredDiffusionDecode": "Layer Diffuse Decode",
    "LayeredDiffusionDecodeRGBA": "Layer Diffuse Decode (RGBA)",
    "LayeredDiffusionDecodeSplit": "Layer Diffuse Decode (Split)",
}
# Input images the graphs load (generated by the test into the server's input folder).
IMAGES = {"fg": "layerstack_legacy_fg.png", "bg": "layerstack_legacy_bg.png",
          "blended": "layerstack_legacy_blended.png"}


@dataclass
class Graph:
    name: str
    family: str
    nodes: list[tuple[int, str, list, dict]] = field(default_factory=list)  # id, type, widgets, {socket: (id, slot)}

    def add(self, nid: int, ntype: str, widgets: list | None = None, **sockets: tuple[int, int]) -> int:
        assert all(n[0] != nid for n in self.nodes), f"{self.name}: node id {nid} used twice"
        self.nodes.append((nid, ntype, list(widgets or []), sockets))
        return nid

    # -- the two formats ---------------------------------------------------------------------------------------------
    def api(self) -> dict:
        out = {}
        for nid, ntype, widgets, sockets in self.nodes:
            names = WIDGETS.get(ntype, [])
            assert len(names) == len(widgets), (self.name, nid, ntype)
            inputs = {name: value for name, value in zip(names, widgets) if name is not SKIP}
            inputs.update({name: [str(src), slot] for name, (src, slot) in sockets.items()})
            out[str(nid)] = {"inputs": inputs, "class_type": ntype, "_meta": {"title": DISPLAY[ntype]}}
        return out

    def ui(self) -> dict:
        links, nodes = [], []
        outgoing: dict[tuple[int, int], list[int]] = {}
        for nid, ntype, _w, sockets in self.nodes:
            for name, (src, slot) in sockets.items():
                src_type = next(t for i, t, _, _ in self.nodes if i == src)
                link_id = len(links) + 1
                links.append([link_id, src, slot, nid, [n for n, _ in SOCKETS[ntype]].index(name),
                              OUTPUTS[src_type][slot]])
                outgoing.setdefault((src, slot), []).append(link_id)
        for order, (nid, ntype, widgets, _sockets) in enumerate(self.nodes):
            inputs = []
            for name, typ in SOCKETS.get(ntype, []):
                link = next((row[0] for row in links if row[3] == nid and
                             [n for n, _ in SOCKETS[ntype]][row[4]] == name), None)
                inputs.append({"name": name, "type": typ, "link": link})
            outputs = [{"name": t, "type": t, "links": outgoing.get((nid, i)) or None, "slot_index": i}
                       for i, t in enumerate(OUTPUTS[ntype])]
            node = {"id": nid, "type": ntype, "pos": [order * 300 % 2400, order * 300 // 2400 * 400],
                    "size": {"0": 315, "1": 120}, "flags": {}, "order": order, "mode": 0,
                    "properties": {"Node name for S&R": ntype}}
            if inputs:
                node["inputs"] = inputs
            node["outputs"] = outputs
            if widgets:
                node["widgets_values"] = widgets
            nodes.append(node)
        return {"last_node_id": max(n[0] for n in self.nodes), "last_link_id": len(links), "nodes": nodes,
                "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def _base(g: Graph, ckpt: str, positive: str, negative: str = "text, watermark", batch: int = 1, seed: int = 0):
    g.add(4, "CheckpointLoaderSimple", [ckpt])
    g.add(6, "CLIPTextEncode", [positive], clip=(4, 1))
    g.add(7, "CLIPTextEncode", [negative], clip=(4, 1))
    g.add(5, "EmptyLatentImage", [SIZE, SIZE, batch])


def _ksampler(g: Graph, nid: int, seed: int, **sockets):
    g.add(nid, "KSampler", [seed, "randomize", STEPS, 8, "euler", "normal", 1], **sockets)


def _encode(g: Graph, nid: int, image_key: str, load_id: int, resize: bool = False) -> int:
    g.add(load_id, "LoadImage", [IMAGES[image_key], "image"])
    pixels = load_id
    if resize:  # the original's ImageResize+ (ComfyUI_essentials) to the generation size
        pixels = g.add(nid + 50, "ImageScale", ["lanczos", SIZE, SIZE, "center"], image=(load_id, 0))
    g.add(nid, "VAEEncode", pixels=(pixels, 0), vae=(4, 2))
    return nid


def _transparent_fg(name: str, seed: int) -> Graph:
    """The start both fg examples share: Apply (SDXL, Conv Injection) → KSampler → VAEDecode (node 14)."""
    g = Graph(name, "SDXL")
    _base(g, SDXL_CKPT, "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,")
    g.add(13, "LayeredDiffusionApply", ["SDXL, Conv Injection", 1], model=(4, 0))
    _ksampler(g, 3, seed, model=(13, 0), positive=(6, 0), negative=(7, 0), latent_image=(5, 0))
    g.add(14, "VAEDecode", samples=(3, 0), vae=(4, 2))
    return g


def build() -> dict[str, Graph]:
    graphs: dict[str, Graph] = {}

    g = _transparent_fg("layer_diffusion_fg_example_rgba", 1029477926308287)
    g.add(36, "LayeredDiffusionDecodeRGBA", ["SDXL", 16], samples=(3, 0), images=(14, 0))
    g.add(27, "PreviewImage", images=(36, 0))
    g.add(20, "PreviewImage", images=(14, 0))
    graphs[g.name] = g

    g = _transparent_fg("layer_diffusion_fg_example", 984560333937969)
    g.add(15, "LayeredDiffusionDecode", ["SDXL", 16], samples=(3, 0), images=(14, 0))
    g.add(20, "PreviewImage", images=(14, 0))
    g.add(23, "PreviewImage", images=(15, 0))
    g.add(24, "MaskToImage", mask=(15, 1))
    g.add(25, "PreviewImage", images=(24, 0))
    g.add(29, "InvertMask", mask=(15, 1))
    g.add(28, "JoinImageWithAlpha", image=(15, 0), alpha=(29, 0))
    g.add(27, "PreviewImage", images=(28, 0))
    graphs[g.name] = g

    g = Graph("layer_diffusion_cond_example", "SDXL")
    _base(g, SDXL_CKPT, "old man sitting, high quality")
    _encode(g, 31, "bg", 30, resize=True)
    g.add(33, "LayeredDiffusionCondApply", ["SDXL, Background", 1], model=(4, 0), cond=(6, 0), uncond=(7, 0),
          latent=(31, 0))
    _ksampler(g, 3, 674865838825506, model=(33, 0), positive=(33, 1), negative=(33, 2), latent_image=(5, 0))
    g.add(14, "VAEDecode", samples=(3, 0), vae=(4, 2))
    g.add(20, "PreviewImage", images=(14, 0))
    graphs[g.name] = g

    for name, config, given, decode in (("layer_diffusion_diff_fg", "SDXL, Foreground", "fg", False),
                                        ("layer_diffusion_diff_bg", "SDXL, Background", "bg", True)):
        g = Graph(name, "SDXL")
        _base(g, SDXL_CKPT, "a room" if given == "fg" else "an old man sitting")
        _encode(g, 31, given, 30)
        _encode(g, 41, "blended", 40)
        g.add(33, "LayeredDiffusionDiffApply", [config, 1], model=(4, 0), cond=(6, 0), uncond=(7, 0),
              blended_latent=(41, 0), latent=(31, 0))
        _ksampler(g, 3, 10, model=(33, 0), positive=(33, 1), negative=(33, 2), latent_image=(5, 0))
        g.add(14, "VAEDecode", samples=(3, 0), vae=(4, 2))
        g.add(20, "PreviewImage", images=(14, 0))
        if decode:
            g.add(36, "LayeredDiffusionDecodeRGBA", ["SDXL", 16], samples=(3, 0), images=(14, 0))
            g.add(27, "PreviewImage", images=(36, 0))
        graphs[g.name] = g

    g = Graph("layer_diffusion_diff_bg_stop_at", "SDXL")
    _base(g, SDXL_CKPT, "a room, high quality\n\n")
    _encode(g, 39, "blended", 38)
    _encode(g, 29, "fg", 30)
    g.add(37, "LayeredDiffusionDiffApply", ["SDXL, Foreground", 1], model=(4, 0), cond=(6, 0), uncond=(7, 0),
          blended_latent=(39, 0), latent=(29, 0))
    g.add(3, "KSampler", [462370085958750, "fixed", STEPS, 8, "euler", "normal", 1], model=(37, 0),
          positive=(37, 1), negative=(37, 2), latent_image=(5, 0))
    g.add(41, "VAEDecode", samples=(3, 0), vae=(4, 2))
    g.add(42, "PreviewImage", images=(41, 0))
    # "Stop at": the base model with the plain prompts re-noises and finishes from the middle step.
    g.add(45, "KSamplerAdvanced", ["enable", 0, "fixed", STEPS, 8, "euler", "normal", STEPS // 2, 10000, "disable"],
          model=(4, 0), positive=(6, 0), negative=(7, 0), latent_image=(3, 0))
    g.add(14, "VAEDecode", samples=(45, 0), vae=(4, 2))
    g.add(20, "PreviewImage", images=(14, 0))
    graphs[g.name] = g

    g = Graph("layer_diffusion_cond_fg_all", "SDXL")
    _base(g, SDXL_CKPT, "an old man sitting, high quality")
    _encode(g, 31, "bg", 30)
    g.add(33, "LayeredDiffusionCondApply", ["SDXL, Background", 1], model=(4, 0), cond=(6, 0), uncond=(7, 0),
          latent=(31, 0))
    _ksampler(g, 3, 20, model=(33, 0), positive=(33, 1), negative=(33, 2), latent_image=(5, 0))
    g.add(14, "VAEDecode", samples=(3, 0), vae=(4, 2))
    g.add(20, "PreviewImage", images=(14, 0))
    # second pass: the first pass's blended latent and the background give the transparent foreground
    g.add(43, "LayeredDiffusionDiffApply", ["SDXL, Background", 1], model=(4, 0), cond=(6, 0), uncond=(7, 0),
          blended_latent=(3, 0), latent=(31, 0))
    _ksampler(g, 44, 21, model=(43, 0), positive=(43, 1), negative=(43, 2), latent_image=(5, 0))
    g.add(45, "VAEDecode", samples=(44, 0), vae=(4, 2))
    g.add(36, "LayeredDiffusionDecodeRGBA", ["SDXL", 16], samples=(44, 0), images=(45, 0))
    g.add(27, "PreviewImage", images=(36, 0))
    graphs[g.name] = g

    for name, config, given in (("layer_diffusion_cond_joint_bg",
                                 "SD15, Background, attn_sharing, Batch size (2N)", "bg"),
                                ("layer_diffusion_cond_joint_fg",
                                 "SD15, Foreground, attn_sharing, Batch size (2N)", "fg")):
        g = Graph(name, "SD15")
        _base(g, SD15_CKPT, "\n" if given == "fg" else "a man sitting", batch=2)
        g.add(30, "LoadImage", [IMAGES[given], "image"])
        g.add(37, "LayeredDiffusionCondJointApply", [config], model=(4, 0), image=(30, 0))
        _ksampler(g, 3, 748570836161213, model=(37, 0), positive=(6, 0), negative=(7, 0), latent_image=(5, 0))
        g.add(44, "VAEDecode", samples=(3, 0), vae=(4, 2))
        g.add(46, "PreviewImage", images=(44, 0))
        if given == "bg":
            # the original's mistake, kept: SD1.5 latents decoded with sd_version "SDXL"
            g.add(38, "LayeredDiffusionDecodeSplit", [2, "SDXL", 16], samples=(3, 0), images=(44, 0))
            g.add(39, "PreviewImage", images=(38, 0))
            g.add(40, "PreviewImage", images=(38, 1))
        graphs[g.name] = g

    g = Graph("layer_diffusion_joint", "SD15")
    _base(g, SD15_CKPT, "a dog sitting in room, high quality", batch=3)
    g.add(8, "CLIPTextEncode", ["a sitting dog"], clip=(4, 1))
    g.add(9, "CLIPTextEncode", ["a cozy room"], clip=(4, 1))
    g.add(37, "LayeredDiffusionJointApply", ["SD15, attn_sharing, Batch size (3N)"], model=(4, 0), fg_cond=(8, 0),
          bg_cond=(9, 0), blended_cond=(6, 0))
    _ksampler(g, 3, 50, model=(37, 0), positive=(6, 0), negative=(7, 0), latent_image=(5, 0))
    g.add(44, "VAEDecode", samples=(3, 0), vae=(4, 2))
    g.add(38, "LayeredDiffusionDecodeSplit", [3, "SD15", 16], samples=(3, 0), images=(44, 0))
    g.add(39, "PreviewImage", images=(38, 0))
    g.add(40, "PreviewImage", images=(38, 1))
    g.add(41, "PreviewImage", images=(38, 2))
    graphs[g.name] = g
    return graphs


def write(directory: Path = DATA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, graph in build().items():
        for suffix, doc in ((".ui.json", graph.ui()), (".api.json", graph.api())):
            path = directory / f"{name}{suffix}"
            path.write_text(json.dumps(doc, indent=1) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for p in write():
        print(p)
