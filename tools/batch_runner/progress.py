"""Progress display on stderr, fed by the servers' websocket events.

On a terminal one status line is redrawn (at most 10 times a second): a bar over the whole batch, where each running
job counts by the share of its nodes done (the sampler's step counter included), then one field per server. Elsewhere
(CI logs, pipes) only the start and the end of each job are printed, so logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass


@dataclass
class _Running:
    job_id: str
    nodes_total: int
    nodes_done: int = 0
    node_label: str = ""
    value: int = 0
    maximum: int = 0

    def fraction(self) -> float:
        step = self.value / self.maximum if self.maximum else 0.0
        return min(1.0, (self.nodes_done + step) / max(1, self.nodes_total))


class Progress:
    def __init__(self, total: int, *, stream=None, enabled: bool = True, bar: bool | None = None):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.bar = self.enabled and (self.stream.isatty() if bar is None else bar)
        self.done = 0
        self.failed = 0
        self.running: dict[str, _Running] = {}  # server label -> job
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._line_len = 0

    # -- events ----------------------------------------------------------------------------------------------------
    def started(self, server: str, job_id: str, nodes_total: int) -> None:
        with self._lock:
            self.running[server] = _Running(job_id, nodes_total)
            if self.enabled and not self.bar:
                self._print(f"[{self.done + self.failed + 1}/{self.total}] {job_id} started on {server}")
            self._draw(force=True)

    def event(self, server: str, etype: str, data: dict, prompt: dict) -> None:
        with self._lock:
            run = self.running.get(server)
            if run is None:
                return
            if etype == "execution_cached":
                run.nodes_done += len(data.get("nodes") or [])
            elif etype == "executing" and data.get("node") is not None:
                if run.node_label:  # the previous node is finished
                    run.nodes_done += 1
                node = prompt.get(str(data["node"])) or {}
                run.node_label = (node.get("_meta") or {}).get("title") or node.get("class_type") or str(data["node"])
                run.value = run.maximum = 0
                self._draw(force=True)  # one draw per node: few, and each node shows up at least once
                return
            elif etype == "progress":
                run.value, run.maximum = int(data.get("value") or 0), int(data.get("max") or 0)
            self._draw()

    def finished(self, server: str, job_id: str, ok: bool, message: str) -> None:
        with self._lock:
            self.running.pop(server, None)
            if ok:
                self.done += 1
            else:
                self.failed += 1
            if self.enabled:
                self._print(message)
            self._draw(force=True)

    def dropped(self, server: str) -> None:
        """The server stopped answering; its job is not counted (it goes back to the queue)."""
        with self._lock:
            self.running.pop(server, None)
            self._draw(force=True)

    def note(self, message: str) -> None:
        with self._lock:
            self._print(message)
            self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            self._clear()

    # -- drawing ---------------------------------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.bar and self._line_len:
            self.stream.write("\r" + " " * self._line_len + "\r")
            self.stream.flush()
            self._line_len = 0

    def _draw(self, force: bool = False) -> None:
        if not self.bar:
            return
        t = time.monotonic()
        if not force and t - self._last_draw < 0.1:
            return
        self._last_draw = t
        share = self.done + self.failed + sum(r.fraction() for r in self.running.values())
        width = 24
        filled = int(width * share / max(1, self.total))
        head = f"[{'#' * filled}{'-' * (width - filled)}] {self.done + self.failed}/{self.total}"
        if self.failed:
            head += f" ({self.failed} failed)"
        fields = []
        for server, r in self.running.items():
            step = f" {r.value}/{r.maximum}" if r.maximum else ""
            fields.append(f"{server}: {r.job_id} {r.node_label}{step}")
        line = " | ".join([head, *fields])
        cols = shutil.get_terminal_size((100, 20)).columns - 1
        line = line[:cols]
        self.stream.write("\r" + line + " " * max(0, self._line_len - len(line)))
        self.stream.flush()
        self._line_len = len(line)
