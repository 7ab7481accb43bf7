"""Turning one API prompt plus the command line's overrides into a batch of jobs, built lazily.

A target is ``NODE.INPUT``: NODE is a node id of the API prompt, else a node title (``_meta.title``), else a class
type that occurs once; INPUT is split off at the last dot because titles may contain dots.
Jobs are the rows (one per line of ``--prompts``, CSV row or ``--json`` object, or one if none) times every
``--seeds`` range; they are counted before anything else and built one at a time, so a typo'd range costs nothing but
its refusal.
"""

from __future__ import annotations

import bisect
import copy
import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BatchError

DEFAULT_MAX_JOBS = 10_000


@dataclass
class Job:
    index: int  # 1-based position in this batch
    params: dict  # "node_id.input" -> value, every override of this job
    prompt: dict
    fingerprint: str
    label: str | None = None  # the user's name for it (CSV 'job' column)
    name: str = "job"  # file-system-safe name from the label (or prompt line) and seeds; see assign_ids
    sources: dict = field(default_factory=dict)  # "node_id.input" -> how the user named it
    job_id: str = ""  # unique in the output folder, also the job's folder name (assign_ids)
    uploads: dict = field(default_factory=dict)  # (node id, input) -> Upload: local files the job names

    def __post_init__(self):
        self.job_id = self.job_id or self.name


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


# Input options that make a combo take files uploaded into the server's input folder (LoadImage and the like).
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload", "audio_upload")
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")


@dataclass(frozen=True)
class Upload:
    """A local file named as a job's input: uploaded to each server before the job runs there."""

    path: Path
    name: str  # its name in the server's input folder: the file's name plus a hash of its content


def upload_for(path: Path) -> Upload:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Upload(path, f"{safe_name(path.stem, 80)}-{digest}{path.suffix.lower()}")


