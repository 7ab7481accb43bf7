"""Turning one API prompt plus the command line's overrides into a list of jobs.

A target is ``NODE.INPUT``: NODE is a node id of the API prompt, else a node title (``_meta.title``), else a class
type that occurs once; INPUT is split off at the last dot because titles may contain dots.
Jobs are the rows (one per line of ``--prompts``, one per CSV row, or one if neither) times every ``--seeds`` range.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BatchError


@dataclass
class Job:
    index: int  # 1-based position in this batch
    params: dict  # "node_id.input" -> value, every override of this job
    prompt: dict
    fingerprint: str
    label: str | None = None
    sources: dict = field(default_factory=dict)  # "node_id.input" -> how the user named it
    earlier_id: str | None = None  # id of an earlier attempt at the same prompt (its folder is reused)

    @property
    def job_id(self) -> str:
        return self.earlier_id or f"{self.index:04d}-{self.fingerprint[:8]}"


def fingerprint(prompt: dict) -> str:
    """Identity of a job for resuming: the prompt as the server runs it (titles are cosmetic, left out)."""
    canon = {nid: {"class_type": n.get("class_type"), "inputs": n.get("inputs")} for nid, n in prompt.items()}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _describe(prompt: dict) -> str:
    return ", ".join(f"{nid} ({n.get('_meta', {}).get('title') or n.get('class_type')})" for nid, n in prompt.items())


def resolve_node(prompt: dict, ref: str, what: str) -> str:
    if ref in prompt:
        return ref
    by_title = [nid for nid, n in prompt.items() if (n.get("_meta") or {}).get("title") == ref]
    if not by_title:
        by_title = [nid for nid, n in prompt.items() if n.get("class_type") == ref]
        if len(by_title) > 1:
            raise BatchError(f"{what}: node '{ref}' is ambiguous: nodes {by_title} are all of class {ref}; use a node "
                             "id or give the nodes distinct titles")
    if len(by_title) > 1:
        raise BatchError(f"{what}: title '{ref}' is ambiguous: nodes {by_title} share it; use a node id")
    if not by_title:
        raise BatchError(f"{what}: expected a node id, title or unique class type; '{ref}' matches none of "
                         f"{_describe(prompt)}")
    return by_title[0]


def _input_spec(object_info: dict | None, class_type: str, name: str) -> list | None:
    if not object_info:
        return None
    sections = (object_info.get(class_type) or {}).get("input") or {}
    for sec in ("required", "optional"):
        spec = (sections.get(sec) or {}).get(name)
        if spec is not None:
            return spec
    return None


@dataclass
class Target:
    node: str
    input: str
    spec: list | None
    current: object
    written: str  # as the user wrote it

    @property
    def key(self) -> str:
        return f"{self.node}.{self.input}"


def resolve_target(prompt: dict, text: str, object_info: dict | None, what: str) -> Target:
    if "." not in text:
        raise BatchError(f"{what}: expected NODE.INPUT (node id or title, a dot, an input name), got '{text}'")
    ref, name = text.rsplit(".", 1)
    nid = resolve_node(prompt, ref, what)
    node = prompt[nid]
    inputs = node.get("inputs") or {}
    spec = _input_spec(object_info, node.get("class_type"), name)
    if name not in inputs and spec is None:
        known = sorted(inputs)
        hint = "" if object_info else " (inputs missing from the prompt can only be set when /object_info is read)"
        raise BatchError(f"{what}: node {nid} ({node.get('class_type')}) has no input '{name}'; it has {known}{hint}")
    current = inputs.get(name)
    if isinstance(current, list) and len(current) == 2 and isinstance(current[0], str):
        raise BatchError(f"{what}: input '{name}' of node {nid} is linked from node {current[0]} output {current[1]}; "
                         f"set an input of node {current[0]} instead")
    return Target(nid, name, spec, current, text)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(target: Target, raw: str, what: str):
    """Parse ``raw`` as the type the input takes (server spec first, else the type of the current value)."""
    spec, current = target.spec, target.current
    if spec is not None:
        kind = "COMBO" if isinstance(spec[0], list) else str(spec[0])
    elif isinstance(current, bool):
        kind = "BOOLEAN"
    elif isinstance(current, int):
        kind = "INT"
    elif isinstance(current, float):
        kind = "FLOAT"
    else:
        kind = "STRING"
    where = f"{what}: {target.written}"
    try:
        if kind == "INT":
            return int(raw.strip())
        if kind == "FLOAT":
            return float(raw.strip())
    except ValueError:
        raise BatchError(f"{where}: expected {'an integer' if kind == 'INT' else 'a number'}, got {raw!r}") from None
    if kind == "BOOLEAN":
        low = raw.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise BatchError(f"{where}: expected true or false, got {raw!r}")
    if kind == "COMBO":
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        choices = spec[0] if isinstance(spec[0], list) else opts.get("options") or []
        for choice in choices:
            if str(choice) == raw:
                return choice
        if choices:
            shown = ", ".join(repr(c) for c in choices[:12]) + (", ..." if len(choices) > 12 else "")
            raise BatchError(f"{where}: expected one of {shown}; got {raw!r}")
        return raw  # the server lists no choices (e.g. an empty model folder): let its validation answer
    return raw


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    if "=" not in text:
        raise BatchError(f"{what}: expected NODE.INPUT=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    return key.strip(), value


_SEED_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seed_spec(spec: str, what: str) -> list[int]:
    """``0-9`` (inclusive), ``1,5,9`` or a mix such as ``0-3,10``."""
    seeds: list[int] = []
    for part in spec.split(","):
        m = _SEED_PART.match(part)
        if not m:
            raise BatchError(f"{what}: expected seeds such as 0-9 or 1,5,9 (non-negative integers), got '{spec}'")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise BatchError(f"{what}: range '{part.strip()}' runs backwards; expected LOW-HIGH")
        seeds.extend(range(lo, hi + 1))
    return seeds


def read_prompt_lines(path: Path) -> list[tuple[int, str]]:
    """One job per non-empty line; lines starting with ``#`` are comments."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"--prompts {path}: cannot read it as UTF-8 text: {exc}") from exc
    rows = [(n, line.rstrip("\r\n")) for n, line in enumerate(text.splitlines(), 1)]
    rows = [(n, line) for n, line in rows if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise BatchError(f"--prompts {path}: expected one prompt per line, the file has none")
    return rows


def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [(reader.line_num, {k.strip(): v for k, v in row.items() if k is not None}) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BatchError(f"--csv {path}: cannot read it as UTF-8 CSV: {exc}") from exc
    if not header:
        raise BatchError(f"--csv {path}: expected a header row of NODE.INPUT columns (and optionally 'job'), "
                         "the file is empty")
    if not rows:
        raise BatchError(f"--csv {path}: expected one job per row after the header, found none")
    return header, rows


def plan_jobs(base: dict, *, sets: list[str] = (), seeds: list[str] = (), prompts: Path | None = None,
              prompt_input: str | None = None, csv_path: Path | None = None,
              object_info: dict | None = None) -> list[Job]:
    """Every job of the batch, in order. Later overrides win: --set, then the row, then the seeds."""
    fixed: list[tuple[Target, object]] = []
    for item in sets:
        key, raw = parse_assignment(item, "--set")
        target = resolve_target(base, key, object_info, f"--set {item}")
        fixed.append((target, coerce(target, raw, "--set")))

    rows: list[tuple[str | None, list[tuple[Target, object]]]] = []
    if prompts is not None and csv_path is not None:
        raise BatchError("--prompts and --csv: expected one source of rows, got both (put the prompt in a CSV "
                         "column instead)")
    if prompts is not None:
        if not prompt_input:
            raise BatchError("--prompts: expected --prompt-input NODE.INPUT too (which input each line goes to)")
        target = resolve_target(base, prompt_input, object_info, "--prompt-input")
        for lineno, line in read_prompt_lines(prompts):
            rows.append((None, [(target, coerce(target, line, f"--prompts {prompts}:{lineno}"))]))
    elif prompt_input:
        raise BatchError("--prompt-input: expected --prompts FILE with it")
    if csv_path is not None:
        header, records = read_csv_rows(csv_path)
        columns = {}
        for col in header:
            if col.lower() == "job":
                continue
            columns[col] = resolve_target(base, col, object_info, f"--csv {csv_path} column '{col}'")
        for lineno, record in records:
            values = []
            for col, target in columns.items():
                cell = record.get(col)
                if cell is None or cell == "":
                    continue  # empty cell: keep the workflow's value
                values.append((target, coerce(target, cell, f"--csv {csv_path}:{lineno}")))
            label = next((record[k] for k in record if k.lower() == "job" and record[k]), None)
            rows.append((label, values))
    if not rows:
        rows.append((None, []))

    dims: list[list[tuple[Target, object]]] = []
    for item in seeds:
        key, spec = parse_assignment(item, "--seeds")
        target = resolve_target(base, key, object_info, f"--seeds {item}")
        dims.append([(target, s) for s in parse_seed_spec(spec, f"--seeds {item}")])

    jobs = []
    for (label, row), combo in itertools.product(rows, itertools.product(*dims)):
        prompt = copy.deepcopy(base)
        params: dict = {}
        sources: dict = {}
        for target, value in [*fixed, *row, *combo]:
            prompt[target.node].setdefault("inputs", {})[target.input] = value
            params[target.key] = value
            sources[target.key] = target.written
        jobs.append(Job(len(jobs) + 1, params, prompt, fingerprint(prompt), label, sources))
    return jobs
