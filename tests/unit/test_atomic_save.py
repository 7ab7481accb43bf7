"""Outputs are written to a hidden temporary file and only then put under their final name: a process killed
mid-save leaves no partial or empty file under a final name (layer_stack/output_paths.write_new_file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from layerstack.layer_stack.output_paths import PARTIAL_SUFFIX, write_new_file

ROOT = Path(__file__).resolve().parents[2]

# A child process that saves through write_new_file with a writer that stalls half-way (as a big PSD does).
STALLING_SAVE = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("layerstack", sys.argv[1] + "/__init__.py",
                                                  submodule_search_locations=[sys.argv[1]])
    sys.modules["layerstack"] = importlib.util.module_from_spec(spec)  # the package without running __init__
    from layerstack.layer_stack.output_paths import write_new_file

    def stalling(out):
        out.write(b"first half")
        out.flush()
        print("writing", flush=True)
        time.sleep(60)

    write_new_file(sys.argv[2], lambda n: f"saved_{n:05}_.png", 1, stalling)
""")


def test_a_save_killed_midway_leaves_nothing_under_the_final_name(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", STALLING_SAVE, str(ROOT), str(tmp_path)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.startswith("saved_")], names  # before: saved_00001_.png holding 10 bytes
    assert all(n.startswith(".") and n.endswith(PARTIAL_SUFFIX) for n in names), names


def test_the_file_appears_complete_under_its_name_and_nothing_else_is_left(tmp_path):
    seen_during_write = []

    def writer(out):
        out.write(b"content")
        seen_during_write.extend(p.name for p in tmp_path.iterdir())

    name, counter = write_new_file(str(tmp_path), lambda n: f"f_{n:05}_.bin", 1, writer)
    assert (name, counter) == ("f_00001_.bin", 1)
    assert not [n for n in seen_during_write if n.startswith("f_")]  # the final name appears only when complete
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_bytes() == b"content"


def test_a_name_taken_while_writing_is_not_replaced(tmp_path):
    def writer(out):
        out.write(b"ours")
        (tmp_path / "f_00001_.bin").write_bytes(b"theirs")  # another process took the name meanwhile

    name, _ = write_new_file(str(tmp_path), lambda n: f"f_{n:05}_.bin", 1, writer)
    assert name == "f_00002_.bin" and (tmp_path / name).read_bytes() == b"ours"
    assert (tmp_path / "f_00001_.bin").read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_00001_.bin", "f_00002_.bin"]


@pytest.mark.skipif(os.name != "posix", reason="umask is POSIX")
def test_the_saved_file_gets_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        name, _ = write_new_file(str(tmp_path), lambda n: f"p_{n}.bin", 1, lambda out: out.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_an_over_long_prefix_is_a_node_message_not_an_oserror(tmp_path):
    from layerstack.errors import LayerStackError
    from layerstack.layer_stack.output_paths import check_prefix

    with pytest.raises(LayerStackError, match=r"^SaveNode: input 'filename_prefix' expected file and folder names of "
                                              r"at most 240 bytes .*got a part of 300 bytes"):
        check_prefix("x" * 300, str(tmp_path), "SaveNode")  # before: accepted, then OSError 'File name too long'
    with pytest.raises(LayerStackError, match=r"at most 255 bytes .*got a part of 256 bytes"):
        check_prefix("d" * 256 + "/name", str(tmp_path), "SaveNode")
    check_prefix("d" * 255 + "/" + "n" * 240, str(tmp_path), "SaveNode")  # the longest that fits
