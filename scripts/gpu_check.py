"""GPU check: every mode's API twin (tests/data/workflows_api) on a real server with the fixture models, fp16,
start/stop on (stop_percent 0.6 wherever a node has it), once with the host's dynamic VRAM and once with
--disable-dynamic-vram. Prints per mode and run: status, NaN (the host's "invalid value" cast warning while the
prompt ran), "unreached" (the pack logged start/stop deltas the host left out), peak GPU memory of the server
process (nvidia-smi), time; and per mode the largest pixel difference between the two runs (dynamic VRAM must not
change results).

Run through scripts/gpu_check.sh (picks the newest host). --dry-run prepares and checks every prompt and prints the
plan without starting a server (what a machine without a GPU can check).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.server import ComfyServer, PromptFailed  # noqa: E402
from fixtures.workflows import TEMPLATES, api_workflow  # noqa: E402

MODES = [slug for slug in TEMPLATES if slug.startswith(("sd15_", "sdxl_")) or slug == "transparent_refine"]
STEPS = 4  # enough for a 0.6 stop to switch mid-run
STOP = 0.6
SIZE = 64
RUNS = {"dynamic VRAM": ("--force-fp16",), "no dynamic VRAM": ("--force-fp16", "--disable-dynamic-vram")}


def prepared(slug: str, checkpoints: dict[str, str]) -> dict:
    prompt = api_workflow(slug)
    family = "sd15" if slug.startswith("sd15_") else "sdxl"
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = checkpoints[family]
        elif kind == "EmptyLatentImage":
            inputs.update(width=SIZE, height=SIZE, batch_size=1)
        elif kind in ("KSampler", "KSamplerAdvanced"):
            inputs["steps"] = STEPS
        elif kind.startswith("LayerStackSDXL") and "width" in inputs:
            inputs.update(width=SIZE, height=SIZE)
        if "stop_percent" in inputs:
            inputs["stop_percent"] = STOP
    return prompt


def image_names(prompt: dict) -> set[str]:
    return {n["inputs"]["image"] for n in prompt.values() if n["class_type"] == "LoadImage"}


class PeakMemory:
    """Polls nvidia-smi for the server process's GPU memory (MiB) while a prompt runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
            except FileNotFoundError:  # no NVIDIA driver: peak stays 0
                return
            for line in out.splitlines():
                pid, _, used = line.partition(",")
                if pid.strip() == str(self.pid):
                    self.peak = max(self.peak, int(used))
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def outputs(server: ComfyServer, history: dict) -> dict[str, np.ndarray]:
    images = {}
    for node, out in sorted(history.get("outputs", {}).items()):
        for i, info in enumerate(out.get("images", [])):
            images[f"{node}.{i}"] = np.asarray(Image.open(io.BytesIO(server.fetch(info)))).astype(int)
    return images


def run_all(label: str, extra_args: tuple[str, ...], fixture_paths: dict, prompts: dict, base: Path) -> dict:
    server = ComfyServer(base / label.replace(" ", "_"), checkpoint_dir=fixture_paths["checkpoint_dir"],
                         layer_model_dir=fixture_paths["layer_model_dir"], extra_args=extra_args, cpu=False)
    started = time.monotonic()
    server.start()
    print(f"[{label}] server up in {time.monotonic() - started:.0f}s", flush=True)
    rng = np.random.default_rng(0)
    for name in sorted(set().union(*(image_names(p) for p in prompts.values()))):
        path = base / name
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8), "RGBA").save(path)
        server.upload_image(path, name)
    results = {}
    try:
        for slug, prompt in prompts.items():
            log_start = len(server.log_text())
            started = time.monotonic()
            with PeakMemory(server.process.pid) as memory:
                try:
                    history = server.run(prompt, timeout=120)
                    status, images = "ok", outputs(server, history)
                except (PromptFailed, TimeoutError) as error:
                    status, images = f"FAILED: {str(error).splitlines()[0][:160]}", {}
            seconds = time.monotonic() - started
            log = server.log_text()[log_start:]
            nan = "invalid value encountered" in log
            unreached = "were not reached inside the window" in log  # start/stop deltas the host left out
            results[slug] = images
            print(f"[{label}] {slug:28s} {status:8s} nan={'YES' if nan else 'no':3s} "
                  f"unreached={'YES' if unreached else 'no':3s} "
                  f"peak={memory.peak:6d} MiB time={seconds:6.1f}s", flush=True)
    finally:
        server.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="prepare and check the prompts, start nothing")
    args = parser.parse_args()

    from fixtures.comfy_env import COMFY_DIR, import_pack

    import_pack()
    from fixtures.build import build_all

    fixture_paths = build_all()
    checkpoints = {f: fixture_paths[f"{f}_checkpoint"].name for f in ("sd15", "sdxl")}
    prompts = {slug: prepared(slug, checkpoints) for slug in MODES}
    print(f"host: {COMFY_DIR}; {len(prompts)} modes, {STEPS} steps, {SIZE}x{SIZE}, stop_percent {STOP}, fp16")
    for slug, prompt in prompts.items():
        scheduled = sum("stop_percent" in n["inputs"] for n in prompt.values())
        print(f"  {slug:28s} {len(prompt):3d} nodes, {scheduled} with start/stop, images {sorted(image_names(prompt))}")
    if args.dry_run:
        return 0
    with tempfile.TemporaryDirectory(prefix="layerstack-gpu-check-") as tmp:
        results = {label: run_all(label, extra, fixture_paths, prompts, Path(tmp)) for label, extra in RUNS.items()}
    dynamic, static = results.values()
    for slug in prompts:
        a, b = dynamic.get(slug, {}), static.get(slug, {})
        if not a or a.keys() != b.keys():
            print(f"[compare] {slug:28s} outputs missing in a run")
            continue
        diff = max(int(np.abs(a[k] - b[k]).max()) for k in a)
        print(f"[compare] {slug:28s} max pixel difference dynamic vs not: {diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
