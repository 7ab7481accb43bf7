"""The LayerDiffuse transparent VAE: decoder (UNet1024), offset encoder, RGB padding and the
augmented decode, in plain torch. ``runtime`` adds ComfyUI model management on top."""

from .augment import PASS_SETS, REFERENCE_PASSES
from .decode import decode_augmented, pad_to_multiple
from .encode import composite_on_grey, offset_encoder_input, offset_latent
from .offset_encoder import LatentTransparencyOffsetEncoder
from .pad_rgb import pad_rgb
from .state_dict import check_state_dict, load_strict
from .unet1024 import SIZE_MULTIPLE, UNet1024

__all__ = [
    "PASS_SETS",
    "REFERENCE_PASSES",
    "SIZE_MULTIPLE",
    "LatentTransparencyOffsetEncoder",
    "UNet1024",
    "check_state_dict",
    "composite_on_grey",
    "decode_augmented",
    "load_strict",
    "offset_encoder_input",
    "offset_latent",
    "pad_rgb",
    "pad_to_multiple",
]
