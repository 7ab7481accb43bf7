"""Runs a batch of jobs over one or more ComfyUI servers and downloads every output.

One worker thread per server keeps one job in flight on it, so a faster server simply takes more jobs. Jobs are taken
from the batch one at a time as workers free up (never listed up front). A server that stops answering is retired and
its job goes back for the others; a job that ComfyUI rejects or fails is recorded with ComfyUI's message and the batch
goes on.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .client import ComfyClient, JobFailed, ServerUnavailable
from .jobs import Job
from .manifest import Manifest, now
from .progress import Progress

_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+=,@-]")


def _safe_part(name: str) -> str:
    name = _UNSAFE.sub("_", name).strip(" .")
    return name or "_"


def local_name(item: dict) -> PurePosixPath:
    """Where a server file goes inside the job folder: its subfolder and name, never outside the folder."""
    parts = [p for p in str(item.get("subfolder") or "").replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return PurePosixPath(*[_safe_part(p) for p in parts], _safe_part(os.path.basename(str(item["filename"]))))


def _is_file_item(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("filename"), str) and item.get("filename") != ""


@dataclass
class Summary:
    planned: int = 0
    skipped: int = 0
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run and not self.interrupted


class BatchRunner:
    def __init__(self, clients: list[ComfyClient], out_dir: Path, manifest: Manifest, progress: Progress, *,
                 timeout: float | None = None):
        self.clients = clients
        self.out_dir = out_dir
        self.manifest = manifest
        self.progress = progress
        self.timeout = timeout
        self.labels = {c.url: (c.url.split("://", 1)[-1] if len(clients) > 1 else "server") for c in clients}
        self._source: Iterator[Job] = iter(())
        self._returned: deque[Job] = deque()  # jobs of servers that dropped out, taken before new ones
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._alive = 0
        self._in_flight: dict[str, str] = {}  # server url -> prompt id
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
        while (job := self._take()) is not None:  # whatever no server took
            self.summary.not_run.append(job.job_id)
        return self.summary

    def _take(self) -> Job | None:
        with self._lock:
            return self._returned.popleft() if self._returned else next(self._source, None)

    def stop(self) -> None:
        """Stop taking jobs and interrupt the prompts in flight (Ctrl-C, SIGTERM)."""
        self._stop.set()
        with self._lock:
            flight = dict(self._in_flight)
        for client in self.clients:
            if client.url in flight:
                client.interrupt(flight[client.url])

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
        try:
            client.submit(job.prompt, prompt_id)
            entry = client.wait(
                prompt_id,
                on_event=lambda e: self.progress.event(label, e.type, e.data, job.prompt),
                timeout=self.timeout,
            )
            files, values = self._download(client, job_id, entry.get("outputs") or {})
        except JobFailed as exc:
            self._record_failure(job, client, prompt_id, str(exc), exc.details, started)
            self.progress.finished(label, job_id, False, f"FAILED {job_id} on {client.url}: {exc}")
            return
        except ServerUnavailable:
            self.progress.dropped(label)
            raise
        finally:
            with self._lock:
                self._in_flight.pop(client.url, None)
        self.manifest.record(job_id, {
            **self._base_entry(job, client, prompt_id, started),
            "status": "done",
            "seconds": round(time.monotonic() - t0, 3),
            "files": files,
            "values": values,
        })
        with self._lock:
            self.summary.done.append(job_id)
        self.progress.finished(label, job_id, True,
                               f"ok {job_id} on {client.url}: {len(files)} file(s) in {time.monotonic() - t0:.1f} s")

    def _base_entry(self, job: Job, client: ComfyClient, prompt_id: str | None, started: str) -> dict:
        return {
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

    def _record_failure(self, job: Job, client: ComfyClient, prompt_id: str | None, message: str, details: dict,
                        started: str) -> None:
        self.manifest.record(job.job_id, {
            **self._base_entry(job, client, prompt_id, started),
            "status": "failed",
            "error": message,
            "error_details": details,
            "files": [],
        })
        with self._lock:
            self.summary.failed.append(job.job_id)

    # -- outputs ---------------------------------------------------------------------------------------------------
    def _download(self, client: ComfyClient, job_id: str, outputs: dict) -> tuple[list[dict], dict]:
        """Every file of every output node (images, PSDs, latents, ...); other output values go to the manifest."""
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
                    if _is_file_item(item):
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
    raise JobFailed(f"{target}: 10000 files of that name already exist")
