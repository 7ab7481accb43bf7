"""Save Layer Stack (OpenRaster) as a node (the format itself is tested in tests/unit/test_openraster.py)."""

from __future__ import annotations

from fixtures.layered_files import read_ora, sample_stack


def test_save_ora_node_writes_one_file_per_picture(comfy_host, tmp_path, monkeypatch):
    import folder_paths

    from layerstack.nodes import save

    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path / "output"))
    monkeypatch.setattr(folder_paths, "temp_directory", str(tmp_path / "temp"))
    stack = sample_stack(batch=2)
    ui = save.LayerStackSaveORA.execute(stack=stack, filename_prefix="layered/shot").ui
    assert [(r["filename"], r["subfolder"]) for r in ui["ora"]] == [("shot_00001_.ora", "layered"),
                                                                    ("shot_00002_.ora", "layered")]
    ora = read_ora((tmp_path / "output" / "layered" / "shot_00002_.ora").read_bytes())
    assert [layer["name"] for layer in ora["layers"]] == stack.names and len(ui["images"]) == 2
