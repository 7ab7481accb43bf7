"""The generated checkpoints are what the tests claim: ComfyUI's own loader detects SD1.5 / SDXL, outputs are finite."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("family", ["SD15", "SDXL"])
def test_checkpoint_is_detected_by_comfyui_and_runs(fixture_paths, family):
    import comfy.sd
    import comfy.supported_models as sm

    from layerstack.models.registry import Family, family_of_model

    path = fixture_paths[f"{family.lower()}_checkpoint"]
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    assert type(model.model.model_config) is {"SD15": sm.SD15, "SDXL": sm.SDXL}[family]
    assert family_of_model(model) is Family(family)

    tokens = clip.tokenize("a glass bottle")
    cond = clip.encode_from_tokens_scheduled(tokens)
    context = cond[0][0]
    assert context.shape[-1] == {"SD15": 768, "SDXL": 2048}[family]
    assert torch.isfinite(context).all()

    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    extra = {}
    if family == "SDXL":
        extra["y"] = torch.zeros(1, 2816)
    out = model.model.apply_model(latent, torch.tensor([5.0]), c_crossattn=context, **extra)
    assert out.shape == latent.shape and torch.isfinite(out).all() and out.abs().sum() > 0

    image = vae.decode(latent)
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()


def test_every_official_file_has_a_fixture(fixture_paths):
    from layerstack.models import registry

    present = {p.name for p in fixture_paths["layer_model_dir"].iterdir()}
    missing = [f.filename for f in registry.FILES if f.filename not in present]
    assert not missing, f"no fixture builder for {missing}"
