"""NaN/inf inputs of the layer modes and the save nodes fail with node, input, count and likely cause."""

from __future__ import annotations

import pytest
import torch

from layerstack.errors import LayerStackError


def test_sdxl_modes_refuse_a_nan_condition_latent():
    """Every SDXL layer mode, new and legacy, builds its c_concat here; the check comes before the model is used."""
    from layerstack.models import sdxl_patches

    good, bad = torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(LayerStackError, match=r"LayerStackSDXLBackgroundBlendedToForeground: input 'background' holds "
                                              r"1 non-finite value\(s\).*Likely cause: the model or sampler"):
        sdxl_patches.condition_c_concat(None, [bad, good], node="LayerStackSDXLBackgroundBlendedToForeground",
                                        names=["background", "blended"])


def test_sd15_mode_refuses_a_nan_latent():
    from layerstack.models import registry
    from layerstack.nodes import sd15

    samples = torch.zeros(2, 4, 8, 8)
    samples[1, 2, 3, 4] = float("-inf")
    with pytest.raises(LayerStackError, match=r"LayerStackSD15JointLayers: input 'latent' holds 1 non-finite"):
        sd15.expand_latent({"samples": samples}, registry.get("layer_sd15_joint"), "LayerStackSD15JointLayers")


def test_save_nodes_refuse_nan_pictures_instead_of_writing_empty_files(tmp_path, monkeypatch):
    import folder_paths

    from layerstack.nodes import save

    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    image = torch.rand(1, 8, 8, 4)
    image[0, 0, 0, 3] = float("nan")
    with pytest.raises(LayerStackError, match=r"LayerStackSaveRGBA: input 'image' holds 1 non-finite value\(s\) "
                                              r"\(NaN or inf\) out of 256\. Likely cause: .*VAE Decode"):
        save.LayerStackSaveRGBA.execute(image=image, filename_prefix="nan")
    assert not list(tmp_path.rglob("*.png"))
