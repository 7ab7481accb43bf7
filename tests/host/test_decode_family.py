"""Transparent Decode refuses a latent whose family is known to differ from the decoder's (family set by hand)."""

from __future__ import annotations

import pytest
import torch

from layerstack.errors import LayerStackError
from layerstack.models.registry import Family
from layerstack.models.transparent_vae import LAYER_TAG, TransparentVAE, check_latent_family


def test_sd15_layer_latent_with_the_sdxl_decoder_is_refused_before_decoding(comfy_host):
    from layerstack.nodes.transparent_vae import TransparentDecode

    latent = {"samples": torch.zeros(3, 4, 8, 8), LAYER_TAG: "layer_sd15_joint"}
    with pytest.raises(LayerStackError, match=r"expected a SDXL latent .* got an SD15 latent \(made with "
                                              r"layer_sd15_joint.safetensors\)\. Connect the model"):
        TransparentDecode.execute(layer_vae=TransparentVAE(Family.SDXL), samples=latent,
                                  images=torch.zeros(3, 64, 64, 3), passes="1", sub_batch_size=0)
    check_latent_family("Node", TransparentVAE(Family.SD15), latent)  # the right family passes
    check_latent_family("Node", TransparentVAE(Family.SDXL), {"samples": latent["samples"]})  # untagged: trusted
