"""A server killed while a save node writes leaves no partial or empty file under a final name in the output folder."""

from __future__ import annotations

import time

from fixtures.server import ComfyServer


def test_server_killed_mid_save_leaves_no_file_under_a_final_name(fixture_paths, tmp_path):
    server = ComfyServer(tmp_path / "server", layer_model_dir=fixture_paths["layer_model_dir"]).start()
    try:
        # Big noisy pictures: each PNG takes long enough to encode that the kill lands inside a write.
        server.submit({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 4096, "height": 4096, "batch_size": 3, "color": 0}},
            "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": 1, "strength": 1.0}},
            "3": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 4096, "height": 4096}},
            "4": {"class_type": "LayerStackSaveRGBA", "inputs": {"image": ["2", 0], "alpha": ["3", 0],
                                                                 "filename_prefix": "killed/k"}},
        })
        folder = server.output_dir / "killed"
        deadline = time.monotonic() + 300
        while not (folder.is_dir() and any(folder.iterdir())):  # the first save has begun
            assert time.monotonic() < deadline, server.log_tail()
            assert server.process.poll() is None, server.log_tail()
            time.sleep(0.005)
        server.process.kill()
        server.process.wait(30)
    finally:
        server.stop()
    finals = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert [p for p in folder.iterdir() if p.name.endswith(".partial")] or finals
    # Files finished before the kill are complete PNGs; none is empty or cut short.
    for path in finals:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), (path.name, len(data))
