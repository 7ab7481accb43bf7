"""The words people type to find LayerStack's nodes: the old pack's name and display names, and what the nodes are
about (README "Install": the nodes' search words).

Newer ComfyUIs search a schema's `search_aliases`; on hosts without that field the words are appended to the
description instead (shown in the node library), and the old ids themselves (`LayeredDiffusionApply`, ...) are found
by name everywhere.
"""

from __future__ import annotations

from .categories import (
    ALPHA_CATEGORY,
    CATEGORY,
    FLUX_CATEGORY,
    SAVE_CATEGORY,
    SD15_CATEGORY,
    SDXL_CATEGORY,
    STACK_CATEGORY,
    VAE_CATEGORY,
)

PACK_WORDS = ("layerdiffuse", "layer diffusion", "LayeredDiffusion")
TRANSPARENCY_WORDS = ("transparent", "transparency", "rgba", "alpha")
LAYER_WORDS = ("layers", "psd")

# what each category is about, beyond the pack words
CATEGORY_WORDS = {
    VAE_CATEGORY: TRANSPARENCY_WORDS,
    ALPHA_CATEGORY: TRANSPARENCY_WORDS,
    SDXL_CATEGORY: TRANSPARENCY_WORDS + LAYER_WORDS,
    SD15_CATEGORY: TRANSPARENCY_WORDS + LAYER_WORDS,
    FLUX_CATEGORY: TRANSPARENCY_WORDS + ("flux",),
    STACK_CATEGORY: LAYER_WORDS + ("rgba", "alpha"),
    SAVE_CATEGORY: LAYER_WORDS + TRANSPARENCY_WORDS,
    CATEGORY: ("download", "layer model"),
}

# the old pack's display name of the node that did this node's job
OLD_DISPLAY_NAMES = {
    "LayerStackSDXLTransparentForeground": ("Layer Diffuse Apply",),
    "LayerStackSD15TransparentForeground": ("Layer Diffuse Apply",),
    "LayerStackSD15JointLayers": ("Layer Diffuse Joint Apply",),
    "LayerStackSD15ForegroundToBackground": ("Layer Diffuse Cond Joint Apply",),
    "LayerStackSD15BackgroundToForeground": ("Layer Diffuse Cond Joint Apply",),
    "LayerStackSDXLForegroundToBlended": ("Layer Diffuse Cond Apply",),
    "LayerStackSDXLBackgroundToBlended": ("Layer Diffuse Cond Apply",),
    "LayerStackSDXLForegroundBlendedToBackground": ("Layer Diffuse Diff Apply",),
    "LayerStackSDXLBackgroundBlendedToForeground": ("Layer Diffuse Diff Apply",),
    "LayerStackTransparentDecode": ("Layer Diffuse Decode", "Layer Diffuse Decode (RGBA)"),
    "LayerStackSD15SplitLayers": ("Layer Diffuse Decode (Split)",),
}

NODE_WORDS = {
    "LayerStackSavePSD": ("photoshop", "krita", "gimp", "layered file"),
    "LayerStackSaveORA": ("openraster", "ora", "krita"),
    "LayerStackSaveRGBA": ("png", "save transparent"),
}


def search_aliases(node_id: str, category: str) -> list[str]:
    words = (*PACK_WORDS, *CATEGORY_WORDS.get(category, ()), *OLD_DISPLAY_NAMES.get(node_id, ()),
             *NODE_WORDS.get(node_id, ()))
    return list(dict.fromkeys(words))
