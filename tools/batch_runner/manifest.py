"""``manifest.json`` of an output folder: job → parameters → files, rewritten after every job.

A job counts as finished when its entry has its fingerprint, status ``done`` and all its files still on disk, so a
rerun skips it; failed, interrupted or missing jobs run again. The manifest grows as jobs finish. Writes go to a temporary file renamed over the manifest, so a
batch killed at any moment leaves the previous complete manifest.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from .errors import BatchError

FORMAT = "layerstack-batch-manifest"
VERSION = 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Manifest:
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.path = out_dir / "manifest.json"
        self._lock = threading.Lock()
        self._index: dict[str, list[str]] | None = None
        self.doc: dict = {"format": FORMAT, "version": VERSION, "runs": [], "jobs": {}}
        if self.path.exists():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise BatchError(f"{self.path}: expected a manifest written by layerstack-batch, cannot read it: "
                                 f"{exc}") from exc
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("jobs"), dict):
                raise BatchError(f"{self.path}: expected a manifest with format '{FORMAT}', found another file; "
                                 "choose another --out folder")
            if doc.get("version") != VERSION:
                raise BatchError(f"{self.path}: manifest version {doc.get('version')} is not the supported "
                                 f"{VERSION}")
            self.doc = doc
            self.doc.setdefault("runs", [])

    @property
    def jobs(self) -> dict:
        return self.doc["jobs"]

    def ids_by_fingerprint(self) -> dict[str, list[str]]:
        """Fingerprint → ids of the jobs recorded with it (a rerun gives a job its earlier id and folder)."""
        with self._lock:
            if self._index is None:
                self._index = {}
                for jid, entry in self.jobs.items():
                    self._index.setdefault(entry.get("fingerprint"), []).append(jid)
            return self._index

    def finished(self, job_id: str, fingerprint: str) -> bool:
        """Whether this job is recorded as done with this prompt and all its files still exist."""
        entry = self.jobs.get(job_id) or {}
        return entry.get("status") == "done" and entry.get("fingerprint") == fingerprint and all(
            (self.out_dir / f["path"]).is_file() for f in entry.get("files", []))

    def start_run(self, info: dict) -> None:
        with self._lock:
            self.doc["runs"].append({"started": now(), **info})
            self._write()

    def record(self, job_id: str, entry: dict) -> None:
        with self._lock:
            if self._index is not None and job_id not in self.jobs:
                self._index.setdefault(entry.get("fingerprint"), []).append(job_id)
            self.jobs[job_id] = entry
            self._write()

    def _write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".tmp", dir=self.out_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.doc, fh, indent=2, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
