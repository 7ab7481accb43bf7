"""Benchmark of the transparent decode: time and peak memory per size and passes setting.

    .venv/bin/python scripts/bench_decode.py                       # 256, 512, 1024 on the best device
    .venv/bin/python scripts/bench_decode.py --sizes 128 256 --device cpu --dtype fp32
    .venv/bin/python scripts/bench_decode.py --families SDXL Flux --sizes 1024 --dtype bf16   # Flux beside SDXL

For each size it times the batched augmented decode (layer_vae.decode_augmented) with passes 8, 4, 2, 1, and the
reference procedure (8 passes one after another, then the median) in the same precision, and prints the speed-up of
the batched 8-pass decode over it. Weights are random (timing does not depend on their values). Peak memory is
torch's CUDA high-water mark on a GPU; on CPU the peak resident-set growth of one run in a fresh process.
``--families`` runs the same for each decoder family (SDXL/SD15: 4 latent channels; Flux: 16, same UNet1024 body)
and prints the Flux/SDXL time ratio; the "finite" column says whether the output held no NaN/inf (half precision).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def import_layer_vae():
    """The pack's layer_vae without ComfyUI (it needs none): the pack root becomes a package whose __init__ is not
    run (it would register nodes with ComfyUI), so relative imports inside layer_vae resolve."""
    if "layerstack_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "layerstack_bench", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
        )
        sys.modules["layerstack_bench"] = importlib.util.module_from_spec(spec)
    return importlib.import_module("layerstack_bench.layer_vae")


def cuda_peak(fn, device) -> int:
    """Bytes torch's CUDA allocator held at most while fn ran, above what it held before."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - start


def cpu_peak(args, size: int, mode: str, family: str) -> int:
    """Peak resident-set growth of one run in a fresh process (the CPU allocator keeps freed memory, so the
    high-water mark of this process says nothing after its first run)."""
    command = [sys.executable, __file__, "--sizes", str(size), "--batch", str(args.batch), "--device", "cpu",
               "--dtype", args.dtype or "fp32", "--probe-memory", mode, "--families", family]
    if args.max_batch:
        command += ["--max-batch", str(args.max_batch)]
    if args.channels_last:
        command.append("--channels-last")
    if args.threads:
        command += ["--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def probe_memory(run) -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak RSS (VmHWM) to the current RSS, so building the model does not count
    before = _status_kib("VmRSS")
    with torch.no_grad():
        run()
    print((_status_kib("VmHWM") - before) * 1024)


def sequential_reference(net, pixel, latent, passes):
    """The reference: one pass after another at the full batch, clip, stack, median, clip."""
    results = []
    for p in passes:
        x, lat = pixel, latent
        if p.flip:
            x, lat = torch.flip(x, dims=(3,)), torch.flip(lat, dims=(3,))
        y = net(torch.rot90(x, p.k, dims=(2, 3)), torch.rot90(lat, p.k, dims=(2, 3))).clip(0, 1)
        y = torch.rot90(y, -p.k, dims=(2, 3))
        results.append(torch.flip(y, dims=(3,)) if p.flip else y)
    return torch.median(torch.stack(results).float(), dim=0).values.clip(0, 1)


def timed(fn, device, repeat) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with torch.no_grad():
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--passes", type=int, nargs="+", default=[8, 4, 2, 1])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None,
                        help="default: fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--max-batch", type=int, default=None, help="samples per forward call (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip the sequential reference")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--channels-last", action="store_true",
                        help="weights in channels-last layout (to measure whether NHWC kernels are faster here)")
    parser.add_argument("--families", nargs="+", default=["SDXL"], choices=["SDXL", "SD15", "Flux"],
                        help="decoder families to run side by side (Flux: 16-channel latents)")
    parser.add_argument("--probe-memory", default=None, help=argparse.SUPPRESS)  # internal: one CPU memory run
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    lv = import_layer_vae()
    device = torch.device(args.device)
    dtype_name = args.dtype or ("fp16" if device.type == "cuda" else "fp32")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    layouts = importlib.import_module("layerstack_bench.layer_vae.layout")
    channels = {"SDXL": layouts.SD.latent_channels, "SD15": layouts.SD.latent_channels,
                "Flux": layouts.FLUX.latent_channels}
    nets = {}
    for family in args.families:
        torch.manual_seed(0)
        nets[family] = lv.UNet1024(latent_channels=channels[family]).to(device=device, dtype=dtype).eval()
        if args.channels_last:
            nets[family] = nets[family].to(memory_format=torch.channels_last)

    def make_run(size: int, mode: str, family: str):
        net = nets[family]
        g = torch.Generator().manual_seed(size)
        pixel = torch.rand((args.batch, 3, size, size), generator=g).to(device=device, dtype=dtype)
        latent = torch.randn((args.batch, channels[family], size // 8, size // 8), generator=g).to(
            device=device, dtype=dtype)
        if mode == "reference":
            return functools.partial(sequential_reference, net, pixel, latent, lv.REFERENCE_PASSES)
        return functools.partial(lv.decode_augmented, net, pixel, latent, passes=int(mode),
                                 max_batch=args.max_batch, device=device, dtype=dtype)

    if args.probe_memory:
        probe_memory(make_run(args.sizes[0], args.probe_memory, args.families[0]))
        return

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; dtype {dtype_name}; batch {args.batch}; max_batch {args.max_batch}; "
          f"channels_last {args.channels_last}; "
          f"median of {args.repeat} runs (after one warm-up); torch {torch.__version__}")
    print(f"{'family':>6} {'size':>6} {'mode':>26} {'seconds':>9} {'peak MiB':>9} {'finite':>6}")
    for size in args.sizes:
        modes = [str(p) for p in args.passes] + ([] if args.no_reference else ["reference"])
        seconds = {}
        for family in args.families:
            for mode in modes:
                run = make_run(size, mode, family)
                with torch.no_grad():
                    finite = bool(torch.isfinite(run()).all())  # also the warm-up: kernel selection, allocator
                seconds[family, mode] = timed(run, device, args.repeat)
                peak = cuda_peak(run, device) if device.type == "cuda" else cpu_peak(args, size, mode, family)
                label = "sequential 8 (reference)" if mode == "reference" else f"batched, {mode} passes"
                print(f"{family:>6} {size:>6} {label:>26} {seconds[family, mode]:>9.3f} {peak / 2**20:>9.0f} "
                      f"{'yes' if finite else 'NO':>6}")
                sys.stdout.flush()
            if "8" in modes and "reference" in modes:
                speed_up = seconds[family, "reference"] / seconds[family, "8"]
                print(f"{family:>6} {size:>6} {'speed-up, 8 vs reference':>26} {speed_up:>9.2f}x")
        if {"SDXL", "Flux"} <= set(args.families):
            for mode in modes:
                ratio = seconds["Flux", mode] / seconds["SDXL", mode]
                print(f"{'':>6} {size:>6} {'Flux / SDXL, ' + mode:>26} {ratio:>9.3f}x")


if __name__ == "__main__":
    main()
