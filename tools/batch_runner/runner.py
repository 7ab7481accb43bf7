"""Runs a batch of jobs over one or more ComfyUI servers and downloads their outputs.

One worker thread per server keeps one job in flight on it, so a faster server simply takes more jobs. Jobs are taken
from the batch one at a time as workers free up (never listed up front). Local input files a job names are uploaded
to the server first. A server that stops answering is retired and its job goes back for the others; a job that
ComfyUI rejects or fails is recorded with ComfyUI's message and the batch goes on. Only final outputs (``type:
output``) are downloaded unless previews and temporary files are asked for too.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .client import ComfyClient, JobFailed, ServerUnavailable, short_reason
from .jobs import Job, Upload, safe_name
from .manifest import Manifest, now
from .progress import Progress

# Outcomes of a job in the summary and the manifest ("skipped": done by an earlier run; "not run": never started).
DONE, FAILED, INTERRUPTED, SKIPPED, NOT_RUN = "done", "failed", "interrupted", "skipped", "not run"


def local_name(item: dict) -> PurePosixPath:
    """Where a server file goes inside the job folder: its subfolder and name, never outside the folder."""
    parts = [p for p in str(item.get("subfolder") or "").replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return PurePosixPath(*[safe_name(p) for p in parts], safe_name(os.path.basename(str(item["filename"]))))


def _is_file_item(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("filename"), str) and item.get("filename") != ""


@dataclass
class Outcome:
    index: int
    job_id: str
    status: str
    message: str = ""


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False

    def ids(self, status: str) -> list[str]:
        return [o.job_id for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[str]:
        return self.ids(DONE)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(o.status in (DONE, SKIPPED) for o in self.outcomes)


class BatchRunner:
    def __init__(self, clients: list[ComfyClient], out_dir: Path, manifest: Manifest, progress: Progress, *,
                 timeout: float | None = None, include_temp: bool = False):
        self.clients = clients
        self.out_dir = out_dir
        self.manifest = manifest
        self.progress = progress
        self.timeout = timeout
        self.include_temp = include_temp
        self.labels = {c.url: (c.url.split("://", 1)[-1] if len(clients) > 1 else "server") for c in clients}
        self._source: Iterator[Job] = iter(())
        self._returned: deque[Job] = deque()  # jobs of servers that dropped out, taken before new ones
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._alive = 0
        self._in_flight: dict[str, str] = {}  # server url -> prompt id
        self._current: dict[str, Job | None] = {}  # server url -> the job it runs (until its outcome is known)
        self._uploaded: dict[tuple[str, str], str] = {}  # (server url, upload name) -> name stored there
        self.summary = Summary()

    # -- public ----------------------------------------------------------------------------------------------------
    def run(self, jobs: Iterable[Job]) -> Summary:
        self._source = iter(jobs)
        self._alive = len(self.clients)
        threads = [threading.Thread(target=self._worker, args=(c,), name=f"batch-{c.url}", daemon=True)
                   for c in self.clients]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self.stop()
            for t in threads:
                t.join(10)
            self.summary.interrupted = True
        finally:
            self.progress.close()
        with self._lock:
            stuck = [job for job in self._current.values() if job is not None]
        for job in stuck:  # a server that did not confirm the interrupt in time
            self._outcome(job, INTERRUPTED, "still in flight when the batch stopped")
        while (job := self._take()) is not None:  # whatever no server took
            self._outcome(job, NOT_RUN)
        return self.summary

    def stop(self) -> None:
        """Stop taking jobs and interrupt the prompts in flight (Ctrl-C, SIGTERM)."""
        self._stop.set()
        with self._lock:
            flight = dict(self._in_flight)
        for client in self.clients:
            if client.url in flight:
                client.interrupt(flight[client.url])

    def _take(self) -> Job | None:
        with self._lock:
            return self._returned.popleft() if self._returned else next(self._source, None)

    def _outcome(self, job: Job, status: str, message: str = "") -> None:
        with self._lock:
            for url, current in self._current.items():
                if current is job:
                    self._current[url] = None
            self.summary.outcomes.append(Outcome(job.index, job.job_id, status, message))

    # -- worker ----------------------------------------------------------------------------------------------------
    def _worker(self, client: ComfyClient) -> None:
        label = self.labels[client.url]
        try:
            client.connect()
        except ServerUnavailable as exc:
            self._retire(client, None, str(exc))
            return
        try:
            while not self._stop.is_set():
                job = self._take()
                if job is None:
                    return
                try:
                    self._run_job(client, label, job)
                except ServerUnavailable as exc:
                    self._retire(client, job, str(exc))
                    return
        finally:
            client.close()

    def _retire(self, client: ComfyClient, job: Job | None, reason: str) -> None:
        with self._lock:
            self._alive -= 1
            last = self._alive == 0
        self.progress.note(f"server {client.url} dropped out: {reason}")
        if job is None:
            return
        if last:
            self._record_failure(job, client, None, f"no server left to run it: {reason}", {"stage": "server"},
                                 started=now())
        else:
            with self._lock:
                self._returned.append(job)  # another server takes it

    def _run_job(self, client: ComfyClient, label: str, job: Job) -> None:
        job_id = job.job_id
        started = now()
        t0 = time.monotonic()
        prompt_id = str(uuid.uuid4())
        self.progress.started(label, job_id, len(job.prompt))
        with self._lock:
            self._in_flight[client.url] = prompt_id
            self._current[client.url] = job
        try:
            client.submit(self._with_uploads(client, job), prompt_id)
            entry = client.wait(
                prompt_id,
                on_event=lambda e: self.progress.event(label, e.type, e.data, job.prompt),
                timeout=self.timeout,
                stopped=self._stop.is_set,
            )
            files, values = self._download(client, job_id, entry.get("outputs") or {})
        except JobFailed as exc:
            self._record_failure(job, client, prompt_id, str(exc), exc.details, started)
            self.progress.finished(label, job_id, False, f"FAILED {job_id} on {client.url}: {exc}")
            return
        except ServerUnavailable:
            self.progress.dropped(label)
            raise
        except Exception as exc:  # a job's own trouble (a full disk, ...) is its failure, not the batch's end
            message = f"{type(exc).__name__}: {short_reason(exc)}"
            self._record_failure(job, client, prompt_id, message, {"stage": "client"}, started)
            self.progress.finished(label, job_id, False, f"FAILED {job_id} on {client.url}: {message}")
            return
        finally:
            with self._lock:
                self._in_flight.pop(client.url, None)
        self.manifest.record(job_id, {
            **self._base_entry(job, client, prompt_id, started),
            "status": DONE,
            "seconds": round(time.monotonic() - t0, 3),
            "files": files,
            "values": values,
        })
        self._outcome(job, DONE)
        self.progress.finished(label, job_id, True,
                               f"ok {job_id} on {client.url}: {len(files)} file(s) in {time.monotonic() - t0:.1f} s")

    def _with_uploads(self, client: ComfyClient, job: Job) -> dict:
        """The job's prompt, its local input files uploaded to this server first (each file once per server)."""
        if not job.uploads:
            return job.prompt
        prompt = copy.deepcopy(job.prompt)
        for (node, name), upload in job.uploads.items():
            prompt[node]["inputs"][name] = self._upload(client, upload)
        return prompt

    def _upload(self, client: ComfyClient, upload: Upload) -> str:
        key = (client.url, upload.name)
        with self._lock:
            stored = self._uploaded.get(key)
        if stored is None:
            stored = client.upload(upload.path, upload.name)
            with self._lock:
                self._uploaded[key] = stored
        return stored

    def _base_entry(self, job: Job, client: ComfyClient, prompt_id: str | None, started: str) -> dict:
        entry = {
            "index": job.index,
            "label": job.label,
            "fingerprint": job.fingerprint,
            "parameters": job.params,
            "named_as": job.sources,
            "server": client.url,
            "prompt_id": prompt_id,
            "started": started,
            "finished": now(),
        }
        if job.uploads:
            entry["uploads"] = {f"{node}.{name}": {"file": str(up.path), "as": up.name}
                                for (node, name), up in job.uploads.items()}
        return entry

    def _record_failure(self, job: Job, client: ComfyClient, prompt_id: str | None, message: str, details: dict,
                        started: str) -> None:
        status = INTERRUPTED if self._stop.is_set() else FAILED
        self.manifest.record(job.job_id, {
            **self._base_entry(job, client, prompt_id, started),
            "status": status,
            "error": message,
            "error_details": details,
            "files": [],
        })
        self._outcome(job, status, message)

    # -- outputs ---------------------------------------------------------------------------------------------------
    def _download(self, client: ComfyClient, job_id: str, outputs: dict) -> tuple[list[dict], dict]:
        """Every final output file of every output node (images, PSDs, latents, ...), previews and temporary files
        only when asked for; other output values go to the manifest."""
        files: list[dict] = []
        values: dict = {}
        job_dir = self.out_dir / job_id
        for node_id, node_out in outputs.items():
            if not isinstance(node_out, dict):
                continue
            for key, items in node_out.items():
                seq = items if isinstance(items, list) else [items]
                plain = [it for it in seq if not _is_file_item(it)]
                if plain:
                    values.setdefault(node_id, {})[key] = plain if isinstance(items, list) else items
                for item in seq:
                    if _is_file_item(item) and (self.include_temp or item.get("type", "output") == "output"):
                        files.append(self._fetch(client, job_dir, node_id, key, item))
        return files, values

    def _fetch(self, client: ComfyClient, job_dir: Path, node_id: str, key: str, item: dict) -> dict:
        rel = local_name(item)
        target = job_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=target.parent)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as fh:
                size = client.download(item, _Hashing(fh, digest))
            final = _link_new(Path(tmp), target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return {
            "node": node_id,
            "output": key,
            "path": final.relative_to(self.out_dir).as_posix(),
            "filename": item["filename"],
            "subfolder": item.get("subfolder", ""),
            "type": item.get("type", "output"),
            "bytes": size,
            "sha256": digest.hexdigest(),
        }


class _Hashing:
    def __init__(self, fh, digest):
        self.fh, self.digest = fh, digest

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self.digest.update(chunk)


def _link_new(tmp: Path, target: Path) -> Path:
    """Give the downloaded file its name without replacing any existing file (a new ``-N`` suffix instead)."""
    stem, suffix = target.stem, target.suffix
    for n in range(10000):
        candidate = target if n == 0 else target.with_name(f"{stem}-{n}{suffix}")
        try:
            os.link(tmp, candidate)
            return candidate
        except FileExistsError:
            continue
        except OSError:  # no hard links here (FAT, some network drives): an exclusive create does the same
            try:
                with open(candidate, "xb") as dst, open(tmp, "rb") as src:
                    shutil.copyfileobj(src, dst)
                return candidate
            except FileExistsError:
                continue
    raise JobFailed(f"output {target.name}: 10000 files of that name already exist in the job's folder")
