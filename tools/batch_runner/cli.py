"""``layerstack-batch``: run a ComfyUI workflow many times with overrides, over one or more servers.

Exit status: 0 every job done (or already done), 1 a job failed or could not run, 2 bad input (workflow, override,
prompt file), 3 no server answered or none can run the batch, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from .client import ComfyClient, ServerUnavailable, short_reason
from .convert import ui_to_api
from .errors import BatchError
from .jobs import DEFAULT_MAX_JOBS, BatchSpec, assign_ids
from .manifest import Manifest
from .progress import Progress
from .runner import FAILED, INTERRUPTED, NOT_RUN, SKIPPED, BatchRunner, Outcome
from .workflow import load_workflow, normalize_api

DEFAULT_SERVER = "http://127.0.0.1:8188"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="layerstack-batch (or: python -m tools.batch_runner)",
        description="Run a ComfyUI workflow (API or UI format, or a PNG saved by ComfyUI) as a batch of jobs and "
                    "download every output into a folder with a manifest.json.",
        epilog="NODE is a node id, a node title, or a class type that occurs once. A rerun with the same --out "
               "skips jobs the manifest lists as done.",
    )
    p.add_argument("workflow", type=Path, help="workflow file (.json API or UI format, or .png with metadata)")
    p.add_argument("-o", "--out", type=Path, help="output folder (created; holds manifest.json and one folder per "
                                                  "job); required unless --convert-only or --dry-run")
    p.add_argument("--server", action="append", default=[], metavar="URL",
                   help=f"ComfyUI server; repeat to spread the batch over several (default {DEFAULT_SERVER})")
    p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="override an input in every job (repeatable)")
    p.add_argument("--seeds", action="append", default=[], metavar="NODE.INPUT=SPEC",
                   help="one job per seed: SPEC is 0-9, 1,5,9 or a mix; repeat for a grid")
    p.add_argument("--prompts", type=Path, metavar="FILE",
                   help="text file, one job per line (# comments and blank lines skipped)")
    p.add_argument("--prompt-input", metavar="NODE.INPUT", help="the input each --prompts line goes to")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="CSV with a header of NODE.INPUT columns (and an optional 'job' column: the job's name and "
                        "folder); one job per row, empty cells keep the workflow's value; a local file named for "
                        "an image input is uploaded")
    p.add_argument("--json", type=Path, metavar="FILE", dest="json_path",
                   help='JSON list of objects, one job each: {"job": "name", "NODE.INPUT": value, ...}; as --csv')
    p.add_argument("--limit", type=int, metavar="N", help="run at most N jobs that are not done yet, then stop")
    p.add_argument("--max-jobs", type=int, default=DEFAULT_MAX_JOBS, metavar="N",
                   help=f"refuse a batch of more than N jobs before doing anything (default {DEFAULT_MAX_JOBS}; a "
                        "guard against typo'd ranges)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="fail a job that runs longer (default: none)")
    p.add_argument("--include-temp", action="store_true",
                   help="also download previews and temporary files (PreviewImage and the like); by default only "
                        "final outputs")
    p.add_argument("--object-info", type=Path, metavar="FILE",
                   help="use this saved /object_info JSON instead of asking the server (conversion, input types)")
    p.add_argument("--convert-only", action="store_true",
                   help="print the API prompt (after conversion and --set) as JSON and exit")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and whether each is done; submit nothing")
    p.add_argument("--progress", choices=("auto", "bar", "log", "none"), default="auto",
                   help="bar: one redrawn status line; log: a line per job start/end; auto: bar on a terminal, "
                        "else log (default)")
    p.add_argument("--no-progress", action="store_const", dest="progress", const="none",
                   help="same as --progress none: only the summary")
    return p


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a label in any script, on a console or log that cannot show it
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # the output folder or manifest cannot be written, stdout closed, ...
        print(f"error: {exc.filename or 'output'}: {short_reason(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before any job was submitted", file=sys.stderr)
        return 130


def _read_object_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BatchError(f"--object-info {path}: expected the JSON of GET /object_info: {exc}") from exc
    if not isinstance(info, dict):
        raise BatchError(f"--object-info {path}: expected a JSON object of node classes")
    return info


def _first_object_info(clients: list[ComfyClient]) -> dict:
    """/object_info of the first server that answers (for conversion and input types)."""
    reasons = []
    for client in clients:
        try:
            return client.object_info()
        except ServerUnavailable as exc:
            reasons.append(f"{exc}; is ComfyUI running there?")
    raise ServerUnavailable("; ".join(reasons))


def _preflight(clients: list[ComfyClient], batch) -> list[ComfyClient]:
    """Servers that answer, know every node type of the workflow and list its model files; each other server is
    reported in one line and left out (none left is an error)."""
    ready, reasons = [], []
    for client in clients:
        try:
            problems = batch.server_problems(client.object_info())
            reason = f"{client.url} cannot run this workflow: " + "; ".join(problems)
        except ServerUnavailable as exc:
            problems, reason = [str(exc)], f"{exc}; is ComfyUI running there?"
        if problems:
            reasons.append(reason)
            if len(clients) > 1:
                _warn(f"leaving out {reason}")
        else:
            ready.append(client)
    if not ready:
        raise ServerUnavailable(" | ".join(reasons))
    return ready


def _main(args) -> int:
    if args.limit is not None and args.limit < 1:
        raise BatchError(f"--limit: expected a positive number of jobs, got {args.limit}")
    if args.timeout is not None and args.timeout <= 0:
        raise BatchError(f"--timeout: expected seconds > 0, got {args.timeout}")
    if args.max_jobs < 1:
        raise BatchError(f"--max-jobs: expected a positive number of jobs, got {args.max_jobs}")
    if args.out is None and not (args.convert_only or args.dry_run):
        raise BatchError("--out: expected an output folder for the results")
    clients = [ComfyClient(url) for url in (args.server or [DEFAULT_SERVER])]
    if len({c.url for c in clients}) != len(clients):
        raise BatchError(f"--server: each server once, got {[c.url for c in clients]}")

    kind, doc = load_workflow(args.workflow)
    spec = BatchSpec(sets=args.set, seeds=args.seeds, prompts=args.prompts, prompt_input=args.prompt_input,
                     csv_path=args.csv, json_path=args.json_path).check_size(args.max_jobs)
    overrides = bool(args.set or args.seeds or args.prompts or args.csv or args.json_path)
    object_info = None
    if args.object_info is not None:
        object_info = _read_object_info(args.object_info)
    elif kind == "ui" or overrides:
        object_info = _first_object_info(clients)
    base = ui_to_api(doc, object_info, warn=_warn) if kind == "ui" else normalize_api(doc)

    batch = spec.plan(base, object_info)
    if args.convert_only:
        if len(batch) > 1:
            raise BatchError("--convert-only: prints one prompt; drop --seeds/--prompts/--csv/--json")
        json.dump(batch[0].prompt, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0

    manifest = Manifest(args.out) if args.out is not None else None
    earlier = {fp: list(ids) for fp, ids in manifest.ids_by_fingerprint().items()} if manifest else {}
    taken = list(manifest.jobs) if manifest else []

    def jobs():
        return assign_ids(batch, earlier, taken)

    def done(job) -> bool:
        return manifest is not None and manifest.finished(job.job_id, job.fingerprint)

    def pending():
        """The jobs still to run, in order, up to --limit."""
        left = args.limit
        for job in jobs():
            if left is not None and left <= 0:
                return
            if not done(job):
                if left is not None:
                    left -= 1
                yield job

    skipped = [Outcome(job.index, job.job_id, SKIPPED, "done in an earlier run")
               for job in (jobs() if manifest and manifest.jobs else ()) if done(job)]
    to_run = len(batch) - len(skipped) if args.limit is None else min(args.limit, len(batch) - len(skipped))
    if args.dry_run:
        left = to_run
        for job in jobs():
            state = "done" if done(job) else ("todo" if left > 0 else "later")
            left -= state == "todo"
            params = ", ".join(f"{k}={v!r}" for k, v in job.params.items())
            print(f"{job.job_id}  {state:5}  {params}")
        print(f"{len(batch)} job(s): {to_run} to run, {len(skipped)} already done", file=sys.stderr)
        return 0

    assert manifest is not None
    clients = _preflight(clients, batch)
    manifest.start_run({"workflow": str(args.workflow), "format": kind, "servers": [c.url for c in clients],
                        "jobs_planned": len(batch), "jobs_to_run": to_run, "skipped": len(skipped)})
    progress = Progress(to_run, enabled=args.progress != "none",
                        bar={"bar": True, "log": False}.get(args.progress))
    if skipped:
        progress.note(f"{len(skipped)} of {len(batch)} job(s) already done in {manifest.path}; skipping them")
    runner = BatchRunner(clients, args.out, manifest, progress, timeout=args.timeout, include_temp=args.include_temp)

    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        summary = runner.run(pending())
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary.outcomes += skipped
    later = len(batch) - len(summary.outcomes)  # beyond --limit, or left when interrupted
    _print_summary(summary.outcomes, later, manifest.path)
    if summary.interrupted:
        print("interrupted: the jobs in flight were stopped; rerun the same command to finish", file=sys.stderr)
        return 130
    return 0 if summary.ok else 1


def _print_summary(outcomes: list[Outcome], later: int, manifest_path: Path) -> None:
    """Every job of the batch, in order, with its outcome; then the counts."""
    print("summary:", file=sys.stderr)
    counts: dict[str, int] = {}
    for o in sorted(outcomes, key=lambda o: o.index):
        counts[o.status] = counts.get(o.status, 0) + 1
        detail = f": {o.message}" if o.message and o.status in (FAILED, INTERRUPTED) else ""
        print(f"  {o.status:<11} {o.job_id}{detail}", file=sys.stderr)
    parts = [f"{counts.get(status, 0)} {name}" for status, name in
             (("done", "done"), (FAILED, "failed"), (INTERRUPTED, "interrupted"), (SKIPPED, "already done"),
              (NOT_RUN, "not run")) if counts.get(status) or status in ("done", FAILED)]
    if later:
        parts.append(f"{later} left for a later run")
    print(f"{len(outcomes) + later} job(s): {', '.join(parts)}; manifest {manifest_path}", file=sys.stderr)
