"""Finding, downloading and parsing the official layer files.

This is where a file on disk becomes a state dict: the safetensors parse, the key grammar of each kind, and every
"this is not the file you think it is" error. Architecture-level strictness (exact shapes) comes on top, when the
state dict is loaded into its module or turned into patches.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import LayerStackError
from .registry import BUNDLE_IGNORED_PREFIX, FOLDER_NAME, Kind, LayerFile, get, identify, problems

DOWNLOAD_ENV = "LAYERSTACK_ALLOW_DOWNLOAD"
DOWNLOAD_SETTING = "LayerStack.AllowDownload"  # registered in the UI by web/layerstack.js
log = logging.getLogger("layerstack")


def layer_model_folders() -> list[str]:
    import folder_paths

    return folder_paths.get_folder_paths(FOLDER_NAME)


def download_setting_on() -> bool:
    """The UI switch (Settings → LayerStack), which the frontend stores in the default user's comfy.settings.json."""
    try:
        import folder_paths
    except ImportError:  # used outside ComfyUI (tools, unit tests): there is no UI and so no setting
        return False
    path = os.path.join(folder_paths.get_user_directory(), "default", "comfy.settings.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get(DOWNLOAD_SETTING) is True
    except (OSError, ValueError, AttributeError):  # no settings saved yet, or not a JSON object
        return False


def download_allowed(explicit: bool = False) -> bool:
    """Downloading is opt-in: a node's allow_download, the UI setting, or LAYERSTACK_ALLOW_DOWNLOAD=1 for servers."""
    return (explicit or os.environ.get(DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
            or download_setting_on())


def search_folders(entry: LayerFile) -> list[str]:
    """layer_model folders first, then the entry's other ComfyUI folders (e.g. loras for the Flux LoRA)."""
    folders = list(layer_model_folders())
    if not entry.other_folders:
        return folders
    import folder_paths

    for name in entry.other_folders:
        folders += [f for f in folder_paths.get_folder_paths(name) if f not in folders]
    return folders


def find_layer_file(entry: LayerFile | str) -> str:
    """Path of an official file in any search folder; a clear error naming folders and URL if missing.

    In each folder a safetensors copy written by convert_to_safetensors wins over the pickled original.
    """
    entry = get(entry) if isinstance(entry, str) else entry
    folders = search_folders(entry)
    names = [n for n in (entry.converted_filename, entry.filename) if n]
    for folder in folders:
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    searched = "\n".join(f"  - {f}" for f in folders) or "  (no layer_model folder is registered)"
    raise LayerStackError(
        f"Layer file {entry.filename} ({entry.family.value} {entry.role}) was not found.\n"
        f"Searched:\n{searched}\n"
        f"Download it from {entry.url} into one of these folders, or let LayerStack download missing files: turn on "
        f"Settings → LayerStack → 'Download missing LayerDiffuse layer files automatically' (or set "
        f"{DOWNLOAD_ENV}=1 in the server's environment)."
    )


@dataclass(frozen=True)
class LoadedLayerFile:
    """An official file found once and read: where it is and its key-checked tensors travel together."""

    entry: LayerFile
    path: str
    state_dict: dict[str, torch.Tensor]


def load_layer_file(entry: LayerFile | str, *, download: bool = False) -> LoadedLayerFile:
    """Find, parse and validate an official file. Downloads it first only when allowed and missing."""
    entry = get(entry) if isinstance(entry, str) else entry
    try:
        path = find_layer_file(entry)
    except LayerStackError:
        if not download_allowed(download):
            raise
        path = download_layer_file(entry)
    return LoadedLayerFile(entry, path, read_layer_file(entry, path))


def read_layer_file(entry: LayerFile, path: str) -> dict[str, torch.Tensor]:
    """The key-checked state dict of a file; of a TRANSPARENT_VAE bundle only the parts the pack uses."""
    import safetensors.torch

    if not (entry.suffix == ".pth" and _is_pickle(path)):
        try:
            state_dict = safetensors.torch.load_file(path, device="cpu")
        except Exception as e:  # safetensors raises several types for truncated or foreign files
            raise LayerStackError(
                f"{path}: cannot be read as a safetensors file ({type(e).__name__}: {e}). It may be truncated or "
                f"not a LayerDiffuse file; delete it and download {entry.filename} again from {entry.url}."
            ) from e
    else:
        state_dict = read_tensor_pickle(path, entry)
    validate_layer_state_dict(entry, state_dict, source=path)
    check_finite_weights(entry, state_dict, source=path)
    if entry.kind is Kind.TRANSPARENT_VAE:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(BUNDLE_IGNORED_PREFIX)}
    return state_dict


def _is_pickle(path: str) -> bool:
    """A torch.save zip archive or a bare pickle (protocol 2+), by the first bytes; safetensors starts otherwise."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def read_tensor_pickle(path: str, entry: LayerFile) -> dict[str, torch.Tensor]:
    """A torch.save file of plain tensors, read with torch's restricted unpickler (weights_only=True).

    That unpickler builds only tensors and containers and refuses any other global, so a file carrying code is
    rejected before anything in it runs. There is no fallback to a full unpickle (docs/FORMATS.md#flux-transparent-vae-file).
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for foreign globals; RuntimeError/EOFError for damaged files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LayerStackError(
            f"{path}: refused. LayerStack reads {entry.filename} only as plain tensors (torch.load with "
            f"weights_only=True) and never runs code from a pickle; this file is not plain tensors or is damaged "
            f"({type(e).__name__}: {reason}). Download the official file again from {entry.url}."
        ) from None
    if not isinstance(loaded, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise LayerStackError(
            f"{path}: expected a state dict (names -> tensors) as in the official {entry.filename}, "
            f"got {type(loaded).__name__}."
        )
    return dict(loaded)


def convert_to_safetensors(entry: LayerFile, path: str, state_dict: Mapping[str, torch.Tensor] | None = None) -> str:
    """Write the used parts of a pickled file as a safetensors file beside it (entry.converted_filename).

    Later loads find that file first and need no pickle at all. Never overwrites: an existing file of that name is
    left as it is and returned. The copy is validated before it appears under its final name. ``state_dict``: the
    file's content as read_layer_file returned it, to spare a second read.
    """
    if not entry.converted_filename or not _is_pickle(path):
        return path
    import safetensors.torch

    folder = os.path.dirname(path)
    target = os.path.join(folder, entry.converted_filename)
    if os.path.exists(target):
        log.info("LayerStack: %s already exists; not converting %s again", target, path)
        return target
    if state_dict is None:
        state_dict = read_layer_file(entry, path)
    state_dict = {k: v.contiguous() for k, v in state_dict.items()}
    fd, partial = tempfile.mkstemp(prefix=entry.converted_filename + ".", suffix=".part", dir=folder)
    os.close(fd)
    try:
        safetensors.torch.save_file(state_dict, partial, metadata={
            "layerstack_source": os.path.basename(path), "layerstack_note": f"{entry.filename} without sd_vae.*"})
        read_layer_file(entry, partial)
        _move_into_place(partial, target)
    except OSError as e:
        raise LayerStackError(f"could not write {target} (conversion of {path}): {e}") from e
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    log.info("LayerStack: wrote %s (the decoder and encoder of %s, no pickle)", target, path)
    return target


def validate_layer_state_dict(entry: LayerFile, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Key-grammar check of a state dict against its registry entry; raises naming the file and the problem."""
    found = problems(entry, state_dict)
    if not found:
        return
    looks_like = [f.filename for f in identify(state_dict) if f.id != entry.id]
    hint = f" It looks like {' or '.join(looks_like)}." if looks_like else ""
    shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
    raise LayerStackError(f"{source}: is not a valid {entry.describe()}: {shown}.{hint}")


def check_finite_weights(entry: LayerFile, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse a file with NaN/inf weights (they would turn every result into NaN, i.e. empty images).

    One sum per tensor (NaN and inf propagate through it); values are counted only where it is not finite, which
    also clears a sum that merely overflowed in fp16.
    """
    broken = {}
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(tensor.sum().isfinite()):
            bad = int(tensor.numel() - tensor.isfinite().sum())
            if bad:
                broken[key] = bad
    if broken:
        shown = ", ".join(f"{key} ({bad} of {state_dict[key].numel()})" for key, bad in list(broken.items())[:3])
        more = f" and {len(broken) - 3} more tensors" if len(broken) > 3 else ""
        raise LayerStackError(
            f"{source}: is not a usable {entry.describe()}: {len(broken)} tensor(s) hold NaN or inf values: "
            f"{shown}{more}. The file is damaged; delete it and download {entry.filename} again from {entry.url}.")


def download_layer_file(entry: LayerFile | str, url: str | None = None, folder: str | None = None) -> str:
    """Stream an official file into the first layer_model folder, validated before it is moved into place.

    The download goes to a temporary file beside the target and is renamed only after it parses with the expected
    keys, so an interrupted or wrong download never leaves a file that looks complete. Never overwrites a file.
    """
    entry = get(entry) if isinstance(entry, str) else entry
    url = url or entry.url
    folder = folder or layer_model_folders()[0]
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, entry.filename)
    if os.path.exists(target):
        raise LayerStackError(f"{target} already exists; LayerStack never overwrites a file. Delete it to download again.")
    log.info("LayerStack: downloading %s from %s", entry.filename, url)
    fd, partial = tempfile.mkstemp(prefix=entry.filename + ".", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https URL from the registry or the caller)
            expected = response.headers.get("Content-Length")
            written = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                written += len(chunk)
        if expected is not None and written != int(expected):
            raise LayerStackError(f"download of {entry.filename} from {url} stopped after {written} of {expected} bytes")
        read_layer_file(entry, partial)  # raises naming the problem if the bytes are not the expected file
        _move_into_place(partial, target)
        return target
    except OSError as e:
        raise LayerStackError(f"download of {entry.filename} from {url} failed: {e}") from e
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _move_into_place(partial: str, target: str) -> None:
    try:
        os.link(partial, target)  # unlike os.replace, a link fails instead of overwriting a file that appeared meanwhile
        return
    except FileExistsError:
        raise LayerStackError(f"{target} appeared while LayerStack was writing it; it was left untouched.") from None
    except OSError:
        pass  # a filesystem without hard links: check, then rename
    if os.path.exists(target):
        raise LayerStackError(f"{target} appeared while LayerStack was writing it; it was left untouched.")
    os.replace(partial, target)
