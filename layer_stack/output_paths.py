"""Safe output files: a filename prefix may not leave the output folder, and no existing file is ever replaced.

ComfyUI's folder_paths.get_save_image_path checks the prefix against the output folder with abspath only, so a
symlink inside the output folder can still lead outside, and the file is then opened for plain writing, which
replaces a file that appeared meanwhile. Here the real (symlink-resolved) folder is checked before anything is
created; a file is written to a hidden temporary file in the same folder and only then linked under its final name
(which fails instead of replacing; the counter moves on), so a server stopped mid-save leaves no partial file under
a final name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from typing import BinaryIO

from ..errors import node_error

# Enough for any real folder; only reached if something keeps creating files under our names.
MAX_NAME_ATTEMPTS = 10_000
# Longest file or folder name (bytes) on the usual file systems (ext4, APFS, NTFS count 255), less what the save
# nodes append to the prefix: "_00001_.ext" and room for a batch number.
MAX_NAME_BYTES = 255
APPENDED_BYTES = len("_00001_.psd") + 4


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def check_prefix(prefix: str, output_dir: str, node: str, input_name: str = "filename_prefix") -> None:
    """Refuse a prefix that is empty, absolute, or whose folder part resolves (symlinks too) outside output_dir."""
    if not isinstance(prefix, str) or not prefix.strip():
        raise node_error(node, input_name, "a non-empty file name prefix such as 'LayerStack/result'", repr(prefix))
    if "\x00" in prefix:
        raise node_error(node, input_name, "a prefix without NUL characters", repr(prefix))
    normalized = os.path.normpath(prefix)
    parts = normalized.split(os.sep)
    for i, part in enumerate(parts):
        limit = MAX_NAME_BYTES - (APPENDED_BYTES if i == len(parts) - 1 else 0)
        if len(part.encode("utf-8")) > limit:
            raise node_error(node, input_name, f"file and folder names of at most {limit} bytes (file systems allow "
                             f"{MAX_NAME_BYTES}; the counter and extension are appended to the last part)",
                             f"a part of {len(part.encode('utf-8'))} bytes: {part[:40]!r}...")
    root = os.path.realpath(output_dir)
    folder = os.path.realpath(os.path.join(root, os.path.dirname(normalized)))
    if os.path.isabs(prefix) or normalized.split(os.sep)[0] == os.pardir or not _inside(folder, root):
        raise node_error(
            node, input_name, f"a prefix that stays inside the output folder {root}",
            f"{prefix!r}, which leads to {folder}",
        )


def check_folder(folder: str, output_dir: str, node: str, input_name: str = "filename_prefix") -> None:
    root = os.path.realpath(output_dir)
    real = os.path.realpath(folder)
    if not _inside(real, root):
        raise node_error(node, input_name, f"a prefix that stays inside the output folder {root}", f"a folder {real}")


PARTIAL_SUFFIX = ".partial"  # a file being written; hidden (leading dot), never under a name ComfyUI counts


def write_new_file(
    folder: str, name_for: Callable[[int], str], counter: int, write: Callable[[BinaryIO], None]
) -> tuple[str, int]:
    """Write a new file name_for(counter) in folder with write(file), atomically and never replacing a file.

    The content goes to a hidden temporary file in the same folder first and is then linked under its final name,
    so a stopped server or a failed write never leaves a partial or empty file under a final name. When the name
    exists the counter moves on. Returns (file name, counter used).
    """
    _check_plain_name(name_for(counter))
    temporary = os.path.join(folder, f".layerstack-{secrets.token_hex(8)}{PARTIAL_SUFFIX}")
    # os.open with 0o666 lets the umask decide the final file's permissions, as for any other new file
    handle = os.fdopen(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o666),
                       "wb")
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        for attempt in range(MAX_NAME_ATTEMPTS):
            name = _check_plain_name(name_for(counter + attempt))
            if _place_new(temporary, os.path.join(folder, name)):
                return name, counter + attempt
        raise FileExistsError(f"no free file name in {folder} after {MAX_NAME_ATTEMPTS} tries from "
                              f"{name_for(counter)!r}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _check_plain_name(name: str) -> str:
    if os.path.basename(name) != name or name in ("", os.curdir, os.pardir):
        raise ValueError(f"write_new_file: expected a plain file name, got {name!r}")
    return name


def _place_new(temporary: str, final: str) -> bool:
    """Give the finished temporary file the name `final` unless that name exists; False when it does."""
    try:
        os.link(temporary, final)  # atomic, and fails instead of replacing
        return True
    except FileExistsError:
        return False
    except OSError:
        pass  # a file system without hard links: reserve the name, then move the content onto the reservation
    try:
        os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    os.replace(temporary, final)
    return True
