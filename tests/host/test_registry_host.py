"""The registry of official files and the file access layer (find, parse, validate, download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerstack.errors import LayerStackError
from layerstack.models import files, registry


def test_missing_file_error_names_every_folder_and_the_url(comfy_host, scratch_dir, monkeypatch):
    folders = [str(scratch_dir / "a"), str(scratch_dir / "b")]
    monkeypatch.setattr(files, "layer_model_folders", lambda: folders)
    monkeypatch.delenv(files.DOWNLOAD_ENV, raising=False)
    with pytest.raises(LayerStackError) as e:
        files.load_layer_file("layer_xl_transparent_conv")
    message = str(e.value)
    assert "layer_xl_transparent_conv.safetensors" in message
    assert all(f in message for f in folders)
    assert registry.get("layer_xl_transparent_conv").url in message


def test_folder_registration_keeps_a_user_yaml_entry_first(comfy_host, monkeypatch):
    import folder_paths

    import layerstack

    user_dir = "/some/user/layer_models"
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "layer_model", ([user_dir], set()))
    layerstack.register_layer_model_folder()
    paths, extensions = folder_paths.folder_names_and_paths["layer_model"]
    assert paths[0] == user_dir
    assert paths[1].endswith("layer_model") and paths[1] != user_dir
    assert ".safetensors" in extensions
    layerstack.register_layer_model_folder()  # idempotent
    assert folder_paths.folder_names_and_paths["layer_model"][0] == paths


def test_download_setting_of_the_ui_switches_downloading_on(comfy_host, monkeypatch, tmp_path):
    """Settings → LayerStack (web/layerstack.js) stores the switch in the default user's comfy.settings.json."""
    import folder_paths

    monkeypatch.delenv(files.DOWNLOAD_ENV, raising=False)
    monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(tmp_path))
    assert not files.download_allowed()  # no settings file yet
    (tmp_path / "default").mkdir()
    settings = tmp_path / "default" / "comfy.settings.json"
    settings.write_text(json.dumps({files.DOWNLOAD_SETTING: False, "Comfy.Locale": "en"}))
    assert not files.download_allowed()
    settings.write_text(json.dumps({files.DOWNLOAD_SETTING: True}))
    assert files.download_allowed()
    settings.write_text("not json")
    assert not files.download_allowed()
    js = (Path(__file__).resolve().parents[2] / "web" / "layerstack.js").read_text()
    assert f'id: "{files.DOWNLOAD_SETTING}"' in js
