"""A small client for one ComfyUI server: HTTP routes plus the ``/ws`` event stream.

Routes and events are those of ComfyUI 0.3.75 ``server.py`` / ``main.py``. Order that matters: the server sends
``execution_success`` (or ``execution_error``), then writes the history entry, then sends ``executing`` with
``node: null``; so a job is finished at that last event and its outputs are read from ``/history`` after it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import requests
import websocket

from .errors import BatchError


class ServerUnavailable(Exception):
    """The server did not answer (refused, reset, timed out): the job may run on another server."""


_ERRNO = re.compile(r"\[(?:Errno|WinError) -?\d+\] ([^'\")\]]+)")


def short_reason(exc: BaseException) -> str:
    """'connection refused', 'timed out', ...: the cause in a few words, not the library's nested repr."""
    if isinstance(exc, (requests.Timeout, websocket.WebSocketTimeoutException, TimeoutError)):
        return "no answer in time"
    m = _ERRNO.search(str(exc))
    if m:
        return m.group(1).strip().rstrip(".:").strip().lower()
    return str(exc).strip()[:200] or type(exc).__name__


class JobFailed(Exception):
    """ComfyUI rejected or failed the job; the message is ComfyUI's, with the node it names."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


def normalize_url(url: str) -> str:
    parts = urlsplit(url.strip() if "://" in url else "http://" + url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BatchError(f"--server: expected a URL such as http://127.0.0.1:8188, got {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def format_prompt_error(body: dict) -> str:
    """The 400 answer of ``POST /prompt``: a top-level error plus per-node validation errors."""
    err = body.get("error") or {}
    text = err.get("message", "prompt rejected") if isinstance(err, dict) else str(err)
    if isinstance(err, dict) and err.get("details"):
        text += f": {err['details']}"
    parts = [text]
    for nid, node_err in (body.get("node_errors") or {}).items():
        for e in node_err.get("errors") or []:
            msg = e.get("message", "")
            if e.get("details"):
                msg += f": {e['details']}"
            parts.append(f"node {nid} ({node_err.get('class_type', '?')}): {msg}")
    return "; ".join(parts)


def format_execution_error(data: dict) -> str:
    """The ``execution_error`` event (also stored in the history's status messages)."""
    where = f"node {data.get('node_id')} ({data.get('node_type')})" if data.get("node_id") is not None else "prompt"
    kind = data.get("exception_type") or "error"
    return f"{where}: {kind}: {str(data.get('exception_message', '')).strip()}"


@dataclass
class Event:
    type: str
    data: dict = field(default_factory=dict)


class ComfyClient:
    def __init__(self, url: str, *, http_timeout: float = 60.0):
        self.url = normalize_url(url)
        self.client_id = uuid.uuid4().hex
        self.http_timeout = http_timeout
        self.session = requests.Session()
        self._ws: websocket.WebSocket | None = None

    def __repr__(self) -> str:
        return f"ComfyClient({self.url})"

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _request(self, method: str, route: str, **kw) -> requests.Response:
        try:
            return self.session.request(method, self.url + route, timeout=kw.pop("timeout", self.http_timeout), **kw)
        except requests.RequestException as exc:
            raise ServerUnavailable(f"{self.url} did not answer ({method} {route}: {short_reason(exc)})") from exc

    def _json(self, method: str, route: str, **kw):
        resp = self._request(method, route, **kw)
        if resp.status_code != 200:
            raise ServerUnavailable(f"{self.url}: {method} {route} answered {resp.status_code}: {resp.text[:300]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise ServerUnavailable(f"{self.url}: {method} {route} did not answer JSON: {resp.text[:200]!r}") from exc

    def object_info(self) -> dict:
        return self._json("GET", "/object_info")

    def system_stats(self) -> dict:
        return self._json("GET", "/system_stats", timeout=10)

    def submit(self, prompt: dict, prompt_id: str) -> None:
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        resp = self._request("POST", "/prompt", json=body)
        if resp.status_code == 200:
            try:
                node_errors = resp.json().get("node_errors")
            except (ValueError, AttributeError):
                node_errors = None
            if node_errors:
                # ComfyUI queues the outputs that passed validation and drops the rest silently: a job missing
                # outputs is a failed job, so take it off the queue and report the dropped nodes.
                self.interrupt(prompt_id)
                answer = {"error": {"message": "Some outputs failed validation"}, "node_errors": node_errors}
                raise JobFailed(format_prompt_error(answer), {"stage": "validation", **answer})
            return
        try:
            answer = resp.json()
        except ValueError:
            raise ServerUnavailable(
                f"{self.url}: POST /prompt answered {resp.status_code}: {resp.text[:300]}") from None
        if resp.status_code == 400 and isinstance(answer, dict):
            raise JobFailed(format_prompt_error(answer), {"stage": "validation", **answer})
        raise ServerUnavailable(f"{self.url}: POST /prompt answered {resp.status_code}: {resp.text[:300]}")

    def history(self, prompt_id: str) -> dict | None:
        return self._json("GET", f"/history/{prompt_id}").get(prompt_id)

    def interrupt(self, prompt_id: str) -> None:
        """Stop our prompt whether it is running or still queued (best effort: used on Ctrl-C)."""
        for route, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._request("POST", route, json=body, timeout=5)
            except ServerUnavailable:
                pass

    def upload(self, path, name: str) -> str:
        """Put a local file into the server's input folder as ``name``; returns the name the server stored it under
        (``subfolder/name`` when it chose a subfolder), the value LoadImage and the like take."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise JobFailed(f"input file {path.name}: cannot read it: {short_reason(exc)}", {"stage": "upload"}) \
                from exc
        resp = self._request("POST", "/upload/image", files={"image": (name, data)},
                             data={"type": "input", "overwrite": "true"})
        if resp.status_code != 200:
            raise JobFailed(f"uploading input file {path.name}: the server answered {resp.status_code}: "
                            f"{resp.text[:200]}", {"stage": "upload"})
        try:
            answer = resp.json()
            stored = str(answer["name"])
        except (ValueError, KeyError, TypeError):
            raise JobFailed(f"uploading input file {path.name}: expected the stored name in the server's answer, "
                            f"got {resp.text[:200]!r}", {"stage": "upload"}) from None
        return f"{answer['subfolder']}/{stored}" if answer.get("subfolder") else stored

    def download(self, item: dict, dest) -> int:
        """Stream one ``/view`` file into the open binary file ``dest``; returns the byte count."""
        params = {"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type",
                                                                                                         "output")}
        resp = self._request("GET", "/view", params=params, stream=True)
        if resp.status_code != 200:
            raise JobFailed(f"{self.url}: /view {params} answered {resp.status_code}: {resp.text[:200]}")
        size = 0
        for chunk in resp.iter_content(1 << 20):
            dest.write(chunk)
            size += len(chunk)
        return size

    # -- websocket ----------------------------------------------------------------------------------------------
    def _ws_url(self) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/ws", f"clientId={self.client_id}", ""))

    def connect(self) -> None:
        self.close()
        try:
            self._ws = websocket.create_connection(self._ws_url(), timeout=10)
        except (OSError, websocket.WebSocketException) as exc:
            raise ServerUnavailable(f"{self.url} did not answer (websocket /ws: {short_reason(exc)})") from exc

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except (OSError, websocket.WebSocketException):
                pass
            self._ws = None

    def events(self, poll: float) -> Iterator[Event | None]:
        """JSON events from ``/ws``; yields None after ``poll`` seconds of silence (binary previews are skipped)."""
        if self._ws is None:
            self.connect()
        assert self._ws is not None
        self._ws.settimeout(poll)
        while True:
            try:
                msg = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                yield None
                continue
            except (OSError, websocket.WebSocketException) as exc:
                # One reconnect: the job keeps running on the server and the history poll catches up on what the
                # gap lost; a server that is gone fails the reconnect and the job moves to another server.
                self._ws = None
                try:
                    self.connect()
                except ServerUnavailable:
                    raise ServerUnavailable(f"{self.url} closed the websocket ({short_reason(exc)})") from exc
                assert self._ws is not None
                self._ws.settimeout(poll)
                yield None
                continue
            if isinstance(msg, bytes):
                continue
            try:
                doc = json.loads(msg)
            except ValueError:
                continue
            if isinstance(doc, dict) and "type" in doc:
                yield Event(doc["type"], doc.get("data") or {})

    def wait(self, prompt_id: str, *, on_event: Callable[[Event], None], timeout: float | None,
             poll: float = 2.0, stopped: Callable[[], bool] = lambda: False) -> dict:
        """Block until ``prompt_id`` is finished; returns its history entry or raises JobFailed.

        The websocket feeds ``on_event`` (progress); after each quiet ``poll`` the history is checked too, so an event
        lost to a reconnect cannot hang the batch. Once ``stopped()``, a prompt without a history entry after a quiet
        poll is given up: it was taken off the queue before it ran, and no event will ever come for it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        error: dict | None = None
        for event in self.events(poll):
            if deadline is not None and time.monotonic() > deadline:
                self.interrupt(prompt_id)
                raise JobFailed(f"timed out after {timeout:g} s (interrupted on the server)", {"stage": "timeout"})
            if event is None:
                entry = self.history(prompt_id)
                if entry is not None and (entry.get("status") or {}).get("completed") is not None:
                    return self._finished(prompt_id, entry, error)
                if entry is None and stopped():
                    raise JobFailed("stopped before it finished (taken off the server's queue)",
                                    {"stage": "execution"})
                continue
            if event.data.get("prompt_id") != prompt_id:
                continue
            on_event(event)
            if event.type == "execution_error":
                error = event.data
            elif event.type == "execution_interrupted":
                raise JobFailed(f"interrupted on the server at node {event.data.get('node_id')}",
                                {"stage": "execution", **event.data})
            elif event.type == "executing" and event.data.get("node") is None:
                return self._finished(prompt_id, self._history_after_end(prompt_id), error)
        raise AssertionError("unreachable")  # events() never ends on its own

    def _history_after_end(self, prompt_id: str) -> dict:
        for _ in range(50):  # history is written before `executing: null`; a short retry covers a proxy's reordering
            entry = self.history(prompt_id)
            if entry is not None:
                return entry
            time.sleep(0.1)
        raise JobFailed(f"finished but /history/{prompt_id} has no entry", {"stage": "history"})

    @staticmethod
    def _finished(prompt_id: str, entry: dict, error: dict | None) -> dict:
        status = entry.get("status") or {}
        if error is None and status.get("status_str") == "error":
            for name, data in status.get("messages") or []:
                if name == "execution_error":
                    error = data
                elif name == "execution_interrupted":
                    raise JobFailed(f"interrupted on the server at node {data.get('node_id')}",
                                    {"stage": "execution", **data})
            if error is None:
                raise JobFailed(f"the server reports status 'error' for {prompt_id} without a message",
                                {"stage": "execution", "status": status})
        if error is not None:
            kept = {k: v for k, v in error.items() if k not in ("current_inputs", "current_outputs")}
            raise JobFailed(format_execution_error(error), {"stage": "execution", **kept})
        return entry
