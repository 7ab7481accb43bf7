"""Side-by-side benchmark: LayerStack and the reference pack (huchenlei/ComfyUI-layerdiffuse) on the same fixture
weights, in one process, interleaved. Not a test: it prints a table; nothing is asserted.

Getting the reference pack (none of its code is in this repository) and an environment for it, outside the repo:

    git clone https://github.com/huchenlei/ComfyUI-layerdiffuse /tmp/ComfyUI-layerdiffuse
    .venv/bin/python -m venv /tmp/refvenv                        # a throwaway venv that sees .venv's packages:
    echo "$(realpath .venv)/lib/python3.11/site-packages" > /tmp/refvenv/lib/python3.11/site-packages/zz_venv.pth
    .venv/bin/pip freeze | grep -v -e '^-e' -e ' @ ' > /tmp/refvenv/constraints.txt
    /tmp/refvenv/bin/pip install -c /tmp/refvenv/constraints.txt diffusers opencv-python-headless

    /tmp/refvenv/bin/python scripts/bench_vs_reference.py --reference /tmp/ComfyUI-layerdiffuse
    /tmp/refvenv/bin/python scripts/bench_vs_reference.py --reference ... --only decode --decode-sizes 256

What runs, each under the same node id and inputs in both packs (ours: nodes/legacy_*.py; theirs: their classes):
- decode: LayeredDiffusionDecode (SDXL, 8 passes, sub_batch_size 16, the default) at each --decode-sizes, with the
  peak resident-set growth of each run; plus "ours, N per call" for each --per-call N (default 8: all 8 passes in one
  forward call, what the legacy ids did before the memory fix), our decode with that fixed sub-batch instead of the
  automatic, memory-bounded one, to see what the rule costs or saves in time and memory; --auto-decode adds our decode
  with the automatic sub-batch and no cap (Transparent Decode's default). --decode-batch decodes several images.
  The peak resident-set growth is measured in this one process, after other runs: the allocator keeps freed memory,
  so small growths say little (scripts/bench_decode.py measures each run in a fresh process).
- sdxl-attn / sdxl-conv: LayeredDiffusionApply ("SDXL, Attention Injection" / "SDXL, Conv Injection") then the
  KSampler's sampling call, against the plain checkpoint (the patch overhead).
- sd15-joint: LayeredDiffusionJointApply (SD1.5, 3 frames, a background prompt) then sampling, against plain.
- sdxl-stop (ours only: the reference has no start/stop): SDXL Transparent Foreground, attention injection, with
  stop 1 (plain patches, merged once per load), stop 0.999 (the weight wrappers, merged in every model call, active
  at every step: the same result as stop 1, so the difference is the wrappers' cost) and stop 0.5, against plain.

Interleaving: each repeat runs plain, ours, reference in turn, `--block` runs each (default 2). The first run of a
block pays the switch (ComfyUI re-patches weights when another patched clone of the same model ran last, and the
first block also the first load); the later runs of a block are the steady state. The table gives the steady state
min and median, CPU seconds of this process next to wall seconds (on a shared machine CPU time is the steadier),
and ratios; the first-load column is the first block's first run. The fixture UNets are narrow (320 channels at every
level), so the ratios say how the per-step work compares, not what a full-size model takes.

Host API breakage of the reference is reported, not hidden: its SD1.5 attention-sharing unit replaces whole
attention modules whose forward takes no `transformer_options`, which ComfyUI 0.3.75 passes. `--shim` (default on)
wraps that forward to drop the argument, which is the only change, and labels the column "reference (shimmed)".
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak_rss() -> int:
    """Resets the peak RSS (VmHWM) to the current RSS; returns the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def setup(reference: Path):
    from fixtures.comfy_env import comfy_version, import_pack

    import_pack()
    import folder_paths

    from fixtures.build import build_all

    paths = build_all()
    # Hard links in a private folder: the shared fixture cache may prune its layer_model folder while this runs.
    private = Path(tempfile.mkdtemp(prefix="layerstack-bench-"))
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    for file in paths["layer_model_dir"].iterdir():
        try:
            os.link(file, private / file.name)
        except OSError:
            shutil.copy2(file, private / file.name)
    paths["layer_model_dir"] = private
    folder_paths.add_model_folder_path("checkpoints", str(paths["checkpoint_dir"]), is_default=True)
    folder_paths.add_model_folder_path("layer_model", str(private), is_default=True)

    from comfy.ldm.modules.attention import BasicTransformerBlock

    plain_forward = BasicTransformerBlock.forward
    spec = importlib.util.spec_from_file_location("reference_layerdiffuse", reference / "__init__.py",
                                                  submodule_search_locations=[str(reference)])
    sys.modules["reference_layerdiffuse"] = importlib.util.module_from_spec(spec)
    ref = importlib.import_module("reference_layerdiffuse.layered_diffusion")
    ref_sharing = importlib.import_module("reference_layerdiffuse.lib_layerdiffusion.attention_sharing")
    # The reference wraps BasicTransformerBlock.forward for every model at import (to read transformer_options);
    # it is put back for plain and LayerStack runs and installed only around the reference's own runs.
    hijacked_forward = BasicTransformerBlock.forward
    BasicTransformerBlock.forward = plain_forward

    @contextlib.contextmanager
    def reference_active():
        BasicTransformerBlock.forward = hijacked_forward
        try:
            yield
        finally:
            BasicTransformerBlock.forward = plain_forward

    return paths, ref, ref_sharing, reference_active, comfy_version()


