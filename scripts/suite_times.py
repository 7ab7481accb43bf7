"""The test suite's time, like for like, against an older commit: per tier, in total and over the tests both have.

    .venv/bin/python scripts/suite_times.py run --before ac4b351 --out /tmp/suite-times   # ~15 min on 2 cores
    .venv/bin/python scripts/suite_times.py compare /tmp/suite-times                    # the table again
    .venv/bin/python scripts/suite_times.py files --before ac4b351 --out /tmp/suite-times test_sdxl_patches ...

`run` checks the older commit out beside this one (`git worktree add <out>/before_<commit>`, sharing .venv and
.comfyui) with a private fixture cache (hard links of today's checkpoints; a build from other fixture sources would
prune the shared cache's folders). Where `heavy` guards the machine, it then holds both of its slots (its lock
files), one per suite; builds both sides' fixtures (not timed) and starts both suites at the same moment, so both see
the same load. Today's side runs scripts/test.sh's ComfyUI 0.3.75 stages (unit, then host+server); the older side
runs that commit's own command (its README: one pytest run). Each writes JUnit XML (time per test: set-up, call and
tear-down, so a session fixture such as a server start counts for the first test that needs it) and its
`--durations=0` log. The load average is sampled every 10 s into <out>/loadavg.txt.

`files` runs the named test files alone, one pytest process each, alternating old and new, --reps times, and prints
each file's best and median process time per side (start-up and collection included). A file alone shows what its
tests cost without the state earlier tests leave in a shared process (memory held, models ComfyUI still counts as
loaded), which moves time between files in a whole-suite run.

Tests are matched by name (class and parameters included) within a file of the same name, then by name alone where
unique, so tests moved between tier folders or split into a `*_host.py` file still match.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0"]
NOW_STAGES = {"unit": ["-m", "unit", "tests/unit"], "host+server": ["-m", "host or server", "tests/host", "tests/e2e"]}


def hold_both_heavy_slots() -> list:
    """Both of `heavy`'s slots (it allows two heavy runs machine-wide): the first that comes free, then a blocking
    wait for the other (a blocked waiter is served when it is released, before the next polling `heavy`). Kept until
    closed. Nothing to hold where there is no `heavy`."""
    if not shutil.which("heavy"):
        return []
    locks = {slot: open(f"/tmp/heavy.{slot}.lock", "a") for slot in (1, 2)}
    while True:
        for slot, lock in locks.items():
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            fcntl.flock(locks[3 - slot], fcntl.LOCK_EX)
            return list(locks.values())
        time.sleep(0.2)


def prepare_before(commit: str, out: Path) -> tuple[Path, dict]:
    tree = out / f"before_{commit}"  # a valid package name: the old suite imports the root as one
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True)
        for name in (".venv", ".comfyui"):
            (tree / name).symlink_to((ROOT / name).resolve())
    cache = out / "cache-before"
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.build import CACHE  # today's cache (LAYERSTACK_FIXTURE_CACHE or .cache/fixtures)

    checkpoints = cache / CACHE.name / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    for source in (CACHE / "checkpoints").glob("*.safetensors"):
        if not (checkpoints / source.name).exists():
            os.link(source, checkpoints / source.name)
    return tree, {**os.environ, "LAYERSTACK_FIXTURE_CACHE": str(cache)}


def build_fixtures(tree: Path, env: dict) -> None:
    """Not timed: both sides start with their fixtures built (each side's fixture sources name its folder)."""
    build = "import sys; sys.path[:0] = ['tests', 'tools']; from fixtures.comfy_env import import_pack; " \
            "import_pack(); from fixtures.build import build_all; build_all()"
    for where, side_env in ((tree, env), (ROOT, os.environ)):
        subprocess.run([".venv/bin/python", "-c", build], cwd=where, env=side_env, check=True)


def run(args) -> None:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tree, before_env = prepare_before(args.before, out)
    (out / "now").mkdir(exist_ok=True)
    (out / "before").mkdir(exist_ok=True)
    # stages joined by `;`: a failed stage must not skip the next one
    now = "; ".join(f"{shlex.join(PYTEST + stage)} --junitxml={out}/now/{name}.xml > {out}/now/{name}.log 2>&1"
                    for name, stage in NOW_STAGES.items())
    before = f"{shlex.join(PYTEST)} --junitxml={out}/before/all.xml > {out}/before/all.log 2>&1"
    done = threading.Event()

    def sample_load() -> None:
        with open(out / "loadavg.txt", "w") as log:
            while not done.wait(10):
                log.write(f"{time.strftime('%H:%M:%S')} {Path('/proc/loadavg').read_text()}")
                log.flush()

    walls = {}

    def side(name: str, command: str, cwd: Path, env) -> None:
        start = time.monotonic()
        subprocess.run(["bash", "-c", f"echo started $(date +%T) > {out}/{name}/started; {command}"], cwd=cwd, env=env)
        walls[name] = time.monotonic() - start

    slots = hold_both_heavy_slots()
    build_fixtures(tree, before_env)
    threading.Thread(target=sample_load, daemon=True).start()
    threads = [threading.Thread(target=side, args=("before", before, tree, before_env)),
               threading.Thread(target=side, args=("now", now, ROOT, os.environ))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for lock in slots:
        lock.close()
    (out / "walls.txt").write_text("".join(f"{k} {v:.0f}\n" for k, v in walls.items()))
    compare(out)


def cases(xml: Path) -> dict[tuple[str, str], tuple[float, str]]:
    """(file stem, test name) -> (seconds, tier folder) for every test that ran (skipped ones left out)."""
    found = {}
    for case in ET.parse(xml).iter("testcase"):
        if case.find("skipped") is not None:
            continue
        parts = case.get("classname", "").split(".")
        index = parts.index("tests") if "tests" in parts else -1
        folder, stem, classes = parts[index + 1], parts[index + 2], parts[index + 3:]
        found[(stem, ".".join([*classes, case.get("name")]))] = (float(case.get("time", 0)), folder)
    return found


def match(before: dict, now: dict) -> list[tuple[tuple, tuple]]:
    """Pairs of keys: same file stem and name first, then same name where it is unique on both sides."""
    pairs = [(k, k) for k in before if k in now]
    rest_b = {k: v for k, v in before.items() if k not in now}
    rest_n = {k: v for k, v in now.items() if k not in before}
    by_name_b, by_name_n = defaultdict(list), defaultdict(list)
    for k in rest_b:
        by_name_b[k[1]].append(k)
    for k in rest_n:
        by_name_n[k[1]].append(k)
    pairs += [(by_name_b[n][0], by_name_n[n][0]) for n in by_name_b
              if len(by_name_b[n]) == 1 and len(by_name_n.get(n, ())) == 1]
    return pairs


def compare(out: Path) -> None:
    before = {}
    for xml in sorted((out / "before").glob("*.xml")):
        before.update(cases(xml))
    now = {}
    for xml in sorted((out / "now").glob("*.xml")):
        now.update(cases(xml))
    pairs = match(before, now)
    rows = defaultdict(lambda: [0, 0.0, 0.0])  # now tier -> matched count, before s, now s
    for kb, kn in pairs:
        row = rows[now[kn][1]]
        row[0] += 1
        row[1] += before[kb][0]
        row[2] += now[kn][0]

    def tier_sum(side: dict) -> dict:
        sums = defaultdict(lambda: [0, 0.0])
        for seconds, folder in side.values():
            sums[folder][0] += 1
            sums[folder][1] += seconds
        return sums

    print(f"{'':34}{'tests':>7}{'before s':>10}{'now s':>10}{'now/before':>12}")
    for label, side in (("before, all (by folder)", before), ("now, all (by folder)", now)):
        for folder, (n, s) in sorted(tier_sum(side).items()):
            print(f"{label + ' ' + folder:34}{n:>7}" + (f"{s:>10.1f}{'':>10}" if side is before else f"{'':>10}{s:>10.1f}"))
    for tier, (n, b, s) in sorted(rows.items()):
        print(f"{'matched, now in ' + tier:34}{n:>7}{b:>10.1f}{s:>10.1f}{s / b:>12.2f}")
    n, b, s = len(pairs), sum(r[1] for r in rows.values()), sum(r[2] for r in rows.values())
    print(f"{'matched, all':34}{n:>7}{b:>10.1f}{s:>10.1f}{s / b:>12.2f}")
    print(f"before only: {len(before) - n} tests, {sum(before[k][0] for k in before) - b:.1f} s; "
          f"now only: {len(now) - n} tests, {sum(now[k][0] for k in now) - s:.1f} s")
    if (out / "walls.txt").exists():
        print("wall s per side (start to end, set-up and collection included): "
              + ", ".join((out / "walls.txt").read_text().splitlines()))
    changes = sorted(((now[kn][0] - before[kb][0], kb, kn) for kb, kn in pairs), reverse=True)
    print("\nmatched tests that got slower most (now - before, s):")
    for delta, kb, kn in changes[:15]:
        print(f"  {delta:+7.1f}  {before[kb][0]:6.1f} -> {now[kn][0]:6.1f}  {kn[0]}::{kn[1]}"
              + (f"  (was {kb[0]})" if kb[0] != kn[0] else ""))
    files = defaultdict(lambda: [0, 0.0, 0.0])  # a session fixture's cost moves between tests of a file: sum them
    for kb, kn in pairs:
        row = files[kn[0]]
        row[0] += 1
        row[1] += before[kb][0]
        row[2] += now[kn][0]
    print("files whose matched tests got slower most (tests, before s -> now s):")
    for stem, (n, b, s) in sorted(files.items(), key=lambda f: f[1][1] - f[1][2])[:10]:
        print(f"  {s - b:+7.1f}  {n:>3}  {b:6.1f} -> {s:6.1f}  {stem}")
    print("matched tests that got faster most:")
    for delta, kb, kn in changes[-5:][::-1]:
        print(f"  {delta:+7.1f}  {before[kb][0]:6.1f} -> {now[kn][0]:6.1f}  {kn[0]}::{kn[1]}")


def files(args) -> None:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tree, before_env = prepare_before(args.before, out)
    sides = {"before": (tree, before_env), "now": (ROOT, os.environ)}
    paths = {}
    for name, (where, _) in sides.items():
        for stem in args.stems:
            found = sorted((where / "tests").glob(f"*/{stem}.py")) + sorted((where / "tests").glob(f"{stem}.py"))
            if len(found) != 1:
                raise SystemExit(f"{name}: expected one tests/**/{stem}.py in {where}, found {len(found)}")
            paths[name, stem] = found[0].relative_to(where)
    slots = hold_both_heavy_slots()
    build_fixtures(tree, before_env)
    seconds = defaultdict(list)
    (out / "files").mkdir(exist_ok=True)
    for stale in (out / "files").glob("*.xml"):  # an earlier invocation's runs must not mix into this table
        stale.unlink()
    for rep in range(args.reps):
        for stem in args.stems:
            for name, (where, env) in sides.items():
                start = time.monotonic()
                xml = out / "files" / f"{name}-{stem}-{rep + 1}.xml"
                done = subprocess.run([*PYTEST, "-x", str(paths[name, stem]), f"--junitxml={xml}"], cwd=where,
                                      env=env, capture_output=True, text=True)
                seconds[name, stem].append(time.monotonic() - start)
                if done.returncode != 0:
                    raise SystemExit(f"{name} {paths[name, stem]} failed:\n{done.stdout[-3000:]}")
            print(f"rep {rep + 1}: {stem}: before {seconds['before', stem][-1]:.1f} s, "
                  f"now {seconds['now', stem][-1]:.1f} s", flush=True)
    for lock in slots:
        lock.close()
    print(f"\n{'file (alone, process s)':40}{'before min':>11}{'now min':>9}{'before med':>11}{'now med':>9}{'now/before':>11}")
    totals = [0.0, 0.0]
    for stem in args.stems:
        b, n = sorted(seconds["before", stem]), sorted(seconds["now", stem])
        totals[0] += b[0]
        totals[1] += n[0]
        print(f"{stem:40}{b[0]:>11.1f}{n[0]:>9.1f}{statistics.median(b):>11.1f}{statistics.median(n):>9.1f}"
              f"{n[0] / b[0]:>11.2f}")
    print(f"{'all (sum of minima)':40}{totals[0]:>11.1f}{totals[1]:>9.1f}{'':>20}{totals[1] / totals[0]:>11.2f}")
    print(f"\n{'tests in both (best per test)':40}{'tests':>6}{'before s':>10}{'now s':>8}{'now/before':>11}"
          f"{'  only before / only now'}")
    for stem in args.stems:
        best = {name: {} for name in sides}  # side -> test -> its fastest run
        for name in sides:
            for xml in sorted((out / "files").glob(f"{name}-{stem}-*.xml")):
                for key, (sec, _) in cases(xml).items():
                    best[name][key] = min(sec, best[name].get(key, sec))
        b, n = best["before"], best["now"]
        both = [k for k in b if k in n]
        sb, sn = sum(b[k] for k in both), sum(n[k] for k in both)
        print(f"{stem:40}{len(both):>6}{sb:>10.1f}{sn:>8.1f}{sn / sb:>11.2f}  "
              f"{len(b) - len(both)} ({sum(b.values()) - sb:.1f} s) / {len(n) - len(both)} ({sum(n.values()) - sn:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run both suites at once and compare")
    r.add_argument("--before", required=True, help="the older commit")
    r.add_argument("--out", type=Path, required=True, help="folder for its worktree, cache, JUnit XML and logs")
    c = sub.add_parser("compare", help="compare the JUnit XML of a finished run")
    c.add_argument("out", type=Path)
    f = sub.add_parser("files", help="time test files alone, alternating old and new")
    f.add_argument("--before", required=True, help="the older commit")
    f.add_argument("--out", type=Path, required=True, help="folder for its worktree and fixture cache")
    f.add_argument("--reps", type=int, default=3)
    f.add_argument("stems", nargs="+", help="test file names without .py, e.g. test_sdxl_patches")
    args = parser.parse_args()
    {"run": run, "compare": lambda a: compare(a.out), "files": files}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
