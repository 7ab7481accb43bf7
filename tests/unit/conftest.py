"""Unit tier: the pack's plain torch/numpy rooms without ComfyUI (see tests/fixtures/comfy_env.import_bare_pack)."""

from pathlib import Path

import pytest

from fixtures.comfy_env import import_bare_pack

import_bare_pack()

_HOST_FIXTURES = {"comfy_host", "fixture_paths", "comfy_server", "sd15", "sdxl"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        needs = _HOST_FIXTURES & set(getattr(item, "fixturenames", ()))
        if needs and Path(item.path).parent == Path(__file__).parent:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(needs)}: it belongs in tests/host or tests/e2e")
