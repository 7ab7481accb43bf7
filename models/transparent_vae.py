"""The LAYER_VAE socket value: which family's transparent decoder/encoder, read from the official files on use.

The networks and the decode/encode procedures are plain torch in layer_vae/ (which knows nothing of the files);
here a family becomes its two registry entries, each file is found and read once, and the state dict is handed to
layer_vae/runtime.py to be loaded strictly under ComfyUI's model management.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import LayerStackError
from ..layer_vae import layout as layout_mod
from ..layer_vae import runtime
from . import files, registry
from .registry import Family, Kind

LAYOUTS: dict[Family, layout_mod.Layout] = {
    Family.SD15: layout_mod.SD, Family.SDXL: layout_mod.SD, Family.FLUX: layout_mod.FLUX}
_BUILDERS = {Kind.DECODER: runtime.decoder_from_state_dict, Kind.ENCODER: runtime.encoder_from_state_dict}


@dataclass(eq=False)
class TransparentVAE:
    """The decoder/encoder pair of one family.

    Each network is read from its official file on first use and then kept (ComfyUI caches the loader's output, so a
    workflow reads each file once). Either may also be given directly. A family whose pair sits in one file (Flux
    TransparentVAE.pth) reads it once for both.
    """

    family: Family
    download: bool = False
    _decoder: Any = field(default=None, repr=False)
    _encoder: Any = field(default=None, repr=False)

    @property
    def layout(self) -> layout_mod.Layout:
        return LAYOUTS[self.family]

    @property
    def decoder_file(self) -> registry.LayerFile:
        return registry.decoder_for(self.family)

    @property
    def encoder_file(self) -> registry.LayerFile:
        return registry.encoder_for(self.family)

    def decoder(self):
        if self._decoder is None:
            self._read(Kind.DECODER, self.decoder_file)
        return self._decoder

    def encoder(self):
        if self._encoder is None:
            self._read(Kind.ENCODER, self.encoder_file)
        return self._encoder

    def _read(self, kind: Kind, entry: registry.LayerFile) -> None:
        loaded = files.load_layer_file(entry, download=self.download)
        channels = self.layout.latent_channels
        if entry.kind is not Kind.TRANSPARENT_VAE:
            self._set(kind, _BUILDERS[kind](loaded.state_dict, source=loaded.path, hint=registry.looks_like,
                                            latent_channels=channels))
            return
        for part, prefix in registry.BUNDLE_PARTS.items():
            if self._get(part) is None:
                sub = {k[len(prefix):]: v for k, v in loaded.state_dict.items() if k.startswith(prefix)}
                self._set(part, _BUILDERS[part](sub, source=f"{loaded.path} ({prefix}* tensors)",
                                                hint=registry.looks_like, latent_channels=channels))

    def _get(self, kind: Kind):
        return self._decoder if kind is Kind.DECODER else self._encoder

    def _set(self, kind: Kind, patcher) -> None:
        if kind is Kind.DECODER:
            self._decoder = patcher
        else:
            self._encoder = patcher


LAYER_TAG = "layerstack_layer_file"  # LATENT key: the SD1.5 attention-sharing file whose frames the batch holds


def check_latent_family(node: str, layer_vae: TransparentVAE, samples: dict) -> None:
    """Refuse a latent whose family is known (SD1.5 layer nodes tag theirs) and differs from the decoder's; SD1.5
    and SDXL latents cannot be told apart otherwise, so an untagged latent is trusted."""
    tag = samples.get(LAYER_TAG) if isinstance(samples, dict) else None
    if tag is None:
        return
    made_by = registry.get(tag)
    if made_by.family is not layer_vae.family:
        raise LayerStackError(
            f"{node}: input 'samples' expected a {layer_vae.family.value} latent (the family of 'layer_vae'), got an "
            f"{made_by.family.value} latent (made with {made_by.filename}). Connect the model to Load Transparent "
            f"VAE, or set its 'family' to {made_by.family.value}."
        )


# Legacy decode ids name only a family, with no LAYER_VAE socket for ComfyUI to cache: their TransparentVAE is kept
# here, one per family (at most len(Family)), keyed by its decoder file's identity so a replaced file is read anew.
_REUSED: dict[Family, tuple[tuple, TransparentVAE]] = {}


def reused(family: Family) -> TransparentVAE:
    """The family's TransparentVAE, shared across runs while its decoder file (path, size, mtime) is unchanged:
    no re-read, re-validation or new patcher per run; ComfyUI's model management still loads and offloads it."""
    path = files.find_layer_file(registry.decoder_for(family))
    stat = os.stat(path)
    identity = (path, stat.st_size, stat.st_mtime_ns)
    kept = _REUSED.get(family)
    if kept is None or kept[0] != identity:
        kept = _REUSED[family] = (identity, TransparentVAE(family))
    return kept[1]


def family_from(node: str, family_name: str, model=None) -> Family:
    """The family of a connected MODEL, else the explicit choice."""
    if model is not None:
        family = registry.family_of_model(model)
        if family is None:
            raise LayerStackError(
                f"{node}: input 'model' expected an SD1.5, SDXL or Flux model (the transparent VAE exists only "
                f"for these), got {registry.model_type_name(model)}."
            )
        return family
    try:
        return Family(family_name)
    except ValueError:
        raise LayerStackError(
            f"{node}: input 'family' expected one of {[f.value for f in Family]}, got {family_name!r}."
        ) from None