def _options(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _choices(spec: list | None) -> list | None:
    """The options of a combo input (old and new spellings), None for any other input."""
    if not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    return _options(spec).get("options") if spec[0] == "COMBO" else None


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


def coerce(target: Target, raw: str, what: str, folder: Path | None = None):
    """Parse ``raw`` as the type the input takes (server spec first, else the type of the current value). A combo
    that takes uploads also takes a local file (as given, else relative to ``folder``, the row file's folder)."""
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
        choices = _choices(spec) or []
        for choice in choices:
            if str(choice) == raw:
                return choice
        uploads = any(_options(spec).get(flag) for flag in UPLOAD_FLAGS)
        if uploads:
            for path in (Path(raw), *([folder / raw] if folder is not None else [])):
                if path.is_file():
                    try:
                        return upload_for(path)
                    except OSError as exc:
                        raise BatchError(f"{where}: cannot read the local file {raw!r}: {exc.strerror}") from exc
        if choices:
            shown = ", ".join(repr(c) for c in choices[:12]) + (", ..." if len(choices) > 12 else "")
            extra = " (nor a local file to upload)" if uploads else ""
            raise BatchError(f"{where}: expected one of {shown}{extra}; got {raw!r}")
        return raw  # the server lists no choices (e.g. an empty model folder): let its validation answer
    return raw


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    if "=" not in text:
        raise BatchError(f"{what}: expected NODE.INPUT=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    return key.strip(), value



_SEED_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


class SeedList:
    """The seeds of one ``--seeds`` spec as inclusive ``(low, high)`` ranges: counted and indexed, never listed."""

    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = ranges
        self._starts = []  # position of each range's first seed
        total = 0
        for lo, hi in ranges:
            self._starts.append(total)
            total += hi - lo + 1
        self.count = total

    def __getitem__(self, k: int) -> int:
        r = bisect.bisect_right(self._starts, k) - 1
        return self.ranges[r][0] + k - self._starts[r]

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    @property
    def lowest(self) -> int:
        return min(lo for lo, _ in self.ranges)

    @property
    def highest(self) -> int:
        return max(hi for _, hi in self.ranges)


def parse_seed_spec(spec: str, what: str) -> SeedList:
    """``0-9`` (inclusive), ``1,5,9`` or a mix such as ``0-3,10``."""
    ranges = []
    for part in spec.split(","):
        m = _SEED_PART.match(part)
        if not m:
            raise BatchError(f"{what}: expected seeds such as 0-9 or 1,5,9 (non-negative integers), got '{spec}'")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise BatchError(f"{what}: range '{part.strip()}' runs backwards; expected LOW-HIGH")
        ranges.append((lo, hi))
    return SeedList(ranges)


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


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of every row, the header first; blank lines skipped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for cells in reader:
                if cells:
                    yield reader.line_num, cells
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BatchError(f"--csv {path}: cannot read it as UTF-8 CSV: {exc}") from exc


def _csv_header(path: Path) -> list[str]:
    header = [h.strip() for h in next(iter(_csv_records(path)), (0, []))[1]]
    if not header:
        raise BatchError(f"--csv {path}: expected a header row of NODE.INPUT columns (and optionally 'job'), "
                         "the file is empty")
    seen: set[str] = set()
    for col in header:
        key = col.lower() if col.lower() == "job" else col
        if key in seen:
            raise BatchError(f"--csv {path}: column '{col}' appears twice in the header; expected each NODE.INPUT "
                             "(and 'job') once")
        seen.add(key)
    return header


def _json_rows(path: Path) -> tuple[list[str], list[_Row]]:
    """A JSON list of objects, one job each: keys are NODE.INPUT (and 'job'), values numbers, true/false or text."""
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        for k in keys:
            if keys.count(k) > 1:
                raise BatchError(f"--json {path}: key '{k}' appears twice in one job; expected each NODE.INPUT once")
        return dict(pairs)

    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=no_duplicates)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BatchError(f"--json {path}: cannot read it as UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, list) or not doc or not all(isinstance(job, dict) for job in doc):
        raise BatchError(f"--json {path}: expected a non-empty list of objects, one per job ({{\"job\": \"name\", "
                         "\"NODE.INPUT\": value, ...}})")
    columns = list(dict.fromkeys(k for job in doc for k in job if k != "job"))
    rows = []
    for n, job in enumerate(doc, 1):
        cells = []
        for k, value in job.items():
            if k == "job" or value is None:
                continue
            if isinstance(value, (list, dict)):
                raise BatchError(f"--json {path}: job {n}, {k}: expected a number, true/false or text, got {value!r}")
            cells.append((columns.index(k), str(value).lower() if isinstance(value, bool) else str(value)))
        label = str(job["job"]).strip() or None if job.get("job") is not None else None
        rows.append(_Row(label, label or f"job{n}", cells, f"--json {path} job {n}", path.parent))
    return columns, rows


@dataclass
class _Row:
    label: str | None  # the user's name for the job (CSV 'job' column)
    hint: str  # what the job's folder name starts with
    cells: list[tuple[int, str]]  # (column, raw value) of the non-empty cells
    where: str  # file:line, for error messages
    folder: Path | None = None  # the row file's folder: local input files may be named relative to it


class BatchSpec:
    """The command line's overrides, read and counted but not yet applied to a workflow.

    Counting needs no workflow and no server, so a batch too large for ``--max-jobs`` is refused before any work.
    Jobs are the rows (one per line of ``--prompts``, CSV row or ``--json`` object, or one if none) times every
    ``--seeds`` range.
    """

    def __init__(self, *, sets: list[str] = (), seeds: list[str] = (), prompts: Path | None = None,
                 prompt_input: str | None = None, csv_path: Path | None = None, json_path: Path | None = None):
        self.sets = [(*parse_assignment(item, "--set"), f"--set {item}") for item in sets]
        self.seeds = []
        for item in seeds:
            key, spec = parse_assignment(item, "--seeds")
            self.seeds.append((key, parse_seed_spec(spec, f"--seeds {item}"), f"--seeds {item}"))
        given = [f"{flag} {v}" for flag, v in (("--prompts", prompts), ("--csv", csv_path), ("--json", json_path)) if v]
        if len(given) > 1:
            raise BatchError(f"{' and '.join(g.split()[0] for g in given)}: expected one source of rows, got "
                             f"{len(given)} (put the prompt in a column instead)")
        self.columns: list[tuple[str, str]] = []  # (NODE.INPUT as written, what)
        self.rows_from = given[0] if given else ""  # the option that gives the rows
        self._rows: list[_Row] | None = None
        self._row_source = None
        self.row_count = 1
        if prompts is not None:
            if not prompt_input:
                raise BatchError("--prompts: expected --prompt-input NODE.INPUT too (which input each line goes to)")
            lines = read_prompt_lines(prompts)
            self.columns = [(prompt_input, "--prompt-input")]
            self._rows = [_Row(None, line, [(0, line)], f"--prompts {prompts}:{n}", prompts.parent)
                          for n, line in lines]
            self.row_count = len(lines)
        elif prompt_input:
            raise BatchError("--prompt-input: expected --prompts FILE with it")
        if csv_path is not None:
            header = _csv_header(csv_path)
            self.columns = [(col, f"--csv {csv_path} column '{col}'") for col in header if col.lower() != "job"]
            self._row_source = (csv_path, header)
            self.row_count = sum(1 for _ in _csv_records(csv_path)) - 1
            if self.row_count < 1:
                raise BatchError(f"--csv {csv_path}: expected one job per row after the header, found none")
        if json_path is not None:
            columns, self._rows = _json_rows(json_path)
            self.columns = [(col, f"--json {json_path} key '{col}'") for col in columns]
            self.row_count = len(self._rows)

    @property
    def count(self) -> int:
        total = self.row_count
        for _key, seeds, _what in self.seeds:
            total *= seeds.count
        return total

    def check_size(self, max_jobs: int | None) -> BatchSpec:
        if max_jobs is not None and self.count > max_jobs:
            factors = [f"{self.row_count} rows"] if self.columns else []
            factors += [f"{seeds.count} seeds ({key})" for key, seeds, _what in self.seeds]
            size = f"{' × '.join(factors)} = {self.count} jobs" if len(factors) > 1 else f"{self.count} jobs"
            raise BatchError(f"batch: {size}, more than --max-jobs {max_jobs}; check the --seeds ranges and the "
                             "row files, or raise --max-jobs if you mean it")
        return self

    def rows(self) -> list[_Row]:
        """Every row with its non-empty cells (read once, after the size check)."""
        if self._rows is None:
            self._rows = []
            if self._row_source is not None:
                path, header = self._row_source
                label_col = next((i for i, h in enumerate(header) if h.lower() == "job"), None)
                columns = [i for i in range(len(header)) if i != label_col]
                records = iter(_csv_records(path))
                next(records)  # the header
                for n, (lineno, cells) in enumerate(records, 1):
                    if len(cells) > len(header):
                        raise BatchError(f"--csv {path}:{lineno}: expected {len(header)} cells (the header's "
                                         f"columns), got {len(cells)}")
                    cells += [""] * (len(header) - len(cells))
                    label = cells[label_col].strip() or None if label_col is not None else None
                    filled = [(k, cells[i]) for k, i in enumerate(columns) if cells[i] != ""]
                    self._rows.append(_Row(label, label or f"row{n}", filled, f"--csv {path}:{lineno}", path.parent))
            if not self._rows:
                self._rows = [_Row(None, "", [], "")]
        return self._rows

    def plan(self, base: dict, object_info: dict | None) -> Batch:
        """Resolve every target in ``base`` and parse every value (all errors now, before any job runs)."""
        fixed = []
        for key, raw, what in self.sets:
            target = resolve_target(base, key, object_info, what)
            fixed.append((target, coerce(target, raw, "--set")))
        columns = [resolve_target(base, key, object_info, what) for key, what in self.columns]
        by_input: dict[str, str] = {}
        for (key, _what), target in zip(self.columns, columns):
            if target.key in by_input:
                raise BatchError(f"{self.rows_from}: columns '{by_input[target.key]}' and '{key}' both "
                                 f"set node {target.node} input '{target.input}'; expected one column per input")
            by_input[target.key] = key
        rows = [(row.label, row.hint,
                 [(columns[k], coerce(columns[k], raw, row.where, row.folder)) for k, raw in row.cells])
                for row in self.rows()]
        dims = []
        for key, seeds, what in self.seeds:
            target = resolve_target(base, key, object_info, what)
            _check_seed_bounds(target, seeds, what)
            dims.append((target, seeds))
        return Batch(base, fixed, rows, dims)


def _check_seed_bounds(target: Target, seeds: SeedList, what: str) -> None:
    opts = _options(target.spec) if target.spec else {}
    if opts.get("max") is not None and seeds.highest > opts["max"]:
        raise BatchError(f"{what}: seed {seeds.highest} is above the input's maximum {opts['max']}")
    if opts.get("min") is not None and seeds.lowest < opts["min"]:
        raise BatchError(f"{what}: seed {seeds.lowest} is below the input's minimum {opts['min']}")


class Batch:
    """The jobs of a batch, built one at a time on demand (a batch of millions costs no more memory than one job).

    Later overrides win: --set, then the row, then the seeds. Order: rows, then the seed grid (last --seeds fastest).
    """

    def __init__(self, base: dict, fixed: list, rows: list, dims: list):
        self.base, self.fixed, self.rows, self.dims = base, fixed, rows, dims
        self.per_row = 1
        for _target, seeds in dims:
            self.per_row *= seeds.count
        self.count = len(rows) * self.per_row

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Job:
        if not 0 <= i < self.count:
            raise IndexError(i)
        r, rest = divmod(i, self.per_row)
        combo = []
        for target, seeds in reversed(self.dims):
            rest, k = divmod(rest, seeds.count)
            combo.append((target, seeds[k]))
        combo.reverse()
        label, hint, row = self.rows[r]
        prompt = copy.deepcopy(self.base)
        params: dict = {}
        sources: dict = {}
        uploads: dict = {}
        for target, value in [*self.fixed, *row, *combo]:
            if isinstance(value, Upload):
                uploads[(target.node, target.input)] = value
                value = value.name
            prompt[target.node].setdefault("inputs", {})[target.input] = value
            params[target.key] = value
            sources[target.key] = target.written
        name = "_".join([hint] * bool(hint) + [f"{target.input}-{value}" for target, value in combo]) or "job"
        return Job(i + 1, params, prompt, fingerprint(prompt), label, safe_name(name, 80), sources, uploads=uploads)

    def input_values(self) -> Iterator[tuple[str, str, object]]:
        """``(node id, input, value)`` of every literal value any job sends, but the seeds (for the preflight)."""
        for nid, node in self.base.items():
            for name, value in (node.get("inputs") or {}).items():
                if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
                    yield nid, name, value
        for target, value in [*self.fixed, *(cell for _label, _hint, row in self.rows for cell in row)]:
            yield target.node, target.input, value.name if isinstance(value, Upload) else value

    def server_problems(self, object_info: dict) -> list[str]:
        """What keeps a server from running this batch: node types it lacks, model files it does not list."""
        problems = []
        missing = sorted({node.get("class_type") for node in self.base.values()} - set(object_info))
        if missing:
            problems.append(f"it has no node type {', '.join(map(str, missing))} (a custom node pack not installed "
                            "there?)")
        files: dict[str, str] = {}
        for nid, name, value in self.input_values():
            if not isinstance(value, str) or not value.lower().endswith(MODEL_SUFFIXES) or value in files:
                continue
            class_type = self.base[nid].get("class_type")
            choices = _choices(_input_spec(object_info, class_type, name))
            if choices is not None and value not in choices:
                files[value] = f"node {nid} {class_type}.{name}"
        problems += [f"it has no model file '{value}' ({where})" for value, where in files.items()]
        return problems

    def __iter__(self) -> Iterator[Job]:
        for i in range(self.count):
            yield self[i]


def plan_jobs(base: dict, *, sets: list[str] = (), seeds: list[str] = (), prompts: Path | None = None,
              prompt_input: str | None = None, csv_path: Path | None = None, json_path: Path | None = None,
              object_info: dict | None = None,
              max_jobs: int | None = DEFAULT_MAX_JOBS) -> Batch:
    """Every job of the batch, in order, built lazily (see BatchSpec and Batch)."""
    spec = BatchSpec(sets=sets, seeds=seeds, prompts=prompts, prompt_input=prompt_input, csv_path=csv_path,
                     json_path=json_path)
    return spec.check_size(max_jobs).plan(base, object_info)


# --------------------------------------------------------------------------------------------------------------------
# job ids: the folder names

_UNSAFE = re.compile(r"[^\w .()+=,@-]")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def safe_name(text: str, limit: int = 120) -> str:
    """A file or folder name that every common file system accepts as it is (Windows included)."""
    name = _UNSAFE.sub("_", text.replace("/", "_").replace("\\", "_"))[:limit].strip(" .")
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    return name or "_"


def assign_ids(jobs: Iterable[Job], earlier: dict[str, list[str]] | None = None,
               taken: Iterable[str] = ()) -> Iterator[Job]:
    """Give each job its id, which is also its folder name: an earlier attempt's id for the same prompt (``earlier``:
    fingerprint → ids), else its name, made unique (ignoring case, as Windows and macOS do) against ``taken`` and the
    batch's other jobs with ``-2``, ``-3``, ..."""
    taken_keys = {t.casefold() for t in taken}
    used: set[str] = set()
    for job in jobs:
        job_id = next((jid for jid in (earlier or {}).get(job.fingerprint, ()) if jid.casefold() not in used), None)
        if job_id is None:
            job_id, n = job.name, 1
            while job_id.casefold() in used or job_id.casefold() in taken_keys:
                n += 1
                job_id = f"{job.name}-{n}"
        used.add(job_id.casefold())
        job.job_id = job_id
        yield job
