"""Hash of every output of every workflow template (and of the old pack's example workflows), for refactors.

Runs the API-format twin of each template (tests/data/workflows_api/) and each legacy example in tests/data/legacy_workflows/ through a
real headless ComfyUI server (CPU) on the random-weight test fixtures, made tiny (64 x 64 px, 2 steps, 2 decoder
passes), and prints one line per written or previewed file: a sha256 of its pixels (PNG) or of its bytes (PSD).
Run it before and after a change that must not change behaviour and diff the two outputs:

    heavy .venv/bin/python scripts/template_outputs.py > /tmp/before.txt

To find the commit that changed an output, run one workflow (-k) against other checkouts of the pack (--pack, e.g. a
`git worktree add` of each commit); the workflows, inputs and fixtures stay this checkout's, so only the pack differs:

    heavy .venv/bin/python scripts/template_outputs.py -k legacy/layer_diffusion_cond_fg_all --pack /tmp/pack-at-commit

Known change since ac4b351 (main before the tiers/docs refactor): legacy cond_fg_all node 27 (the old
LayeredDiffusionDecodeRGBA, sub_batch_size 16), 91a28263e6a42983 -> 969fadd7cbc608d4, from 9f8549d, where that input
became a cap on the automatic per-call batch (on CPU one decoder pass per forward call instead of all 8 in one call,
for memory; since 8a74dbe the cap is the image count, 1 here, on every device). Same arithmetic, batched kernels round differently: at most 3.2e-6 apart, a few 8-bit values of 16384
flip. The old pack run with sub_batch_size 1 gives today's hash.

A workflow ComfyUI refuses prints one "<name> failed: <message>" line and the others run on. Known: the
split-by-mask template loads layerstack_blended.png (64 x 64 here) and layerstack_mask.png (48 x 96 here, so that the
stack template fits a mask of another size), which Split by Mask refuses; its outputs are checked by
tests/e2e/test_layered_templates.py on the shipped 1024 x 1024 pictures instead.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SIZE, STEPS, PASSES = 64, 2, "2"


def input_images() -> dict[str, Image.Image]:
    """The images the templates and legacy examples load, deterministic, in other sizes than the generation (foreground, background and mask alike, for the stack template)."""
    rng = np.random.default_rng(2024)
    foreground = rng.integers(0, 256, (48, 96, 4), dtype=np.uint8)
    foreground[:, :30, 3] = 0
    foreground[:, 30:40, 3] = 128
    asset = rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
    asset[: SIZE // 4, :, 3] = 0
    legacy_fg = rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
    legacy_fg[..., 3] = 0
    legacy_fg[SIZE // 4: SIZE * 3 // 4, SIZE // 4: SIZE * 3 // 4, 3] = 255
    from legacy_workflows import IMAGES

    return {
        "layerstack_foreground.png": Image.fromarray(foreground, "RGBA"),
        "layerstack_background.png": Image.fromarray(rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)),
        "layerstack_blended.png": Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)),
        "layerstack_rgba_asset.png": Image.fromarray(asset, "RGBA"),
        IMAGES["fg"]: Image.fromarray(legacy_fg, "RGBA"),
        IMAGES["bg"]: Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)),
        IMAGES["blended"]: Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)),
        # drawn last, so the images above stay the ones earlier hash lists were made with
        "layerstack_mask.png": Image.fromarray(rng.integers(0, 256, (48, 96), dtype=np.uint8), "L"),
    }


def tiny(prompt: dict, checkpoints: dict[str, str]) -> dict:
    """A template made fixture-sized; every other input stays as shipped."""
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = checkpoints["sdxl" if "xl" in inputs["ckpt_name"] else "sd15"]
        elif kind in ("EmptyLatentImage", "EmptyImage"):
            inputs.update(width=SIZE, height=SIZE)
        elif kind == "KSampler":
            inputs["steps"] = STEPS
        elif kind in ("LayerStackTransparentDecode", "LayerStackSD15SplitLayers"):
            inputs["passes"] = PASSES
        elif kind.startswith("LayerStackSDXL") and "width" in inputs:
            inputs.update(width=SIZE, height=SIZE)
    return prompt


def prompts(checkpoints: dict[str, str]) -> dict[str, dict]:
    from legacy_workflows import DATA_DIR

    twins = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "data" / "workflows_api").glob("*.json"))}
    # Flux templates need FLUX.1-dev and T5-XXL, which cannot be fixtures here (tests/e2e/test_flux_templates.py runs
    # everything after their sampler instead).
    out = {f"template/{name}": tiny(prompt, checkpoints) for name, prompt in twins.items()
           if not any(node["class_type"] == "UNETLoader" for node in prompt.values())}
    out.update({f"legacy/{p.name.removesuffix('.api.json')}": json.loads(p.read_text())
                for p in sorted(DATA_DIR.glob("*.api.json"))})
    return out


def file_hash(server, info: dict) -> str:
    data = server.fetch(info)
    if info["filename"].endswith(".png"):
        image = Image.open(io.BytesIO(data))
        data = f"{image.mode} {image.size}".encode() + np.asarray(image).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only workflows whose name contains this")
    parser.add_argument("--pack", type=Path, default=ROOT,
                        help="the pack checkout the server loads (default: this one); e.g. an older commit's worktree")
    args = parser.parse_args()

    from fixtures.build import build_all
    from fixtures.comfy_env import import_pack
    from fixtures.server import ComfyServer, PromptFailed

    import_pack()
    paths = build_all()
    checkpoints = {"sd15": paths["sd15_checkpoint"].name, "sdxl": paths["sdxl_checkpoint"].name}
    with tempfile.TemporaryDirectory(prefix="layerstack-template-outputs-") as base:
        server = ComfyServer(Path(base), checkpoint_dir=paths["checkpoint_dir"],
                             layer_model_dir=paths["layer_model_dir"], pack_dir=args.pack.resolve())
        server.start()
        try:
            for name, image in input_images().items():
                image.save(server.input_dir / name)
            known = set(server.object_info())
            for name, prompt in prompts(checkpoints).items():
                if args.k not in name:
                    continue
                missing = sorted({node["class_type"] for node in prompt.values()} - known)
                if missing:  # a template built on newer hosts' core nodes (e.g. 35 on 0.3.75)
                    print(f"{name} not run: this ComfyUI has no {', '.join(missing)}", flush=True)
                    continue
                try:
                    outputs = server.run(prompt, timeout=1800)["outputs"]
                except PromptFailed as error:  # a line to diff like the hashes; the other workflows still run
                    print(f"{name} failed: {str(error).splitlines()[0]}", flush=True)
                    continue
                for nid in sorted(outputs, key=lambda n: (len(n), n)):
                    title = prompt[nid].get("_meta", {}).get("title", prompt[nid]["class_type"])
                    for key, items in sorted(outputs[nid].items()):
                        for i, info in enumerate(x for x in items if isinstance(x, dict) and "filename" in x):
                            print(f"{name} node={nid} {key}[{i}] {file_hash(server, info)}  ({title})", flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