class Timings:
    def __init__(self):
        self.runs: dict[str, list[tuple[float, float, int | None]]] = {}  # name -> [(wall, cpu, peak rss growth)]
        self.first: dict[str, float] = {}
        self.errors: dict[str, str] = {}

    def measure(self, name: str, fn, *, steady: bool, rss: bool = False):
        import torch

        before = reset_peak_rss() if rss else 0
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            out = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = _status_kib("VmHWM") * 1024 - before if rss else None
        if steady:
            self.runs.setdefault(name, []).append((wall, cpu, peak))
        else:
            self.first.setdefault(name, wall)
        return out

    def row(self, name: str, base: str | None) -> str:
        runs = self.runs.get(name)
        if not runs:
            return f"| {name} | {self.errors.get(name, 'did not run')} |"
        wall = [r[0] for r in runs]
        cpu = [r[1] for r in runs]
        peaks = [r[2] for r in runs if r[2] is not None]
        cells = [name, f"{min(wall):.2f} / {statistics.median(wall):.2f}", f"{min(cpu):.2f} / {statistics.median(cpu):.2f}"]
        if base and self.runs.get(base):
            bw = [r[0] for r in self.runs[base]]
            bc = [r[1] for r in self.runs[base]]
            cells.append(f"{min(wall) / min(bw):.2f}× / {statistics.median(wall) / statistics.median(bw):.2f}×")
            cells.append(f"{min(cpu) / min(bc):.2f}× / {statistics.median(cpu) / statistics.median(bc):.2f}×")
        else:
            cells += ["", ""]
        cells.append(f"{max(peaks) / 2**20:.0f}" if peaks else "")
        cells.append(f"{self.first[name]:.2f}" if name in self.first else "")
        cells.append(str(len(runs)))
        return "| " + " | ".join(cells) + " |"


HEADER = ("| run | wall s min / median | CPU s min / median | wall ratio min / median | CPU ratio min / median | "
          "peak RSS growth MiB | first run wall s | steady runs |\n|---|---|---|---|---|---|---|---|")


