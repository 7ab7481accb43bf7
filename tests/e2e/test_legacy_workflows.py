"""Regression fixtures of ComfyUI-layerdiffuse's ten example workflows, run through a real server on the old ids.

The fixtures (tests/data/legacy_workflows/, built by tests/legacy_workflows.py, which says what was substituted)
keep the originals' node types and widget values; here each UI file must convert to its API twin with the live
/object_info, and each API twin must run end to end on the fixture checkpoints and layer files.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from legacy_workflows import DATA_DIR, IMAGES, SIZE, build
from PIL import Image

from batch_runner.convert import ui_to_api
from fixtures.api_twins import assert_converts_to_twin

GRAPHS = build()


def _png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA" if rgba.shape[-1] == 4 else "RGB").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(comfy_server):
    rng = np.random.default_rng(7)
    fg = rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
    fg[..., 3] = 0
    fg[SIZE // 4: SIZE * 3 // 4, SIZE // 4: SIZE * 3 // 4, 3] = 255  # an opaque square on transparency
    images = {"fg": fg, "bg": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
              "blended": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)}
    for key, name in IMAGES.items():
        (comfy_server.input_dir / name).write_bytes(_png(images[key]))
    return comfy_server


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_committed_fixture_files_match_their_builder(name):
    graph = GRAPHS[name]
    assert json.loads((DATA_DIR / f"{name}.ui.json").read_text()) == graph.ui()
    assert json.loads((DATA_DIR / f"{name}.api.json").read_text()) == graph.api()


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_old_ui_file_converts_to_its_api_twin(server, name):
    ui = json.loads((DATA_DIR / f"{name}.ui.json").read_text())
    api = json.loads((DATA_DIR / f"{name}.api.json").read_text())
    object_info = server.object_info()  # titles: the host's display names where a node has no title of its own
    assert_converts_to_twin(ui_to_api(ui, object_info), api, ui, object_info)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_old_workflow_runs_end_to_end(server, name):
    api = json.loads((DATA_DIR / f"{name}.api.json").read_text())
    outputs = server.run(api, timeout=900)["outputs"]
    previews = [nid for nid, node in api.items() if node["class_type"] == "PreviewImage"]
    assert sorted(outputs) == sorted(previews)
    batch = next(n["inputs"]["batch_size"] for n in api.values() if n["class_type"] == "EmptyLatentImage")
    for nid in previews:
        source = api[api[nid]["inputs"]["images"][0]]
        images = outputs[nid]["images"]
        frames = source["inputs"].get("frames") if source["class_type"] == "LayeredDiffusionDecodeSplit" else 1
        assert len(images) == batch // frames, (nid, source["class_type"])
        picture = Image.open(io.BytesIO(server.fetch(images[0])))
        assert picture.size == (SIZE, SIZE)
        if source["class_type"] in ("LayeredDiffusionDecodeRGBA", "JoinImageWithAlpha"):
            assert picture.mode == "RGBA", (nid, picture.mode)
