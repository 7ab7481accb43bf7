"""The table of the 14 official LayerDiffuse files: what each is, where it comes from, and how to recognise it.

Loaders, error messages, docs and tests all read this one table (docs/FORMATS.md#files).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

BASE_URL = "https://huggingface.co/LayerDiffusion/layerdiffusion-v1/resolve/main/"
FOLDER_NAME = "layer_model"  # the folder name Forge and ComfyUI-layerdiffuse use, so existing downloads are found


class Family(str, enum.Enum):
    SD15 = "SD15"
    SDXL = "SDXL"


class Kind(str, enum.Enum):
    SDXL_PATCH = "sdxl_patch"  # "<model_key>::<lora|diff>::<i>" weight patches for the SDXL UNet
    ATTENTION_SHARING = "attention_sharing"  # "hookers.layers.*" modules for the 32 SD1.5 attention layers
    DECODER = "decoder"  # UNet1024 transparent decoder
    ENCODER = "encoder"  # latent-transparency offset encoder


@dataclass(frozen=True)
class LayerFile:
    id: str  # file stem, the key used everywhere in code
    family: Family
    kind: Kind
    role: str  # one line for humans
    frames: int | None = None  # frames per group (batch must be a multiple) for attention sharing
    extra_channels: int = 0  # extra UNet input channels the condition latent(s) add (SDXL conditional files)
    inputs: tuple[str, ...] = ()  # condition layers the file expects, in c_concat / control order
    outputs: tuple[str, ...] = ()  # what one generation gives, in frame order
    transparent_output_frames: tuple[int, ...] = ()  # frames whose latent is transparent (decode with the decoder)
    patch_type: str | None = None  # "lora" or "diff" for SDXL patch files
    tensor_count: int | None = None  # exact tensor count where the format fixes it
    parameter_count: int | None = None

    @property
    def filename(self) -> str:
        return f"{self.id}.safetensors"

    @property
    def url(self) -> str:
        return BASE_URL + self.filename

    @property
    def uses_control(self) -> bool:
        return self.kind is Kind.ATTENTION_SHARING and bool(self.inputs)

    def describe(self) -> str:
        return f"{self.filename} ({self.family.value} {self.role})"


_F = LayerFile
FILES: tuple[LayerFile, ...] = (
    _F("layer_xl_transparent_attn", Family.SDXL, Kind.SDXL_PATCH, "transparent foreground, attention injection (rank-256 LoRA)",
       outputs=("foreground",), transparent_output_frames=(0,), patch_type="lora"),
    _F("layer_xl_transparent_conv", Family.SDXL, Kind.SDXL_PATCH, "transparent foreground, conv injection (weight offsets)",
       outputs=("foreground",), transparent_output_frames=(0,), patch_type="diff"),
    _F("layer_xl_fg2ble", Family.SDXL, Kind.SDXL_PATCH, "foreground to blended", extra_channels=4,
       inputs=("foreground",), outputs=("blended",), patch_type="diff"),
    _F("layer_xl_bg2ble", Family.SDXL, Kind.SDXL_PATCH, "background to blended", extra_channels=4,
       inputs=("background",), outputs=("blended",), patch_type="diff"),
    _F("layer_xl_fgble2bg", Family.SDXL, Kind.SDXL_PATCH, "foreground + blended to background", extra_channels=8,
       inputs=("foreground", "blended"), outputs=("background",), patch_type="diff"),
    _F("layer_xl_bgble2fg", Family.SDXL, Kind.SDXL_PATCH, "background + blended to transparent foreground", extra_channels=8,
       inputs=("background", "blended"), outputs=("foreground",), transparent_output_frames=(0,), patch_type="diff"),
    _F("vae_transparent_decoder", Family.SDXL, Kind.DECODER, "transparent decoder (UNet1024)",
       tensor_count=538, parameter_count=104_104_804),
    _F("vae_transparent_encoder", Family.SDXL, Kind.ENCODER, "latent-transparency offset encoder",
       tensor_count=18, parameter_count=1_181_764),
    _F("layer_sd15_vae_transparent_decoder", Family.SD15, Kind.DECODER, "transparent decoder (UNet1024)",
       tensor_count=538, parameter_count=104_104_804),
    _F("layer_sd15_vae_transparent_encoder", Family.SD15, Kind.ENCODER, "latent-transparency offset encoder",
       tensor_count=18, parameter_count=1_181_764),
    _F("layer_sd15_transparent_attn", Family.SD15, Kind.ATTENTION_SHARING, "transparent foreground, attention sharing",
       frames=1, outputs=("foreground",), transparent_output_frames=(0,), tensor_count=640, parameter_count=175_098_496),
    _F("layer_sd15_joint", Family.SD15, Kind.ATTENTION_SHARING, "joint foreground + background + blended",
       frames=3, outputs=("foreground", "background", "blended"), transparent_output_frames=(0,),
       tensor_count=1152, parameter_count=277_138_048),
    _F("layer_sd15_fg2bg", Family.SD15, Kind.ATTENTION_SHARING, "foreground to background + blended",
       frames=2, inputs=("foreground",), outputs=("background", "blended"),
       tensor_count=1180, parameter_count=281_425_568),
    _F("layer_sd15_bg2fg", Family.SD15, Kind.ATTENTION_SHARING, "background to transparent foreground + blended",
       frames=2, inputs=("background",), outputs=("foreground", "blended"), transparent_output_frames=(0,),
       tensor_count=1180, parameter_count=281_425_568),
)
del _F

_BY_ID = {f.id: f for f in FILES}
assert len(_BY_ID) == len(FILES), "duplicate layer file id"


def get(file_id: str) -> LayerFile:
    """The registry entry for a file id (stem) or file name."""
    key = file_id[: -len(".safetensors")] if file_id.endswith(".safetensors") else file_id
    try:
        return _BY_ID[key]
    except KeyError:
        raise KeyError(f"unknown LayerDiffuse file {file_id!r}; known: {', '.join(_BY_ID)}") from None


def files_of(family: Family | None = None, kind: Kind | None = None) -> tuple[LayerFile, ...]:
    return tuple(f for f in FILES if (family is None or f.family is family) and (kind is None or f.kind is kind))


def decoder_for(family: Family) -> LayerFile:
    return files_of(family, Kind.DECODER)[0]


def encoder_for(family: Family) -> LayerFile:
    return files_of(family, Kind.ENCODER)[0]


# SD1.5 attention-sharing layer order (docs/FORMATS.md#attention-sharing-layers): state-dict index i -> attention module under `diffusion_model.`.
# Even i is attn1 (self-attention), odd i attn2 (cross-attention); the middle block comes last, not in execution order.
_SD15_TRANSFORMERS = (
    "input_blocks.1.1", "input_blocks.2.1", "input_blocks.4.1", "input_blocks.5.1", "input_blocks.7.1",
    "input_blocks.8.1", "output_blocks.3.1", "output_blocks.4.1", "output_blocks.5.1", "output_blocks.6.1",
    "output_blocks.7.1", "output_blocks.8.1", "output_blocks.9.1", "output_blocks.10.1", "output_blocks.11.1",
    "middle_block.1",
)
SD15_ATTENTION_LAYERS: tuple[str, ...] = tuple(
    f"{block}.transformer_blocks.0.{attn}" for block in _SD15_TRANSFORMERS for attn in ("attn1", "attn2")
)


# --- recognising a file from its keys -------------------------------------------------------------------------------

def identify(state_dict: Mapping[str, object]) -> tuple[LayerFile, ...]:
    """Registry entries whose key signature the state dict carries (several when files share a layout).

    Used for error messages ("this looks like layer_sd15_joint"), never to pick a file silently.
    """
    keys = list(state_dict)
    if not keys:
        return ()
    if all("::" in k for k in keys):
        kinds = {k.split("::")[1] for k in keys if k.count("::") == 2}
        conv_in = state_dict.get("diffusion_model.input_blocks.0.0.weight::diff::0")
        channels = int(conv_in.shape[1]) if conv_in is not None and hasattr(conv_in, "shape") else 4
        return tuple(
            f for f in files_of(kind=Kind.SDXL_PATCH)
            if f.patch_type in kinds and (4 + f.extra_channels == channels or f.patch_type == "lora")
        )
    if any(k.startswith("hookers.layers.") for k in keys):
        frames = len({k.split(".")[4] for k in keys if k.startswith("hookers.layers.0.to_q_lora.")})
        control = any(k.startswith("kwargs_encoder.") for k in keys)
        return tuple(
            f for f in files_of(kind=Kind.ATTENTION_SHARING) if f.frames == frames and f.uses_control == control
        )
    if "latent_conv_in.weight" in state_dict and "conv_in.weight" in state_dict:
        return files_of(kind=Kind.DECODER)
    if "blocks.0.weight" in state_dict and "blocks.16.weight" in state_dict:
        return files_of(kind=Kind.ENCODER)
    return ()


def family_of_model(model) -> Family | None:
    """The LayerDiffuse family of a ComfyUI MODEL (ModelPatcher), or None for any other architecture."""
    import comfy.supported_models as sm  # ComfyUI is only needed when a model is involved

    config = getattr(getattr(model, "model", None), "model_config", None)
    # SDXLRefiner, SSD-1B, Segmind-Vega etc. are separate classes: the official files fit only the base layouts.
    if type(config) is sm.SDXL:
        return Family.SDXL
    if type(config) is sm.SD15:
        return Family.SD15
    return None


def model_type_name(model) -> str:
    config = getattr(getattr(model, "model", None), "model_config", None)
    return type(config).__name__ if config is not None else type(model).__name__
