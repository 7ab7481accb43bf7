"""scripts/layerstack-batch against real headless ComfyUI servers (core nodes only, so no model is needed).

The session's `comfy_server` plus a second server started here: a batch spread over both, a batch stopped midway
and resumed, broken jobs among good ones, and the UI→API conversion against a live /object_info.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from batch_runner.convert import ui_to_api
from fixtures.api_twins import assert_converts_to_twin
from fixtures.server import ComfyServer

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "batch"
UI = DATA / "core_nodes.ui.json"
MASK_NAME = "layerstack_batch_mask.png"  # the name the UI workflow's LoadImageMask asks for
W, H = 768, 384


def _mask_png() -> bytes:
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = np.tile(np.linspace(0, 255, W).round().astype(np.uint8), (H, 1))
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def second_server(tmp_path_factory):
    server = ComfyServer(tmp_path_factory.mktemp("batch_second_server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def servers(comfy_server, second_server):
    for server in (comfy_server, second_server):
        (server.input_dir / MASK_NAME).write_bytes(_mask_png())
    return [comfy_server, second_server]


def run_batch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(ROOT / "scripts" / "layerstack-batch"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def start_batch(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.Popen([str(ROOT / "scripts" / "layerstack-batch"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def history(server) -> dict:
    return requests.get(f"{server.url}/history", params={"max_items": 10000}, timeout=30).json()


def wait_idle(server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = requests.get(f"{server.url}/queue", timeout=10).json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{server.url} still busy after {timeout}s")


def test_six_jobs_over_two_servers_download_every_output(servers, tmp_path):
    a, b = servers
    out = tmp_path / "out"
    res = run_batch(str(UI), "--server", a.url, "--server", b.url, "--out", str(out), "--seeds", "Int.value=1-6",
                    "--set", f"1.width={W}", "--set", f"1.height={H}", "--progress", "bar")
    assert res.returncode == 0, res.stderr
    # the bar names the node each server is on, which only the websocket's `executing` events tell
    bar_lines = [line for line in res.stderr.splitlines() if line.startswith("[") and "/6" in line]
    join = a.object_info()["JoinImageWithAlpha"]["display_name"]  # the host's name: the UI node has no own title
    assert any("Noise" in line for line in bar_lines) and any(join in line for line in bar_lines)
    jobs = manifest(out)["jobs"]
    assert sorted(jobs) == [f"value-{n}" for n in range(1, 7)]  # named by the seed, not by a hash
    assert {j["status"] for j in jobs.values()} == {"done"}
    assert sorted(j["parameters"]["5.value"] for j in jobs.values()) == [1, 2, 3, 4, 5, 6]

    # Both servers ran jobs, and each server's own history holds exactly the prompts the manifest gives it.
    by_server = {s.url: {j["prompt_id"] for j in jobs.values() if j["server"] == s.url} for s in servers}
    assert all(by_server.values()), by_server
    for server in servers:
        ran = history(server)
        assert by_server[server.url] <= set(ran)
        other = set().union(*(ids for url, ids in by_server.items() if url != server.url))
        assert not other & set(ran)

    digests = set()
    for job_id, job in jobs.items():
        kinds = {(f["node"], f["output"]) for f in job["files"]}
        assert kinds == {("6", "images"), ("12", "latents")}, kinds  # the RGBA PNG and the non-image latent file
        png = next(f for f in job["files"] if f["output"] == "images")
        path = out / png["path"]
        assert png["path"] == f"{job_id}/layerstack/{png['filename']}"  # the job folder, then the server subfolder
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == png["sha256"] and len(data) == png["bytes"]
        server = next(s for s in servers if s.url == job["server"])
        assert server.fetch(png) == data  # what the server holds, byte for byte
        image = Image.open(path)
        assert image.mode == "RGBA" and image.size == (W, H)
        alpha = np.asarray(image)[..., 3].astype(int)
        expected = np.asarray(Image.open(io.BytesIO(_mask_png())))[..., 3].astype(int)
        assert np.abs(alpha - expected).max() <= 1  # the mask went through LoadImageMask + JoinImageWithAlpha
        digests.add(png["sha256"])
        latent = next(f for f in job["files"] if f["output"] == "latents")
        assert (out / latent["path"]).stat().st_size == latent["bytes"] > 0
    assert len(digests) == 6  # six seeds, six different noise images


def test_resume_after_stop_midway_runs_only_the_rest(servers, tmp_path):
    _, server = servers
    out = tmp_path / "out"
    args = (str(UI), "--server", server.url, "--out", str(out), "--seeds", "Int.value=101-106",
            "--set", "1.width=1024", "--set", "1.height=1024")
    wait_idle(server)
    proc = start_batch(*args)
    deadline = time.monotonic() + 180
    done_at_stop: dict = {}
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "manifest.json").exists():
            done_at_stop = {k: v for k, v in manifest(out)["jobs"].items() if v["status"] == "done"}
            if len(done_at_stop) >= 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    listed = _summary(err)
    assert sorted(listed) == sorted(f"value-{n}" for n in range(101, 107)), err  # every job, with its outcome
    assert set(listed.values()) <= {"done", "interrupted", "not run"} and "Traceback" not in err
    first = {k: v for k, v in manifest(out)["jobs"].items() if v["status"] == "done"}
    assert 2 <= len(first) < 6, "the batch finished before it could be stopped; the jobs are too fast"

    wait_idle(server)  # the interrupted prompt must be out of the way before counting
    before = set(history(server))
    res = run_batch(*args, "--limit", "1")
    assert res.returncode == 0, res.stderr
    second = manifest(out)["jobs"]
    assert sum(v["status"] == "done" for v in second.values()) == len(first) + 1
    res = run_batch(*args)
    assert res.returncode == 0, res.stderr
    assert f"{len(first) + 1} of 6 job(s) already done" in res.stderr
    final = manifest(out)["jobs"]
    assert sum(v["status"] == "done" for v in final.values()) == 6
    for job_id, job in first.items():  # finished jobs were not redone
        assert final[job_id]["prompt_id"] == job["prompt_id"]
        assert final[job_id]["finished"] == job["finished"]
    new_prompts = set(history(server)) - before
    assert len(new_prompts) == 6 - len(first)
    assert new_prompts == {j["prompt_id"] for k, j in final.items() if k not in first}
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(["manifest.json", *(f["path"] for j in final.values() for f in j["files"])])
    assert len(files) == 1 + 6 * 2  # one PNG and one latent per job, no leftovers of the interrupted job

    res = run_batch(*args)  # everything done: nothing is submitted
    assert res.returncode == 0 and "6 of 6 job(s) already done" in res.stderr
    assert set(history(server)) - before == new_prompts


def test_broken_jobs_are_reported_and_the_others_finish(servers, tmp_path):
    server, _ = servers
    (server.input_dir / "layerstack_batch_corrupt.png").write_bytes(b"this is not a PNG")
    table = tmp_path / "jobs.csv"
    table.write_text(
        "job,1.height,Load Image (as Mask).image,Int.value\n"
        "good-1,,,1\n"
        "too-tall,99999,,2\n"
        "corrupt-mask,,layerstack_batch_corrupt.png,3\n"
        "good-2,,,4\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    res = run_batch(str(UI), "--server", server.url, "--out", str(out), "--csv", str(table))
    assert res.returncode == 1
    jobs = {j["label"]: j for j in manifest(out)["jobs"].values()}
    assert {k: v["status"] for k, v in jobs.items()} == {"good-1": "done", "too-tall": "failed",
                                                         "corrupt-mask": "failed", "good-2": "done"}
    assert "node 1 (EmptyImage): Value 99999 bigger than max of 16384" in jobs["too-tall"]["error"]
    assert "node 13 (LoadImageMask)" in jobs["corrupt-mask"]["error"]
    assert "layerstack_batch_corrupt.png" in jobs["corrupt-mask"]["error"]
    for label in ("good-1", "good-2"):
        assert all((out / f["path"]).is_file() for f in jobs[label]["files"]) and len(jobs[label]["files"]) == 2
    assert "2 done, 2 failed" in res.stderr
    assert _summary(res.stderr) == {"good-1": "done", "too-tall": "failed", "corrupt-mask": "failed", "good-2": "done"}
    failed_lines = [line for line in res.stderr.splitlines() if line.startswith("  failed")]
    assert "too-tall: " in failed_lines[0] and "bigger than max" in failed_lines[0]  # ComfyUI's message, per job
    assert "corrupt-mask: " in failed_lines[1] and "LoadImageMask" in failed_lines[1]


def _summary(stderr: str) -> dict[str, str]:
    """job id -> outcome, from the summary the runner prints last."""
    lines = stderr.splitlines()
    rows = [row for row in lines[lines.index("summary:") + 1:] if row.startswith("  ")]
    return {row[14:].split(": ")[0]: row[2:13].strip() for row in rows}  # "  <status:11> <job id>[: message]"


def test_preflight_uploads_and_final_outputs(servers, tmp_path):
    """Three servers: one down, one without the workflow's model file, one ready. The first two are reported and left
    out; a job naming a local mask file gets it uploaded; only final outputs come back (no preview)."""
    ready, lacking = servers
    checkpoint = next(c for c in ready.object_info("CheckpointLoaderSimple")["CheckpointLoaderSimple"]["input"]
                      ["required"]["ckpt_name"][0] if c not in lacking.object_info("CheckpointLoaderSimple")
                      ["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0])
    api = json.loads((DATA / "core_nodes.api.json").read_text())
    api["40"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}  # unused: not run
    api["41"] = {"class_type": "PreviewImage", "inputs": {"images": ["15", 0]}}
    workflow = tmp_path / "with_preview_api.json"
    workflow.write_text(json.dumps(api))
    (tmp_path / "masks").mkdir()
    flipped = np.asarray(Image.open(io.BytesIO(_mask_png())))[:, ::-1].copy()
    Image.fromarray(flipped, "RGBA").save(tmp_path / "masks" / "flipped.png")
    table = tmp_path / "jobs.csv"
    table.write_text("job,Load Image (as Mask).image,1.width,1.height\n"
                     f"Local mask!,masks/flipped.png,{W},{H}\nserver mask,,{W},{H}\n", encoding="utf-8")
    out = tmp_path / "out"
    res = run_batch(str(workflow), "--server", "http://127.0.0.1:9", "--server", lacking.url, "--server", ready.url,
                    "--out", str(out), "--csv", str(table), "--progress", "log")
    assert res.returncode == 0, res.stderr
    assert "leaving out http://127.0.0.1:9 did not answer (GET /object_info: connection refused)" in res.stderr
    assert f"leaving out {lacking.url} cannot run this workflow: it has no model file '{checkpoint}' (node 40 " \
           "CheckpointLoaderSimple.ckpt_name)" in res.stderr
    jobs = manifest(out)["jobs"]
    assert sorted(jobs) == ["Local mask_", "server mask"]  # the labels, made safe for any file system
    assert {j["server"] for j in jobs.values()} == {ready.url}
    upload = jobs["Local mask_"]["uploads"]["13.image"]
    assert (ready.input_dir / upload["as"]).read_bytes() == (tmp_path / "masks" / "flipped.png").read_bytes()
    for label, mask in (("Local mask_", flipped), ("server mask", np.asarray(Image.open(io.BytesIO(_mask_png()))))):
        assert {(f["node"], f["type"]) for f in jobs[label]["files"]} == {("6", "output"), ("12", "output")}
        png = next(f for f in jobs[label]["files"] if f["node"] == "6")
        alpha = np.asarray(Image.open(out / png["path"]))[..., 3].astype(int)
        assert np.abs(alpha - mask[..., 3].astype(int)).max() <= 1, label
    assert _summary(res.stderr) == {"Local mask_": "done", "server mask": "done"}


def test_ui_workflow_converts_to_its_committed_api_twin(comfy_server):
    """The pack's own templates are checked the same way in tests/e2e/test_workflow_templates.py."""
    ui, info = json.loads(UI.read_text()), comfy_server.object_info()
    assert_converts_to_twin(ui_to_api(ui, info), json.loads((DATA / "core_nodes.api.json").read_text()), ui, info)


