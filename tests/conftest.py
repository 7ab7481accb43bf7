"""Shared fixtures (in-process ComfyUI, generated model fixtures, a real headless ComfyUI server) and the test tiers.

Tiers, by folder (each runnable alone, e.g. `pytest -m unit`; scripts/test.sh runs them in this order):
- tests/unit   `unit`: plain torch/numpy; ComfyUI is not importable there (tests/unit/conftest.py). Its few costly
               tests (full-size networks) are also marked `slow`, which `scripts/test.sh --fast` leaves out.
- tests/host   `host`: ComfyUI in-process (`comfy_host`, `sd15`, `sdxl`, ...).
- tests/e2e    `server`: a real headless ComfyUI server (`comfy_server`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from fixtures.comfy_env import import_pack
from fixtures.server import SERVER_RUN_TIMEOUT_S, ComfyServer

TIERS = {"unit": "unit", "host": "host", "e2e": "server"}
# Per-test limits sized to the tier; session fixtures (building the fixture models, a first server start on a busy
# 2-core machine) count towards the first test that needs them.
TIER_TIMEOUT_S = {"unit": 60, "host": 900, "server": SERVER_RUN_TIMEOUT_S + 200}
SLOW_TIMEOUT_S = 600  # a test marked slow (full-size networks on CPU)


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
    folder_paths.add_model_folder_path("vae", str(paths["checkpoint_dir"]))  # the Flux VAE fixture lives there
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
    for tier in TIERS.values():
        config.addinivalue_line("markers", f"{tier}: {tier}-tier test (see tests/conftest.py)")
    config.addinivalue_line("markers", "slow: a unit-tier test too costly for `scripts/test.sh --fast` (full-size "
                                       "networks on CPU); the full run includes it")


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(item.path).relative_to(Path(__file__).parent).parts[0]
        tier = TIERS.get(folder)
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of the tier folders {sorted(TIERS)}")
        item.add_marker(getattr(pytest.mark, tier))
        if item.get_closest_marker("timeout") is None:
            slow = item.get_closest_marker("slow") is not None
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S if slow else TIER_TIMEOUT_S[tier]))


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

