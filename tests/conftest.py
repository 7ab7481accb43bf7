"""Shared fixtures: in-process ComfyUI, generated model fixtures, and a real headless ComfyUI server."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from fixtures.comfy_env import import_pack
from fixtures.server import ComfyServer

# The pack (and with it ComfyUI) must be importable before test modules import `layerstack.*`.
import_pack()


@pytest.fixture(scope="session")
def comfy_host():
    """ComfyUI importable in-process with --cpu; the pack importable as `layerstack`."""
    return import_pack()


@pytest.fixture(scope="session")
def fixture_paths(comfy_host) -> dict[str, Path]:
    """Random-weight checkpoints and layer files (built once, cached); registered in folder_paths in-process."""
    import folder_paths

    from fixtures.build import build_all

    paths = build_all()
    folder_paths.add_model_folder_path("checkpoints", str(paths["checkpoint_dir"]), is_default=True)
    folder_paths.add_model_folder_path("layer_model", str(paths["layer_model_dir"]), is_default=True)
    return paths


@pytest.fixture(scope="session")
def comfy_server(fixture_paths, tmp_path_factory):
    """One headless ComfyUI server with the pack and the fixture folders, shared by the session's e2e tests."""
    base = tmp_path_factory.mktemp("comfy_server")
    server = ComfyServer(base, checkpoint_dir=fixture_paths["checkpoint_dir"],
                         layer_model_dir=fixture_paths["layer_model_dir"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def scratch_dir():
    with tempfile.TemporaryDirectory(prefix="layerstack-test-") as d:
        yield Path(d)


def pytest_configure(config):
    # Keep ComfyUI's own log chatter out of the way unless asked for.
    os.environ.setdefault("TQDM_DISABLE", "1")


class LoadedCheckpoint:
    """A fixture checkpoint loaded in-process through ComfyUI's own loader (what CheckpointLoaderSimple returns)."""

    def __init__(self, path: Path):
        import comfy.sd

        self.path = path
        self.model, self.clip, self.vae, _ = comfy.sd.load_checkpoint_guess_config(
            str(path), output_vae=True, output_clip=True)

    def encode(self, text: str):
        """CONDITIONING for a prompt, as CLIPTextEncode makes it."""
        return self.clip.encode_from_tokens_scheduled(self.clip.tokenize(text))


@pytest.fixture(scope="session")
def sd15(fixture_paths) -> LoadedCheckpoint:
    """The SD1.5 fixture checkpoint (model, clip, vae); never mutate it: clone, as nodes must."""
    return LoadedCheckpoint(fixture_paths["sd15_checkpoint"])


@pytest.fixture(scope="session")
def sdxl(fixture_paths) -> LoadedCheckpoint:
    """The SDXL fixture checkpoint (model, clip, vae); never mutate it: clone, as nodes must."""
    return LoadedCheckpoint(fixture_paths["sdxl_checkpoint"])