class _GoneServer:
    """A server that accepts the websocket and then stops answering (what a crashed or unplugged host looks like)."""

    url = "http://127.0.0.1:1"

    def __init__(self):
        self.submits = 0

    def connect(self):
        pass

    def close(self):
        pass

    def interrupt(self, prompt_id):
        pass

    def submit(self, prompt, prompt_id):
        from batch_runner.client import ServerUnavailable

        self.submits += 1
        raise ServerUnavailable(f"{self.url}: POST /prompt failed: connection refused")


def test_a_server_that_drops_out_hands_its_job_to_the_others(servers, tmp_path):
    from batch_runner.client import ComfyClient
    from batch_runner.jobs import plan_jobs
    from batch_runner.manifest import Manifest
    from batch_runner.progress import Progress
    from batch_runner.runner import BatchRunner

    _, server = servers
    base = ui_to_api(json.loads(UI.read_text()), server.object_info())
    jobs = plan_jobs(base, seeds=["5.value=201-203"])
    gone = _GoneServer()
    out = tmp_path / "out"
    runner = BatchRunner([gone, ComfyClient(server.url)], out, Manifest(out), Progress(3, enabled=False))
    summary = runner.run(jobs)
    assert gone.submits == 1
    assert summary.ok and sorted(summary.done) == sorted(j.job_id for j in jobs)
    assert {e["server"] for e in Manifest(out).jobs.values()} == {server.url}
