"""Finding, downloading and parsing the official layer files.

This is where a file on disk becomes a state dict: the safetensors parse, the key grammar of each kind, and every
"this is not the file you think it is" error. Architecture-level strictness (exact shapes) comes on top, when the
state dict is loaded into its module or turned into patches.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.request
from collections.abc import Iterable, Mapping

import torch

from ..errors import LayerStackError
from .registry import FOLDER_NAME, Kind, LayerFile, get, identify

DOWNLOAD_ENV = "LAYERSTACK_ALLOW_DOWNLOAD"
log = logging.getLogger("layerstack")


def layer_model_folders() -> list[str]:
    import folder_paths

    return folder_paths.get_folder_paths(FOLDER_NAME)


def download_allowed(explicit: bool = False) -> bool:
    """Downloading is opt-in: an explicit node option, or LAYERSTACK_ALLOW_DOWNLOAD=1 for servers."""
    return explicit or os.environ.get(DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def find_layer_file(entry: LayerFile | str) -> str:
    """Path of an official file in any `layer_model` folder; a clear error naming folders and URL if missing."""
    entry = get(entry) if isinstance(entry, str) else entry
    folders = layer_model_folders()
    for folder in folders:
        path = os.path.join(folder, entry.filename)
        if os.path.isfile(path):
            return path
    searched = "\n".join(f"  - {f}" for f in folders) or "  (no layer_model folder is registered)"
    raise LayerStackError(
        f"Layer file {entry.filename} ({entry.family.value} {entry.role}) was not found.\n"
        f"Searched:\n{searched}\n"
        f"Download it from {entry.url} into one of these folders, or allow downloading "
        f"(the node's download option, or {DOWNLOAD_ENV}=1 in the server's environment)."
    )


def load_layer_file(entry: LayerFile | str, *, download: bool = False) -> dict[str, torch.Tensor]:
    """Parse and validate an official file. Downloads it first only when allowed and missing."""
    entry = get(entry) if isinstance(entry, str) else entry
    try:
        path = find_layer_file(entry)
    except LayerStackError:
        if not download_allowed(download):
            raise
        path = download_layer_file(entry)
    return read_layer_file(entry, path)


def read_layer_file(entry: LayerFile, path: str) -> dict[str, torch.Tensor]:
    import safetensors.torch

    try:
        state_dict = safetensors.torch.load_file(path, device="cpu")
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise LayerStackError(
            f"{path}: cannot be read as a safetensors file ({type(e).__name__}: {e}). "
            f"It may be truncated or not a LayerDiffuse file; delete it and download {entry.filename} again from {entry.url}."
        ) from e
    validate_layer_state_dict(entry, state_dict, source=path)
    return state_dict


def validate_layer_state_dict(entry: LayerFile, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Key-grammar check of a state dict against its registry entry; raises naming the file and the problem."""
    problems = list(_problems(entry, state_dict))
    if not problems:
        return
    looks_like = [f.filename for f in identify(state_dict) if f.id != entry.id]
    hint = f" It looks like {' or '.join(looks_like)}." if looks_like else ""
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    raise LayerStackError(f"{source}: is not a valid {entry.describe()}: {shown}.{hint}")


def _problems(entry: LayerFile, sd: Mapping[str, torch.Tensor]) -> Iterable[str]:
    if not sd:
        yield "the file holds no tensors"
        return
    if entry.tensor_count is not None and len(sd) != entry.tensor_count:
        yield f"expected {entry.tensor_count} tensors, found {len(sd)}"
    if entry.kind is Kind.SDXL_PATCH:
        yield from _sdxl_patch_problems(entry, sd)
    elif entry.kind is Kind.ATTENTION_SHARING:
        yield from _attention_sharing_problems(entry, sd)
    elif entry.kind is Kind.DECODER:
        for key in ("conv_in.weight", "latent_conv_in.weight", "conv_out.weight"):
            if key not in sd:
                yield f"missing key {key}"
    elif entry.kind is Kind.ENCODER:
        for key in ("blocks.0.weight", "blocks.16.weight"):
            if key not in sd:
                yield f"missing key {key}"


def _sdxl_patch_problems(entry: LayerFile, sd: Mapping[str, torch.Tensor]) -> Iterable[str]:
    bad_grammar = [k for k in sd if k.count("::") != 2]
    if bad_grammar:
        yield f"keys must be '<model_key>::<patch_type>::<index>', e.g. {bad_grammar[0]!r}"
        return
    slots = {"lora": {"0", "1"}, "diff": {"0"}}[entry.patch_type]
    for key in sd:
        model_key, patch_type, index = key.split("::")
        if patch_type != entry.patch_type:
            yield f"key {key!r} has patch type {patch_type!r}, expected {entry.patch_type!r}"
            return
        if index not in slots:
            yield f"key {key!r} has index {index}, expected one of {sorted(slots)}"
            return
        if not model_key.startswith("diffusion_model."):
            yield f"key {key!r} does not address the diffusion model"
            return
    if entry.patch_type == "lora":
        pairs = {k.rsplit("::", 1)[0] for k in sd}
        unpaired = [p for p in pairs if f"{p}::0" not in sd or f"{p}::1" not in sd]
        if unpaired:
            yield f"LoRA {unpaired[0]!r} lacks its up (0) or down (1) matrix"
    conv_in = sd.get("diffusion_model.input_blocks.0.0.weight::diff::0")
    channels = 4 + entry.extra_channels
    if entry.extra_channels and conv_in is None:
        yield f"missing the conv_in delta diffusion_model.input_blocks.0.0.weight::diff::0 with {channels} input channels"
    elif conv_in is not None and conv_in.shape[1] != channels:
        yield f"conv_in delta has {conv_in.shape[1]} input channels, expected {channels}"


def _attention_sharing_problems(entry: LayerFile, sd: Mapping[str, torch.Tensor]) -> Iterable[str]:
    foreign = [k for k in sd if not (k.startswith("hookers.layers.") or k.startswith("kwargs_encoder."))]
    if foreign:
        yield f"unexpected key {foreign[0]!r} (attention-sharing files hold only hookers.layers.* and kwargs_encoder.*)"
        return
    frames = len({k.split(".")[4] for k in sd if k.startswith("hookers.layers.0.to_q_lora.")})
    if frames != entry.frames:
        yield f"has LoRAs for {frames} frame(s), expected {entry.frames}"
    control = any(k.startswith("kwargs_encoder.") for k in sd)
    if control != entry.uses_control:
        yield "has a control encoder (kwargs_encoder.*), which this file must not have" if control else (
            "lacks the control encoder (kwargs_encoder.*)")


def state_dict_mismatch(
    expected: Mapping[str, tuple[int, ...]], state_dict: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """(missing keys, unexpected keys, (key, expected shape, found shape)) of a state dict against a module's shapes.

    Keys come in the order of `expected`, then of `state_dict`; callers word the error for their kind of file.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshapen = [(k, tuple(expected[k]), tuple(state_dict[k].shape)) for k in expected
                 if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])]
    return missing, unexpected, misshapen


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
        raise LayerStackError(f"{target} appeared during the download; it was left untouched.") from None
    except OSError:
        pass  # a filesystem without hard links: check, then rename
    if os.path.exists(target):
        raise LayerStackError(f"{target} appeared during the download; it was left untouched.")
    os.replace(partial, target)
