"""Batch runner without a server: targets, value parsing, job expansion, manifest, workflow files, CLI errors."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from batch_runner.errors import BatchError
from batch_runner.jobs import assign_ids, coerce, parse_seed_spec, plan_jobs, resolve_target, safe_name
from batch_runner.manifest import Manifest
from batch_runner.runner import _link_new, local_name
from batch_runner.workflow import load_workflow

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "batch"
INFO = json.loads((DATA / "object_info_core.json").read_text())
API = json.loads((DATA / "core_nodes.api.json").read_text())


def test_targets_by_id_title_class_and_dotted_title():
    prompt = json.loads(json.dumps(API))
    prompt["4"]["_meta"]["title"] = "Noise v1.5"
    assert resolve_target(prompt, "4.strength", INFO, "t").key == "4.strength"
    assert resolve_target(prompt, "Noise v1.5.strength", INFO, "t").key == "4.strength"  # title with a dot
    assert resolve_target(prompt, "Latent out.filename_prefix", INFO, "t").key == "12.filename_prefix"
    assert resolve_target(prompt, "EmptyLatentImage.width", INFO, "t").key == "11.width"  # unique class type


def test_target_errors_say_what_was_expected():
    with pytest.raises(BatchError, match="matches none of .*12 \\(Latent out\\)"):
        resolve_target(API, "Nope.width", INFO, "--set")
    with pytest.raises(BatchError, match="has no input 'widht'"):
        resolve_target(API, "1.widht", INFO, "--set")
    with pytest.raises(BatchError, match="linked from node 5 output 0; set an input of node 5"):
        resolve_target(API, "Noise.seed", INFO, "--set")
    with pytest.raises(BatchError, match="expected NODE.INPUT"):
        resolve_target(API, "width", INFO, "--set")
    twin_titles = {"1": {**API["1"], "_meta": {"title": "Same"}}, "11": {**API["11"], "_meta": {"title": "Same"}}}
    with pytest.raises(BatchError, match="ambiguous"):
        resolve_target(twin_titles, "Same.width", INFO, "--set")


def test_values_are_parsed_as_the_input_type():
    width = resolve_target(API, "1.width", INFO, "t")
    assert coerce(width, "128", "t") == 128
    with pytest.raises(BatchError, match="expected an integer, got '12.5'"):
        coerce(width, "12.5", "t")
    strength = resolve_target(API, "4.strength", INFO, "t")
    assert coerce(strength, "0.75", "t") == 0.75
    channel = resolve_target(API, "13.channel", INFO, "t")
    assert coerce(channel, "red", "t") == "red"
    with pytest.raises(BatchError, match="expected one of 'alpha', 'red', 'green', 'blue'; got 'purple'"):
        coerce(channel, "purple", "t")
    # Without /object_info the current value's type decides.
    assert coerce(resolve_target(API, "1.height", None, "t"), "7", "t") == 7


def test_seed_specs():
    assert list(parse_seed_spec("0-3,10", "s")) == [0, 1, 2, 3, 10]
    assert list(parse_seed_spec("5", "s")) == [5]
    assert [parse_seed_spec("0-3,10,20-21", "s")[k] for k in range(7)] == [0, 1, 2, 3, 10, 20, 21]
    for bad in ("3-1", "a", "1,,2", "-4"):
        with pytest.raises(BatchError):
            parse_seed_spec(bad, "s")


def test_jobs_are_rows_times_seeds(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# comment\nfirst\n\nsecond\n", encoding="utf-8")
    jobs = list(plan_jobs(API, sets=["1.width=32"], seeds=["5.value=1-3"], prompts=prompts,
                          prompt_input="Latent out.filename_prefix", object_info=INFO))
    assert len(jobs) == 6
    assert [j.params["12.filename_prefix"] for j in jobs] == ["first"] * 3 + ["second"] * 3
    assert [j.params["5.value"] for j in jobs] == [1, 2, 3, 1, 2, 3]
    assert all(j.prompt["1"]["inputs"]["width"] == 32 for j in jobs)
    assert len({j.fingerprint for j in jobs}) == 6
    assert API["1"]["inputs"]["width"] == 96  # the base prompt is not modified
    again = plan_jobs(API, sets=["1.width=32"], seeds=["5.value=1-3"], prompts=prompts,
                      prompt_input="Latent out.filename_prefix", object_info=INFO)
    assert [j.job_id for j in again] == [j.job_id for j in jobs]  # stable ids: resumable
    assert [j.job_id for j in jobs] == ["first_value-1", "first_value-2", "first_value-3",
                                        "second_value-1", "second_value-2", "second_value-3"]


def test_csv_rows_labels_and_empty_cells(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("job,1.width,Latent out.filename_prefix\nsmall,16,\nbig,,wide\n", encoding="utf-8")
    jobs = list(plan_jobs(API, csv_path=table, object_info=INFO))
    assert [(j.label, j.params) for j in jobs] == [("small", {"1.width": 16}),
                                                    ("big", {"12.filename_prefix": "wide"})]
    table.write_text("job,1.width\nbad,wide\n", encoding="utf-8")
    with pytest.raises(BatchError, match=r"jobs.csv:2: 1.width: expected an integer, got 'wide'"):
        plan_jobs(API, csv_path=table, object_info=INFO)


def test_prompt_file_errors(tmp_path):
    empty = tmp_path / "e.txt"
    empty.write_text("\n# only comments\n")
    with pytest.raises(BatchError, match="one prompt per line, the file has none"):
        plan_jobs(API, prompts=empty, prompt_input="12.filename_prefix")
    with pytest.raises(BatchError, match="--prompt-input"):
        plan_jobs(API, prompts=empty)


def test_manifest_counts_a_job_done_only_while_its_files_exist(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "0001-aa").mkdir()
    (tmp_path / "0001-aa" / "x.png").write_bytes(b"png")
    m.record("0001-aa", {"fingerprint": "f1", "status": "done", "files": [{"path": "0001-aa/x.png"}]})
    m.record("0002-bb", {"fingerprint": "f2", "status": "failed", "files": []})
    again = Manifest(tmp_path)
    assert again.finished("0001-aa", "f1")
    assert not again.finished("0001-aa", "f3")  # the same name, another prompt
    assert not again.finished("0002-bb", "f2")
    assert again.ids_by_fingerprint() == {"f1": ["0001-aa"], "f2": ["0002-bb"]}
    (tmp_path / "0001-aa" / "x.png").unlink()
    assert not Manifest(tmp_path).finished("0001-aa", "f1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".manifest-")]


def test_manifest_refuses_a_foreign_file(tmp_path):
    (tmp_path / "manifest.json").write_text('{"something": "else"}')
    with pytest.raises(BatchError, match="another file; choose another --out"):
        Manifest(tmp_path)


def test_downloads_stay_inside_the_job_folder_and_never_overwrite(tmp_path):
    assert str(local_name({"filename": "../../etc/passwd", "subfolder": "../.."})) == "passwd"
    assert str(local_name({"filename": "a.png", "subfolder": "x/../y"})) == "x/y/a.png"
    target = tmp_path / "a.png"
    target.write_bytes(b"user file")
    tmp = tmp_path / ".download-1"
    tmp.write_bytes(b"new")
    final = _link_new(tmp, target)
    assert final.name == "a-1.png" and final.read_bytes() == b"new"
    assert target.read_bytes() == b"user file"


def test_workflow_files_png_metadata_and_request_body(tmp_path):
    info = PngInfo()
    info.add_text("prompt", json.dumps(API))
    info.add_text("workflow", (DATA / "core_nodes.ui.json").read_text())
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4)).save(buf, "PNG", pnginfo=info)
    png = tmp_path / "saved.png"
    png.write_bytes(buf.getvalue())
    assert load_workflow(png) == ("api", API)
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"prompt": API, "client_id": "x"}))
    assert load_workflow(body) == ("api", API)
    assert load_workflow(DATA / "core_nodes.ui.json")[0] == "ui"
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    with pytest.raises(BatchError, match="expected API format"):
        load_workflow(junk)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(ROOT / "scripts" / "layerstack-batch"), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_convert_only_with_a_saved_object_info():
    res = _cli(str(DATA / "core_nodes.ui.json"), "--object-info", str(DATA / "object_info_core.json"),
               "--convert-only")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == API


def test_cli_bad_input_exits_2_with_the_reason(tmp_path):
    res = _cli(str(DATA / "core_nodes.api.json"), "--object-info", str(DATA / "object_info_core.json"),
               "--set", "EmptyImage.width=wide", "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert "EmptyImage.width: expected an integer, got 'wide'" in res.stderr
    assert not (tmp_path / "o").exists()


def test_cli_no_server_exits_3_with_one_line(tmp_path):
    for workflow in ("core_nodes.ui.json", "core_nodes.api.json"):  # needs /object_info to convert / does not
        res = _cli(str(DATA / workflow), "--server", "http://127.0.0.1:9", "--out", str(tmp_path / "o"))
        assert res.returncode == 3
        assert res.stderr.splitlines() == ["error: http://127.0.0.1:9 did not answer (GET /object_info: connection "
                                           "refused); is ComfyUI running there?"]


def test_progress_bar_follows_node_and_step_events():
    from batch_runner.progress import Progress

    stream = io.StringIO()
    prompt = {"3": {"class_type": "KSampler", "_meta": {"title": "Sampler"}}, "4": {"class_type": "SaveImage"}}
    p = Progress(2, stream=stream, bar=True)
    p.started("a", "0001-x", nodes_total=4)
    p.event("a", "execution_cached", {"nodes": ["1", "2"]}, prompt)
    p.event("a", "executing", {"node": "3"}, prompt)
    p._last_draw = 0  # let the throttled step update draw
    p.event("a", "progress", {"value": 5, "max": 20}, prompt)
    assert p.running["a"].fraction() == pytest.approx((2 + 0.25) / 4)
    p.event("a", "executing", {"node": "4"}, prompt)
    p.finished("a", "0001-x", True, "ok 0001-x")
    text = stream.getvalue()
    assert "a: 0001-x Sampler 5/20" in text and "a: 0001-x SaveImage" in text
    assert "ok 0001-x" in text and "] 1/2" in text


def test_progress_off_prints_only_notes():
    from batch_runner.progress import Progress

    stream = io.StringIO()
    p = Progress(1, stream=stream, enabled=False)
    p.started("a", "0001-x", nodes_total=2)
    p.event("a", "executing", {"node": "1"}, {})
    p.finished("a", "0001-x", True, "ok 0001-x")
    assert stream.getvalue() == ""
    p.note("server b dropped out")
    assert stream.getvalue() == "server b dropped out\n"


def _limited_cli(*args: str, memory_mb: int = 1024) -> subprocess.Popen:
    """The CLI with its address space capped, so a batch that materialises every job fails fast instead of eating
    the machine."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))

    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools")}
    return subprocess.Popen([sys.executable, "-m", "batch_runner", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=cap)


def test_a_huge_seed_range_is_refused_at_once_with_the_count():
    proc = _limited_cli(str(DATA / "core_nodes.api.json"), "--object-info", str(DATA / "object_info_core.json"),
                        "--seeds", "1.color=0-99999999", "--dry-run")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "100000000 jobs" in err and "--max-jobs 10000" in err
    assert out == ""


def test_a_raised_limit_streams_the_jobs():
    proc = _limited_cli(str(DATA / "core_nodes.api.json"), "--object-info", str(DATA / "object_info_core.json"),
                        "--seeds", "5.value=0-99999999", "--max-jobs", "100000000", "--dry-run")
    try:
        first = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert [line.split()[0] for line in first] == ["value-0", "value-1", "value-2"]


def test_the_plan_is_lazy_and_indexable():
    batch = plan_jobs(API, seeds=["5.value=0-99999999", "4.strength=0,1"], object_info=None, max_jobs=None)
    assert len(batch) == 200_000_000
    last = batch[len(batch) - 1]
    assert last.params == {"5.value": 99_999_999, "4.strength": 1} and last.index == 200_000_000
    assert [j.params["4.strength"] for j in itertools.islice(batch, 3)] == [0, 1, 0]


def test_too_many_jobs_are_refused_before_any_target_is_resolved(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("job,Nope.width\n" + "".join(f"r{i},1\n" for i in range(30)), encoding="utf-8")
    with pytest.raises(BatchError, match=r"30 rows × 4 seeds \(5.value\) = 120 jobs, more than --max-jobs 100"):
        plan_jobs(API, csv_path=table, seeds=["5.value=1-4"], object_info=INFO, max_jobs=100)


def test_duplicate_csv_columns_are_refused(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("job,1.color,1.color\na,1,2\n", encoding="utf-8")
    with pytest.raises(BatchError, match=r"column '1.color' appears twice"):
        plan_jobs(API, csv_path=table, object_info=INFO)
    table.write_text("job,1.color,EmptyImage.color\na,1,2\n", encoding="utf-8")
    with pytest.raises(BatchError, match=r"columns '1.color' and 'EmptyImage.color' both set node 1 input 'color'"):
        plan_jobs(API, csv_path=table, object_info=INFO)
    table.write_text("job,1.color\na,1,2\n", encoding="utf-8")
    with pytest.raises(BatchError, match=r"jobs.csv:2: expected 2 cells \(the header's columns\), got 3"):
        plan_jobs(API, csv_path=table, object_info=INFO)


def test_seeds_outside_the_inputs_range_are_refused():
    with pytest.raises(BatchError, match="seed 99999999 is above the input's maximum 16777215"):
        plan_jobs(API, seeds=["1.color=0-99999999"], object_info=INFO, max_jobs=None)


def test_job_ids_are_labels_made_safe_and_unique(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text('job,1.width\nred/blue: v1?,16\nRED-BLUE,17\nred_blue_ v1_,18\nCON,19\n,20\n', encoding="utf-8")
    jobs = list(assign_ids(plan_jobs(API, csv_path=table, seeds=["5.value=1"], object_info=INFO)))
    assert [j.job_id for j in jobs] == ["red_blue_ v1__value-1", "RED-BLUE_value-1", "red_blue_ v1__value-1-2",
                                        "CON_value-1", "row5_value-1"]
    assert [safe_name(n) for n in ("CON", "nul.txt", "a\\b/c", " .x. ", "..")] == ["_CON", "_nul.txt", "a_b_c", "x", "_"]
    # A rerun gives each prompt its earlier id; a new prompt does not take an id the manifest holds for another one.
    again = list(assign_ids(plan_jobs(API, csv_path=table, seeds=["5.value=1"], object_info=INFO),
                            {jobs[2].fingerprint: ["old-name"]}, taken=["red-blue_value-1", "old-name"]))
    assert [j.job_id for j in again][:3] == ["red_blue_ v1__value-1", "RED-BLUE_value-1-2", "old-name"]


def test_a_local_file_for_an_upload_input_becomes_an_upload(tmp_path):
    (tmp_path / "masks").mkdir()
    mask = tmp_path / "masks" / "my mask.PNG"
    mask.write_bytes(b"not really a png")
    table = tmp_path / "jobs.csv"
    table.write_text("job,13.image\nlocal,masks/my mask.PNG\nserver,example.png\n", encoding="utf-8")
    local, server = plan_jobs(API, csv_path=table, object_info=INFO)
    upload = local.uploads[("13", "image")]
    assert upload.path == mask and upload.name == "my mask-" + hashlib.sha256(b"not really a png").hexdigest()[:12] + ".png"
    assert local.prompt["13"]["inputs"]["image"] == upload.name and server.uploads == {}
    mask.write_bytes(b"changed")  # a changed file is a new job
    assert plan_jobs(API, csv_path=table, object_info=INFO)[0].fingerprint != local.fingerprint
    table.write_text("job,13.image\nmissing,masks/nope.png\n", encoding="utf-8")
    with pytest.raises(BatchError, match=r"expected one of 'example.png' \(nor a local file to upload\); got"):
        plan_jobs(API, csv_path=table, object_info=INFO)
    with pytest.raises(BatchError, match="expected one of 'alpha'"):  # no upload input: a file path is no choice
        plan_jobs(API, sets=[f"13.channel={mask}"], object_info=INFO)


class _FakeServer:
    url = "http://fake:1"

    def __init__(self):
        self.uploads, self.downloads = [], []

    def upload(self, path, name):
        self.uploads.append(name)
        return f"sub/{name}"

    def download(self, item, dest):
        self.downloads.append(item["filename"])
        dest.write(b"x")
        return 1


def _runner(tmp_path, clients, **kw):
    from batch_runner.progress import Progress
    from batch_runner.runner import BatchRunner

    return BatchRunner(clients, tmp_path, Manifest(tmp_path), Progress(1, enabled=False), **kw)


def test_each_local_file_is_uploaded_once_per_server(tmp_path):
    mask = tmp_path / "m.png"
    mask.write_bytes(b"m")
    a, b = _FakeServer(), _FakeServer()
    b.url = "http://fake:2"
    runner = _runner(tmp_path, [a, b])
    jobs = list(plan_jobs(API, sets=[f"13.image={mask}"], seeds=["5.value=1-2"], object_info=INFO))
    sent = [runner._with_uploads(a, jobs[0]), runner._with_uploads(a, jobs[1]), runner._with_uploads(b, jobs[1])]
    name = jobs[0].uploads[("13", "image")].name
    assert a.uploads == [name] and b.uploads == [name]
    assert {p["13"]["inputs"]["image"] for p in sent} == {f"sub/{name}"}  # the name the server answered
    assert jobs[0].prompt["13"]["inputs"]["image"] == name  # the planned job is left as it was


def test_only_final_outputs_are_downloaded_unless_temp_files_are_asked_for(tmp_path):
    outputs = {"6": {"images": [{"filename": "final.png", "subfolder": "", "type": "output"}]},
               "9": {"images": [{"filename": "preview.png", "subfolder": "", "type": "temp"}], "text": ["hi"]}}
    server = _FakeServer()
    files, values = _runner(tmp_path / "a", [server])._download(server, "job", outputs)
    assert [f["filename"] for f in files] == ["final.png"] and values == {"9": {"text": ["hi"]}}
    files, _ = _runner(tmp_path / "b", [server], include_temp=True)._download(server, "job", outputs)
    assert sorted(f["filename"] for f in files) == ["final.png", "preview.png"]


def test_preflight_names_missing_node_types_and_model_files():
    api = json.loads(json.dumps(API))
    api["30"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/base.safetensors"}}
    info = {**INFO, "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["sd15.safetensors"]]}}}}
    batch = plan_jobs(api, object_info=info)
    assert batch.server_problems(info) == ["it has no model file 'sdxl/base.safetensors' (node 30 "
                                           "CheckpointLoaderSimple.ckpt_name)"]
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"] = [["sdxl/base.safetensors"]]
    assert batch.server_problems(info) == []
    lacking = {k: v for k, v in info.items() if k not in ("ImageAddNoise", "JoinImageWithAlpha")}
    assert batch.server_problems(lacking) == ["it has no node type ImageAddNoise, JoinImageWithAlpha (a custom node "
                                              "pack not installed there?)"]
    # a model file named by an override is checked too
    batch = plan_jobs(api, sets=["30.ckpt_name=sdxl/base.safetensors"], object_info=info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"] = [["other.safetensors"]]
    assert "no model file 'sdxl/base.safetensors'" in batch.server_problems(info)[0]


def test_the_summary_lists_every_job_in_order(capsys, tmp_path):
    from batch_runner.cli import _print_summary
    from batch_runner.runner import Outcome

    _print_summary([Outcome(3, "c", "interrupted", "interrupted on the server at node 4"),
                    Outcome(1, "a", "done"), Outcome(4, "d", "not run"),
                    Outcome(2, "b", "failed", "node 1 (EmptyImage): Value 99999 bigger than max of 16384"),
                    Outcome(0, "z", "skipped", "done in an earlier run")], 2, tmp_path / "manifest.json")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[:2] for line in lines[1:6]] == [["skipped", "z"], ["done", "a"], ["failed", "b:"],
                                                         ["interrupted", "c:"], ["not", "run"]]
    assert "bigger than max of 16384" in lines[3] and "at node 4" in lines[4]
    assert lines[-1].startswith("7 job(s): 1 done, 1 failed, 1 interrupted, 1 already done, 1 not run, 2 left for a "
                                "later run; manifest")


def test_entry_points_without_the_wrapper_script(tmp_path):
    args = [str(DATA / "core_nodes.ui.json"), "--object-info", str(DATA / "object_info_core.json"), "--convert-only"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # from the pack's folder (a venv Python on Windows or elsewhere)
    res = subprocess.run([sys.executable, "-m", "tools.batch_runner", *args], cwd=ROOT, capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == API
    # the folder itself, from anywhere, in isolated mode (no current folder, no PYTHONPATH: an embedded Python)
    res = subprocess.run([sys.executable, "-I", str(ROOT / "tools" / "batch_runner"), *args], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == API


def test_json_jobs_like_csv_rows(tmp_path):
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps([{"job": "wide one", "1.width": 128, "4.strength": 0.5},
                                     {"1.width": "64", "12.filename_prefix": "x", "4.strength": None}]))
    jobs = list(assign_ids(plan_jobs(API, json_path=jobs_file, object_info=INFO)))
    assert [(j.job_id, j.label, j.params) for j in jobs] == [
        ("wide one", "wide one", {"1.width": 128, "4.strength": 0.5}),
        ("job2", None, {"1.width": 64, "12.filename_prefix": "x"})]
    jobs_file.write_text('[{"job": "a", "1.width": 1, "1.width": 2}]')
    with pytest.raises(BatchError, match="key '1.width' appears twice in one job"):
        plan_jobs(API, json_path=jobs_file, object_info=INFO)
    jobs_file.write_text('[{"1.width": 1, "EmptyImage.width": 2}]')
    with pytest.raises(BatchError, match=r"jobs.json: columns '1.width' and 'EmptyImage.width' both set node 1"):
        plan_jobs(API, json_path=jobs_file, object_info=INFO)
    jobs_file.write_text('[{"1.width": [1]}]')
    with pytest.raises(BatchError, match=r"job 1, 1.width: expected a number, true/false or text"):
        plan_jobs(API, json_path=jobs_file, object_info=INFO)
    jobs_file.write_text('{"1.width": 1}')
    with pytest.raises(BatchError, match="expected a non-empty list of objects"):
        plan_jobs(API, json_path=jobs_file, object_info=INFO)


class _FullDiskServer(_FakeServer):
    """Runs every job at once; the first download hits a full disk."""

    def connect(self):
        pass

    def close(self):
        pass

    def submit(self, prompt, prompt_id):
        self.last = prompt

    def wait(self, prompt_id, on_event, timeout, stopped):
        return {"outputs": {"6": {"images": [{"filename": f"{self.last['5']['inputs']['value']}.png"}]}}}

    def download(self, item, dest):
        if item["filename"] == "1.png":
            raise OSError(28, "No space left on device", str(dest))
        return super().download(item, dest)


def test_a_job_that_cannot_save_fails_by_name_and_the_batch_goes_on(tmp_path):
    from batch_runner.progress import Progress
    from batch_runner.runner import BatchRunner

    stream = io.StringIO()
    runner = BatchRunner([_FullDiskServer()], tmp_path, Manifest(tmp_path), Progress(2, stream=stream, bar=False))
    summary = runner.run(assign_ids(plan_jobs(API, seeds=["5.value=1-2"], object_info=INFO)))
    assert [(o.job_id, o.status) for o in summary.outcomes] == [("value-1", "failed"), ("value-2", "done")]
    assert summary.outcomes[0].message == "OSError: no space left on device"
    assert "FAILED value-1 on http://fake:1: OSError: no space left on device" in stream.getvalue()
    assert str(tmp_path) not in stream.getvalue()
    assert Manifest(tmp_path).jobs["value-1"]["status"] == "failed"


def test_labels_any_console_cannot_show_do_not_crash_the_runner(tmp_path):
    table = tmp_path / "jobs.csv"
    table.write_text("job,1.width\n猫 × 2,16\n", encoding="utf-8")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONIOENCODING": "cp1252"}  # a Windows log file
    res = subprocess.run([str(ROOT / "scripts" / "layerstack-batch"), str(DATA / "core_nodes.api.json"), "--object-info",
                          str(DATA / "object_info_core.json"), "--csv", str(table), "--dry-run"],
                         capture_output=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode("cp1252").startswith("\\u732b _ 2  todo")


def test_a_prompt_taken_off_the_queue_on_stop_is_given_up(monkeypatch):
    from batch_runner.client import ComfyClient, JobFailed

    client = ComfyClient("http://127.0.0.1:9")
    monkeypatch.setattr(client, "events", lambda poll: iter(lambda: None, 1))  # quiet forever: no event will come
    monkeypatch.setattr(client, "history", lambda prompt_id: None)  # and the server never ran it
    polls = []

    def stopped():
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(JobFailed, match="stopped before it finished"):
        client.wait("p1", on_event=lambda e: None, timeout=None, stopped=stopped)
    assert len(polls) == 4


def test_the_runner_imports_neither_torch_nor_the_pack():
    code = ("import sys, batch_runner.cli, batch_runner.runner; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'comfy', 'layerstack', 'numpy')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "tools")})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
