"""Safe output files: a filename prefix may not leave the output folder, and no existing file is ever replaced.

ComfyUI's folder_paths.get_save_image_path checks the prefix against the output folder with abspath only, so a
symlink inside the output folder can still lead outside, and the file is then opened for plain writing, which
replaces a file that appeared meanwhile. Here the real (symlink-resolved) folder is checked before anything is
created, and files are opened in exclusive-create mode, moving to the next counter when a name is taken.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import BinaryIO

from ..errors import node_error

# Enough for any real folder; only reached if something keeps creating files under our names.
MAX_NAME_ATTEMPTS = 10_000


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def check_prefix(prefix: str, output_dir: str, node: str, input_name: str = "filename_prefix") -> None:
    """Refuse a prefix that is empty, absolute, or whose folder part resolves (symlinks too) outside output_dir."""
    if not isinstance(prefix, str) or not prefix.strip():
        raise node_error(node, input_name, "a non-empty file name prefix such as 'LayerStack/result'", repr(prefix))
    if "\x00" in prefix:
        raise node_error(node, input_name, "a prefix without NUL characters", repr(prefix))
    normalized = os.path.normpath(prefix)
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


def write_new_file(
    folder: str, name_for: Callable[[int], str], counter: int, write: Callable[[BinaryIO], None]
) -> tuple[str, int]:
    """Create name_for(counter) in folder exclusively (never replacing a file) and fill it with write(file).

    When the name exists the counter moves on. A failed write removes the partial file it created.
    Returns (file name, counter used).
    """
    for attempt in range(MAX_NAME_ATTEMPTS):
        name = name_for(counter + attempt)
        if os.path.basename(name) != name or name in (os.curdir, os.pardir):
            raise ValueError(f"write_new_file: expected a plain file name, got {name!r}")
        path = os.path.join(folder, name)
        try:
            handle = open(path, "xb")
        except FileExistsError:
            continue
        try:
            with handle:
                write(handle)
        except BaseException:
            os.remove(path)
            raise
        return name, counter + attempt
    raise FileExistsError(f"no free file name in {folder} after {MAX_NAME_ATTEMPTS} tries from {name_for(counter)!r}")