def interleave(t: Timings, variants: dict, repeat: int, block: int, *, rss: bool = False) -> None:
    """variants: name -> callable (or None when it could not be built). Runs blocks of each in turn."""
    for _ in range(repeat):
        for name, fn in variants.items():
            if fn is None:
                continue
            for i in range(block):
                try:
                    t.measure(name, fn, steady=i > 0 or block == 1 and name in t.first, rss=rss)
                except Exception as error:  # report and go on with the other variants
                    t.errors[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                    traceback.print_exc(limit=4)
                    variants[name] = None
                    break
            sys.stdout.flush()


def decode_bench(args, t: Timings, ref) -> list[str]:
    import torch

    from layerstack.layer_vae import runtime
    from layerstack.models.registry import Family
    from layerstack.models.transparent_vae import reused
    from layerstack.nodes.legacy_decode import LayeredDiffusionDecode as Ours

    ref_node = ref.LayeredDiffusionDecode()  # one instance, as the server keeps it between prompts
    names = []
    for size in args.decode_sizes:
        g = torch.Generator().manual_seed(size)
        batch = args.decode_batch
        samples = {"samples": torch.randn(batch, 4, size // 8, size // 8, generator=g)}
        images = torch.rand(batch, size, size, 3, generator=g)
        label = f"decode {size}²" + (f" ×{batch}" if batch > 1 else "")
        ours, theirs = f"{label} ours", f"{label} reference"
        fixed = {n: f"{label} ours, {n} per call" for n in args.per_call}
        if args.auto_decode:  # Transparent Decode's automatic sub-batch (no cap): the memory budget alone decides
            fixed["auto"] = f"{label} ours, automatic (Transparent Decode)"
        names.append((ours, theirs, list(fixed.values())))
        variants = {
            ours: lambda s=samples, i=images: Ours.execute(samples=s, images=i, sd_version="SDXL", sub_batch_size=16),
            theirs: lambda s=samples, i=images: ref_node.decode(s, i, "SDXL", 16),
        }
        for n, name in fixed.items():
            variants[name] = lambda s=samples, i=images, n=n: runtime.decode(
                reused(Family.SDXL), i, s["samples"], node="bench", passes=8, sub_batch_size=None if n == "auto" else n)
        interleave(t, variants, args.repeat, args.block, rss=True)
    rows = []
    for ours, theirs, fixed in names:
        rows += [t.row(theirs, None), t.row(ours, theirs)]
        rows += [t.row(name, theirs) for name in fixed]
    return rows


def sampling_bench(args, t: Timings, ref, ref_sharing, reference_active, paths) -> list[str]:
    import comfy.sample
    import comfy.sd
    import torch

    from layerstack.nodes.legacy_sd15 import LayeredDiffusionJointApply as OursJoint
    from layerstack.nodes.legacy_sdxl import LayeredDiffusionApply as OursApply
    from layerstack.nodes.sdxl import SDXLTransparentForeground

    if args.shim:
        unit = ref_sharing.AttentionSharingUnit
        original = unit.forward
        if not getattr(original, "_bench_shim", False):
            def forward(self, h, context=None, value=None, transformer_options=None, **_):
                return original(self, h, context, value)
            forward._bench_shim = True
            unit.forward = forward

    def load(name):
        model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(paths[name]), output_vae=False, output_clip=True)
        enc = lambda text: clip.encode_from_tokens_scheduled(clip.tokenize(text))  # noqa: E731
        return model, enc("a glass bottle on a table"), enc("blurry"), enc("a wooden table in a room")

    def sampler(model, positive, negative, batch, steps):
        def run():
            latent = torch.zeros(batch, 4, args.sample_size // 8, args.sample_size // 8)
            noise = comfy.sample.prepare_noise(latent, 0)
            return comfy.sample.sample(model, noise, steps, 4.0, "euler", "normal", positive, negative, latent,
                                       disable_pbar=True, seed=0)
        return run

    def reference_run(run):
        def wrapped():
            with reference_active():
                return run()
        return wrapped

    rows = []
    suites = []
    if {"sdxl-attn", "sdxl-conv"} & set(args.only):
        sdxl, pos, neg, _ = load("sdxl_checkpoint")
        for key, config in (("sdxl-attn", "SDXL, Attention Injection"), ("sdxl-conv", "SDXL, Conv Injection")):
            if key in args.only:
                suites.append((key, sdxl, pos, neg, 1, args.steps,
                               lambda m, c=config: OursApply.execute(model=m, config=c, weight=1.0).result[0],
                               lambda m, c=config: ref.LayeredDiffusionFG().apply_layered_diffusion(m, c, 1.0)[0]))
    if "sd15-joint" in args.only:
        sd15, pos, neg, bg = load("sd15_checkpoint")
        config = "SD15, attn_sharing, Batch size (3N)"
        suites.append(("sd15-joint", sd15, pos, neg, 3, args.sd15_steps,
                       lambda m: OursJoint.execute(model=m, config=config, bg_cond=bg).result[0],
                       lambda m: ref.LayeredDiffusionJoint().apply_layered_diffusion(m, config, bg_cond=bg)[0]))
    if "sdxl-stop" in args.only:
        sdxl, pos, neg, _ = load("sdxl_checkpoint")
        names = {"plain": "sdxl-stop plain KSampler", 1.0: "sdxl-stop ours, stop 1 (plain patches)",
                 0.999: "sdxl-stop ours, stop 0.999 (weight wrappers)", 0.5: "sdxl-stop ours, stop 0.5"}
        variants = {names["plain"]: sampler(sdxl, pos, neg, 1, args.steps)}
        for stop in (1.0, 0.999, 0.5):
            patched, p, n = SDXLTransparentForeground.execute(
                model=sdxl, positive=pos, negative=neg, method="attention injection", weight=1.0, start_percent=0.0,
                stop_percent=stop).result
            variants[names[stop]] = sampler(patched, p, n, 1, args.steps)
        interleave(t, variants, args.repeat, args.block)
        rows += [t.row(names["plain"], None)] + [t.row(names[stop], names["plain"]) for stop in (1.0, 0.999, 0.5)]
        rows.append(t.row(names[0.999], names[1.0]).replace(f"| {names[0.999]} |",
                                                            "| sdxl-stop wrappers / plain patches |", 1))
    for key, model, pos, neg, batch, steps, ours_apply, ref_apply in suites:
        label = "reference (shimmed)" if args.shim and key.startswith("sd15") else "reference"
        names = {"plain": f"{key} plain KSampler", "ours": f"{key} ours", "ref": f"{key} {label}"}
        variants = {names["plain"]: sampler(model, pos, neg, batch, steps)}
        for which, apply in (("ours", ours_apply), ("ref", ref_apply)):
            try:
                patched = apply(model)
                run = sampler(patched, pos, neg, batch, steps)
                variants[names[which]] = reference_run(run) if which == "ref" else run
            except Exception as error:
                t.errors[names[which]] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                traceback.print_exc(limit=4)
        interleave(t, variants, args.repeat, args.block)
        rows += [t.row(names["plain"], None), t.row(names["ours"], names["plain"]), t.row(names["ref"], names["plain"])]
        if t.runs.get(names["ours"]) and t.runs.get(names["ref"]):
            rows.append(t.row(names["ours"], names["ref"]).replace(f"| {names['ours']} |",
                                                                   f"| {key} ours / reference |", 1))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of huchenlei/ComfyUI-layerdiffuse")
    parser.add_argument("--only", nargs="+", default=["decode", "sdxl-attn", "sdxl-conv", "sd15-joint"],
                        choices=["decode", "sdxl-attn", "sdxl-conv", "sd15-joint", "sdxl-stop"])
    parser.add_argument("--decode-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--sample-size", type=int, default=256, help="pixels per side of the sampled latents")
    parser.add_argument("--steps", type=int, default=4, help="sampling steps of the SDXL runs")
    parser.add_argument("--sd15-steps", type=int, default=2, help="sampling steps of the SD1.5 joint run (batch 3)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block", type=int, default=2, help="runs per variant in a row; all but the first are steady")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-shim", dest="shim", action="store_false")
    parser.add_argument("--decode-batch", type=int, default=1, help="images per decode (the old node ran "
                        "min(batch, sub_batch_size) of them per forward call, one pass each)")
    parser.add_argument("--auto-decode", action="store_true",
                        help="also run our decode with the automatic sub-batch, as Transparent Decode does")
    parser.add_argument("--per-call", type=int, nargs="*", default=[8],
                        help="also run our decode with this many network samples per forward call (fixed, not the "
                             "automatic rule), e.g. --per-call 1 2 4 8; none: --per-call with no value")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    paths, ref, ref_sharing, reference_active, version = setup(args.reference.resolve())
    load = os.getloadavg()
    t = Timings()
    rows = []
    if "decode" in args.only:
        rows += decode_bench(args, t, ref)
    rows += sampling_bench(args, t, ref, ref_sharing, reference_active, paths)
    print(f"\nComfyUI {version}, torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores; load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}; "
          f"fixture weights; decode SDXL 8 passes batch {args.decode_batch}; sampling {args.sample_size}², euler, "
          f"{args.steps} steps (SD1.5: {args.sd15_steps}); {args.repeat} repeats × block {args.block}")
    print("ratio rows: each run against the row it is compared with (plain KSampler for sampling, the reference "
          "for decode, the fixed per-call rows too)")
    print(HEADER)
    print("\n".join(rows))
    for name, error in t.errors.items():
        print(f"- {name}: {error}")


if __name__ == "__main__":
    main()
