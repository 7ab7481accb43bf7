"""The table of the official LayerDiffuse files: what each is, where it comes from, and how to recognise it.

The 14 SD1.5/SDXL files of LayerDiffusion/layerdiffusion-v1 (docs/FORMATS.md#files) and the 2 Flux files of
RedAIGC/Flux-version-LayerDiffuse (docs/FORMATS.md#flux-files). Loaders, error messages, docs and tests all read
this one table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

BASE_URL = "https://huggingface.co/LayerDiffusion/layerdiffusion-v1/resolve/main/"
FLUX_BASE_URL = "https://huggingface.co/RedAIGC/Flux-version-LayerDiffuse/resolve/main/"
FLUX_LICENCE = ("weights tagged AFL-3.0 on Hugging Face; they only work with FLUX.1-dev, whose FLUX.1 [dev] "
                "Non-Commercial License bounds their use")
FOLDER_NAME = "layer_model"  # the folder name Forge and ComfyUI-layerdiffuse use, so existing downloads are found


class Family(str, enum.Enum):
    SD15 = "SD15"
    SDXL = "SDXL"
    FLUX = "Flux"


class Kind(str, enum.Enum):
    SDXL_PATCH = "sdxl_patch"  # "<model_key>::<lora|diff>::<i>" weight patches for the SDXL UNet
    ATTENTION_SHARING = "attention_sharing"  # "hookers.layers.*" modules for the 32 SD1.5 attention layers
    DECODER = "decoder"  # UNet1024 transparent decoder
    ENCODER = "encoder"  # latent-transparency offset encoder
    # One pickle holding a decoder (decoder.*), an offset encoder (encoder.*) and a copy of the ordinary VAE (sd_vae.*,
    # not used): the Flux TransparentVAE.pth (docs/FORMATS.md#flux-transparent-vae-file).
    TRANSPARENT_VAE = "transparent_vae"
    FLUX_LORA = "flux_lora"  # a LoRA for ComfyUI's Flux model, applied through comfy.lora (docs/FORMATS.md#flux-layer-lora)


# Parts of a TRANSPARENT_VAE file the pack loads, by the network kind they hold; everything else must be sd_vae.*.
BUNDLE_PARTS = {Kind.DECODER: "decoder.", Kind.ENCODER: "encoder."}
BUNDLE_IGNORED_PREFIX = "sd_vae."


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
    suffix: str = ".safetensors"  # of the published file; a ".pth" is read only as plain tensors (files.py)
    base_url: str = BASE_URL
    other_folders: tuple[str, ...] = ()  # ComfyUI folders searched after layer_model (where users already keep it)
    licence: str | None = None  # when it is not the layerdiffusion-v1 one

    @property
    def filename(self) -> str:
        return f"{self.id}{self.suffix}"

    @property
    def converted_filename(self) -> str | None:
        """The safetensors copy LayerStack may write beside a pickled file (preferred when present)."""
        return None if self.suffix == ".safetensors" else f"{self.id}.safetensors"

    @property
    def url(self) -> str:
        return self.base_url + self.filename

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
    _F("TransparentVAE", Family.FLUX, Kind.TRANSPARENT_VAE,
       "transparent VAE: UNet1024 decoder + offset encoder for 16-channel latents",
       suffix=".pth", base_url=FLUX_BASE_URL, licence=FLUX_LICENCE),
    _F("layerlora", Family.FLUX, Kind.FLUX_LORA, "transparent-foreground LoRA for FLUX.1-dev",
       base_url=FLUX_BASE_URL, other_folders=("loras",), licence=FLUX_LICENCE),
)
del _F

_BY_ID = {f.id: f for f in FILES}
assert len(_BY_ID) == len(FILES), "duplicate layer file id"


def get(file_id: str) -> LayerFile:
    """The registry entry for a file id (stem) or file name."""
    key = file_id
    for suffix in (".safetensors", ".pth"):
        key = key.removesuffix(suffix)
    try:
        return _BY_ID[key]
    except KeyError:
        raise KeyError(f"unknown LayerDiffuse file {file_id!r}; known: {', '.join(_BY_ID)}") from None


def files_of(family: Family | None = None, kind: Kind | None = None) -> tuple[LayerFile, ...]:
    return tuple(f for f in FILES if (family is None or f.family is family) and (kind is None or f.kind is kind))


def decoder_for(family: Family) -> LayerFile:
    """The file holding the family's decoder: its own file, or the family's TRANSPARENT_VAE bundle."""
    return (files_of(family, Kind.DECODER) + files_of(family, Kind.TRANSPARENT_VAE))[0]


def encoder_for(family: Family) -> LayerFile:
    return (files_of(family, Kind.ENCODER) + files_of(family, Kind.TRANSPARENT_VAE))[0]


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


# --- what each kind of file is: detection and key grammar, one row per kind ----------------------------------------
# spandrel-style: a row says how to recognise a state dict of its kind (`detect`), which entries of the kind the keys
# fit (`fits`), and the strict key-grammar check a file must pass before it is used (`problems`). The architecture-
# level strict load (exact shapes against a module or a model) is done by the module that consumes the kind:
# layer_vae (decoder, encoder), models/sdxl_patches.py, models/attention_sharing.py. To add a kind: a Kind member,
# its FILES entries and one KindSpec row.

def _sdxl_patch_detect(sd: Mapping[str, object]) -> bool:
    return all("::" in k for k in sd)


def _sdxl_patch_fits(entry: LayerFile, sd: Mapping[str, object]) -> bool:
    patch_types = {k.split("::")[1] for k in sd if k.count("::") == 2}
    conv_in = sd.get("diffusion_model.input_blocks.0.0.weight::diff::0")
    channels = int(conv_in.shape[1]) if conv_in is not None and hasattr(conv_in, "shape") else 4
    return entry.patch_type in patch_types and (4 + entry.extra_channels == channels or entry.patch_type == "lora")


def _sdxl_patch_problems(entry: LayerFile, sd: Mapping[str, object]) -> Iterable[str]:
    bad_grammar = [k for k in sd if k.count("::") != 2]
    if bad_grammar:
        yield f"keys must be '<model_key>::<patch_type>::<index>', e.g. {bad_grammar[0]!r}"
        return
    slots = {"lora": {"0", "1"}, "diff": {"0"}}[entry.patch_type]
    for key in sd:
        model_key, patch_type, index = key.split("::")
        if patch_type != entry.patch_type:
            yield f"key {key!r} has patch type {patch_type!r}, expected {entry.patch_type!r}"
            return
        if index not in slots:
            yield f"key {key!r} has index {index}, expected one of {sorted(slots)}"
            return
        if not model_key.startswith("diffusion_model."):
            yield f"key {key!r} does not address the diffusion model"
            return
    if entry.patch_type == "lora":
        pairs = {k.rsplit("::", 1)[0] for k in sd}
        unpaired = [p for p in pairs if f"{p}::0" not in sd or f"{p}::1" not in sd]
        if unpaired:
            yield f"LoRA {unpaired[0]!r} lacks its up (0) or down (1) matrix"
    conv_in = sd.get("diffusion_model.input_blocks.0.0.weight::diff::0")
    channels = 4 + entry.extra_channels
    if entry.extra_channels and conv_in is None:
        yield f"missing the conv_in delta diffusion_model.input_blocks.0.0.weight::diff::0 with {channels} input channels"
    elif conv_in is not None and conv_in.shape[1] != channels:
        yield f"conv_in delta has {conv_in.shape[1]} input channels, expected {channels}"


def _sharing_frames(sd: Mapping[str, object]) -> int:
    return len({k.split(".")[4] for k in sd if k.startswith("hookers.layers.0.to_q_lora.")})


def _sharing_control(sd: Mapping[str, object]) -> bool:
    return any(k.startswith("kwargs_encoder.") for k in sd)


def _attention_sharing_detect(sd: Mapping[str, object]) -> bool:
    return any(k.startswith("hookers.layers.") for k in sd)


def _attention_sharing_fits(entry: LayerFile, sd: Mapping[str, object]) -> bool:
    return entry.frames == _sharing_frames(sd) and entry.uses_control == _sharing_control(sd)


def _attention_sharing_problems(entry: LayerFile, sd: Mapping[str, object]) -> Iterable[str]:
    foreign = [k for k in sd if not (k.startswith("hookers.layers.") or k.startswith("kwargs_encoder."))]
    if foreign:
        yield f"unexpected key {foreign[0]!r} (attention-sharing files hold only hookers.layers.* and kwargs_encoder.*)"
        return
    frames = _sharing_frames(sd)
    if frames != entry.frames:
        yield f"has LoRAs for {frames} frame(s), expected {entry.frames}"
    control = _sharing_control(sd)
    if control != entry.uses_control:
        yield "has a control encoder (kwargs_encoder.*), which this file must not have" if control else (
            "lacks the control encoder (kwargs_encoder.*)")


def _required_keys(*keys: str) -> Callable[[LayerFile, Mapping[str, object]], Iterable[str]]:
    def problems(entry: LayerFile, sd: Mapping[str, object]) -> Iterable[str]:
        return [f"missing key {key}" for key in keys if key not in sd]

    return problems


def _bundle_detect(sd: Mapping[str, object]) -> bool:
    # Not just decoder.*/encoder.*: an ordinary VAE file has those too.
    return "decoder.latent_conv_in.weight" in sd or "encoder.blocks.0.weight" in sd or any(
        k.startswith(BUNDLE_IGNORED_PREFIX) for k in sd)


def _bundle_problems(entry: LayerFile, sd: Mapping[str, object]) -> Iterable[str]:
    prefixes = (*BUNDLE_PARTS.values(), BUNDLE_IGNORED_PREFIX)
    foreign = [k for k in sd if not k.startswith(prefixes)]
    if foreign:
        yield (f"{len(foreign)} keys outside {', '.join(p + '*' for p in prefixes)} (e.g. {foreign[0]!r}); "
               "the file should be the state dict of the whole TransparentVAE module")
    for kind, prefix in BUNDLE_PARTS.items():
        if not any(k.startswith(prefix) for k in sd):
            yield f"no {prefix}* tensors (the {kind.value})"


def _flux_lora_detect(sd: Mapping[str, object]) -> bool:
    return any(k.startswith(("transformer.", "lora_unet_double_blocks_", "lora_unet_single_blocks_")) for k in sd)


def _flux_lora_problems(entry: LayerFile, sd: Mapping[str, object]) -> Iterable[str]:
    from .flux_lora import lora_grammar_problems

    return lora_grammar_problems(sd)


@dataclass(frozen=True)
class KindSpec:
    kind: Kind
    noun: str  # how an error names a file of this kind
    detect: Callable[[Mapping[str, object]], bool]  # the keys carry this kind's signature
    fits: Callable[[LayerFile, Mapping[str, object]], bool]  # ... and fit this entry of the kind (hints only)
    problems: Callable[[LayerFile, Mapping[str, object]], Iterable[str]]  # key grammar; empty = may be used


KINDS: tuple[KindSpec, ...] = (  # detection order: the first row whose detect() holds names the file
    KindSpec(Kind.SDXL_PATCH, "an SDXL weight-patch file (layer_xl_*)", _sdxl_patch_detect, _sdxl_patch_fits, _sdxl_patch_problems),
    KindSpec(Kind.ATTENTION_SHARING, "an SD1.5 attention-sharing file (layer_sd15_*)", _attention_sharing_detect, _attention_sharing_fits, _attention_sharing_problems),
    KindSpec(Kind.DECODER, "a transparent decoder file", lambda sd: "latent_conv_in.weight" in sd and "conv_in.weight" in sd,
             lambda entry, sd: True, _required_keys("conv_in.weight", "latent_conv_in.weight", "conv_out.weight")),
    KindSpec(Kind.ENCODER, "a transparent offset-encoder file", lambda sd: "blocks.0.weight" in sd and "blocks.16.weight" in sd,
             lambda entry, sd: True, _required_keys("blocks.0.weight", "blocks.16.weight")),
    KindSpec(Kind.TRANSPARENT_VAE, "the Flux TransparentVAE (load it with the Flux family)", _bundle_detect,
             lambda entry, sd: True, _bundle_problems),
    KindSpec(Kind.FLUX_LORA, "a Flux LoRA (layerlora)", _flux_lora_detect, lambda entry, sd: True, _flux_lora_problems),
)
_KIND_SPECS = {spec.kind: spec for spec in KINDS}
assert set(_KIND_SPECS) == set(Kind), "every kind needs its KindSpec row"


def identify(state_dict: Mapping[str, object]) -> tuple[LayerFile, ...]:
    """Registry entries whose key signature the state dict carries (several when files share a layout).

    Used for error messages ("this looks like layer_sd15_joint"), never to pick a file silently.
    """
    if not state_dict:
        return ()
    for spec in KINDS:
        if spec.detect(state_dict):
            return tuple(f for f in files_of(kind=spec.kind) if spec.fits(f, state_dict))
    return ()


def looks_like(state_dict: Mapping[str, object]) -> str:
    """' It looks like <kind of file>.' for an error about a state dict that is not what was expected, else ''."""
    nouns = [spec.noun for spec in KINDS if state_dict and spec.detect(state_dict)]
    return f" It looks like {nouns[0]}." if nouns else ""


def problems(entry: LayerFile, state_dict: Mapping[str, object]) -> list[str]:
    """Why a state dict is not a valid `entry` by its keys (empty when it is): counts, then the kind's grammar."""
    if not state_dict:
        return ["the file holds no tensors"]
    found = []
    if entry.tensor_count is not None and len(state_dict) != entry.tensor_count:
        found.append(f"expected {entry.tensor_count} tensors, found {len(state_dict)}")
    return found + list(_KIND_SPECS[entry.kind].problems(entry, state_dict))


def family_of_model(model) -> Family | None:
    """The LayerDiffuse family of a ComfyUI MODEL (ModelPatcher), or None for any other architecture."""
    import comfy.supported_models as sm  # ComfyUI is only needed when a model is involved

    config = getattr(getattr(model, "model", None), "model_config", None)
    # SDXLRefiner, SSD-1B, Segmind-Vega etc. are separate classes: the official files fit only the base layouts.
    if type(config) is sm.SDXL:
        return Family.SDXL
    if type(config) is sm.SD15:
        return Family.SD15
    # Models whose latents come from the Flux VAE (16 channels); Flux 2 / Chroma are other architectures.
    if type(config) in tuple(getattr(sm, name) for name in ("Flux", "FluxSchnell", "FluxInpaint") if hasattr(sm, name)):
        return Family.FLUX
    return None


def model_type_name(model) -> str:
    config = getattr(getattr(model, "model", None), "model_config", None)
    return type(config).__name__ if config is not None else type(model).__name__
