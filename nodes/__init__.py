"""Every node of the pack. Each module exports NODES; this list is the one place that decides what is registered."""

from __future__ import annotations

from . import (
    alpha,
    core_layers,
    flux,
    layer_files,
    legacy_decode,
    legacy_sd15,
    legacy_sdxl,
    save,
    sd15,
    sdxl,
    stack,
    transparent_vae,
)

NODE_MODULES = (layer_files, stack, core_layers, alpha, save, transparent_vae, flux, legacy_decode, sdxl, legacy_sdxl,
                sd15, legacy_sd15)


def all_nodes() -> list[type]:
    nodes = [node for module in NODE_MODULES for node in module.NODES]
    ids = [n.GET_SCHEMA().node_id for n in nodes]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RuntimeError(f"LayerStack registers these node ids twice: {duplicates}")
    return nodes
