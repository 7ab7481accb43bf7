"""The LAYER_VAE socket value: which family's transparent decoder/encoder, read from the official files on use.

The networks and the decode/encode procedures are plain torch in layer_vae/ (which knows nothing of the files);
here a family becomes its two registry entries, each file is found and read once, and the state dict is handed to
layer_vae/runtime.py to be loaded strictly under ComfyUI's model management.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import LayerStackError
from ..layer_vae import runtime
from . import files, registry
from .registry import Family


@dataclass(eq=False)
class TransparentVAE:
    """The decoder/encoder pair of one family.

    Each network is read from its official file on first use and then kept (ComfyUI caches the loader's output, so a
    workflow reads each file once). Either may also be given directly.
    """

    family: Family
    download: bool = False
    _decoder: Any = field(default=None, repr=False)
    _encoder: Any = field(default=None, repr=False)

    @property
    def decoder_file(self) -> registry.LayerFile:
        return registry.decoder_for(self.family)

    @property
    def encoder_file(self) -> registry.LayerFile:
        return registry.encoder_for(self.family)

    def decoder(self):
        if self._decoder is None:
            self._decoder = self._read(self.decoder_file, runtime.decoder_from_state_dict)
        return self._decoder

    def encoder(self):
        if self._encoder is None:
            self._encoder = self._read(self.encoder_file, runtime.encoder_from_state_dict)
        return self._encoder

    def _read(self, entry: registry.LayerFile, build):
        loaded = files.load_layer_file(entry, download=self.download)
        return build(loaded.state_dict, source=loaded.path, hint=registry.looks_like)


def family_from(node: str, family_name: str, model=None) -> Family:
    """The family of a connected MODEL, else the explicit choice."""
    if model is not None:
        family = registry.family_of_model(model)
        if family is None:
            raise LayerStackError(
                f"{node}: input 'model' expected an SD1.5 or SDXL model (the transparent VAE exists only for these), "
                f"got {registry.model_type_name(model)}."
            )
        return family
    try:
        return Family(family_name)
    except ValueError:
        raise LayerStackError(
            f"{node}: input 'family' expected one of {[f.value for f in Family]}, got {family_name!r}."
        ) from None
