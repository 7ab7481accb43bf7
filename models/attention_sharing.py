"""SD1.5 attention sharing (`layer_sd15_transparent_attn`, `_joint`, `_fg2bg`, `_bg2fg`): the learned modules, strict
loading of the official files and the ComfyUI patches that run them (docs/FORMATS.md#attention-sharing).

A batch holds groups of F frames, sample n = b·F + f (F = 1 transparent, 3 joint: fg/bg/blended, 2 fg2bg: bg/blended,
2 bg2fg: fg/blended). Each of the 32 attention layers of the SD1.5 UNet gets, per frame f, rank-256 LoRAs on q/k/v/out,
then a "temporal" attention across the F frames of each group; the two conditional files also add a control-image
feature map to the attention input. The reference unit replaces the whole attention and returns `hidden − h`.

How it hooks into ComfyUI — three public transformer patches per attention kind and weight wrappers, nothing
swapped, no globals touched (swapping the attention modules, as the old pack did, broke IPAdapter and every other
attention patch):

1. `attn1_patch` / `attn2_patch` (run before the attention, receive the block's normed input `n`): add the control
   features, put the per-layer prompts into the cross-attention context, and stash the input in `extra_options`,
   the dict BasicTransformerBlock hands to all patches of one block call.
2. an `attn1` / `attn2` replace patch at each of the 32 (block, number, transformer index) keys: gets q, k, v already
   projected by the block's own to_q/to_k/to_v (so ComfyUI's casting, offloading and weight patches all apply) and
   adds the per-frame LoRA terms up·down·x, which is exactly the reference's merged weight (W + up·down)·x. A replace
   patch some other node put at the same key is kept and called for the attention itself (chained, not dropped).
3. `attn1_output_patch` / `attn2_output_patch` (after to_out): add the out-LoRA term and the control features, then
   the temporal branch, which needs the block's input (stashed in 1.) and so cannot live inside to_out.
4. on a patched model (attach), frame 0's LoRA goes into the projection weights themselves: a weight wrapper per
   projection whose LoRA term is in the merged form adds up_0·down_0 to the weight during the model calls the patches
   are active for (an APPLY_MODEL wrapper decides, with the patches' own gate), so the block's projection already
   gives frame 0 the reference's (W + up_0·down_0)·x and 2. and 3. add only the other frames' differences. A
   projection whose wrapper did not run in a call gets the full terms.

Per-step cost (profiled on the fixture SD1.5, issue 11): the LoRA terms and the temporal branch run in cheaper exact
forms built once per sampling run (see "the per-frame LoRA terms and the temporal branch" below); the sigma gate and
the layer-prompt context are decided once per model call, not once per layer.

An OUTER_SAMPLE wrapper refuses a batch that is not a multiple of F before anything is sampled, fits the control
image to the generation size, turns start/stop percent into sigmas (patches are a no-op outside that range: "stop
at" as in Forge) and re-installs the replace patches around any a later node put on the same keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .. import host
from ..errors import LayerStackError, node_error, require_schedule_window
from ..layer_vae.state_dict import state_dict_mismatch
from . import files, registry
from .conditioning_images import ResizeMode, composite_on_grey, fit_image_to_size

DEFAULT_NODE = "SD1.5 attention sharing"
RANK = 256
CONTROL_CHANNELS = 256
LATENT_SCALE = 8  # SD1.5 VAE: pixels per latent cell
# Rows (batch × heads) per attention call. CUDA kernels fail above 65535 grid blocks ("invalid configuration
# argument", huchenlei/ComfyUI-layerdiffuse#109); the temporal attention has batch = images × tokens.
MAX_ATTENTION_ROWS = 32768

RUN_KEY = "layerstack_attention_sharing"  # transformer_options: per-sampling state (sigma range, control features)
OWNER_KEY = "layerstack_attention_sharing"  # additional-models / wrapper key on the ModelPatcher
_STASH_KEY = {"attn1": "layerstack_sharing_attn1", "attn2": "layerstack_sharing_attn2"}
_BLOCK_NAMES = {"input_blocks": "input", "middle_block": "middle", "output_blocks": "output"}


# --- the learned modules (names and shapes are the official state-dict layout) -------------------------------------

def _cast(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    # Weights stay in the UNet's compute dtype; activations can still differ (fp8 manual cast, lowvram on CPU).
    return None if tensor is None else tensor.to(device=like.device, dtype=like.dtype)


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, _cast(layer.weight, x), _cast(layer.bias, x))


class LoRA(nn.Module):
    """`down` [rank, in] and `up` [out, rank], no scale; forward gives only the LoRA term up·down·x."""

    def __init__(self, in_features: int, out_features: int, rank: int = RANK):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(self.up, _linear(self.down, x))


class SharingLayer(nn.Module):
    """Weights of one hooked attention layer (`hookers.layers.{i}`)."""

    def __init__(self, channels: int, context_channels: int, frames: int, use_control: bool):
        super().__init__()
        self.to_q_lora = nn.ModuleList(LoRA(channels, channels) for _ in range(frames))
        self.to_k_lora = nn.ModuleList(LoRA(context_channels, channels) for _ in range(frames))
        self.to_v_lora = nn.ModuleList(LoRA(context_channels, channels) for _ in range(frames))
        self.to_out_lora = nn.ModuleList(LoRA(channels, channels) for _ in range(frames))
        self.temporal_i = nn.Linear(channels, channels)
        self.temporal_n = nn.LayerNorm(channels, eps=1e-6)
        self.temporal_q = nn.Linear(channels, channels)
        self.temporal_k = nn.Linear(channels, channels)
        self.temporal_v = nn.Linear(channels, channels)
        self.temporal_o = nn.Linear(channels, channels)
        self.control_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(CONTROL_CHANNELS, CONTROL_CHANNELS, 3, padding=1), nn.SiLU(),
                          nn.Conv2d(CONTROL_CHANNELS, channels, 1))
            for _ in range(frames)
        ) if use_control else None


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ControlEncoder(nn.Module):
    """`kwargs_encoder`: control image in [-1, 1] → feature maps [b, 256, h, w] at 1/8, 1/16, 1/32, 1/64 size."""

    def __init__(self):
        super().__init__()
        widths = [(3, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2),
                  (256, 256, 1)]
        self.blocks_0 = nn.Sequential(*[m for cin, cout, s in widths for m in (_conv(cin, cout, s), nn.SiLU())])
        for name in ("blocks_1", "blocks_2", "blocks_3"):
            setattr(self, name, nn.Sequential(_conv(256, 256, 2), nn.SiLU(), _conv(256, 256), nn.SiLU()))

    def forward(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        """Feature maps keyed by token count h·w, which is how an attention layer finds the map of its resolution."""
        maps = {}
        h = image
        for block in (self.blocks_0, self.blocks_1, self.blocks_2, self.blocks_3):
            for module in block:
                h = F.silu(h) if isinstance(module, nn.SiLU) else _conv2d(module, h)
            maps[int(h.shape[2]) * int(h.shape[3])] = h
        return maps


def _conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, _cast(conv.weight, x), _cast(conv.bias, x), conv.stride, conv.padding)


class SharingWeights(nn.Module):
    """Top level of an official file: `hookers.layers.{0..31}` and, for fg2bg/bg2fg, `kwargs_encoder`."""

    def __init__(self, layer_shapes: Sequence[tuple[int, int]], frames: int, use_control: bool):
        super().__init__()
        self.frames = frames
        self.hookers = nn.Module()
        self.hookers.layers = nn.ModuleList(
            SharingLayer(channels, context, frames, use_control) for channels, context in layer_shapes
        )
        self.kwargs_encoder = ControlEncoder() if use_control else None


# --- which layer a patch call is for ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerSite:
    index: int  # i in hookers.layers.{i}
    path: str  # module path under diffusion_model.
    kind: str  # "attn1" or "attn2"
    block: tuple[str, int]  # transformer_options["block"] of the UNet block holding it
    transformer_index: int  # transformer_options["block_index"]

    @property
    def replace_key(self) -> tuple[str, int, int]:
        return (self.block[0], self.block[1], self.transformer_index)


def sd15_layer_sites() -> tuple[LayerSite, ...]:
    """The 32 layers in state-dict order, with the keys ComfyUI's patches see them under."""
    sites = []
    for i, path in enumerate(registry.SD15_ATTENTION_LAYERS):
        m = re.fullmatch(r"(input_blocks|middle_block|output_blocks)(?:\.(\d+))?\.1\.transformer_blocks\.(\d+)\.(attn[12])",
                         path)
        if m is None:
            raise RuntimeError(f"unexpected SD1.5 attention layer path {path!r} in the registry")
        group, number, transformer_index, kind = m.groups()
        sites.append(LayerSite(i, path, kind, (_BLOCK_NAMES[group], int(number or 0)), int(transformer_index)))
    return tuple(sites)


def layer_shapes(get_attention: Callable[[str], nn.Module], sites: Sequence[LayerSite]) -> list[tuple[int, int]]:
    """(channels, context channels) of each hooked attention module, read from the model itself."""
    shapes = []
    for site in sites:
        module = get_attention(site.path)
        if not (hasattr(module, "to_q") and hasattr(module, "to_k") and hasattr(module, "heads")):
            raise LayerStackError(f"diffusion_model.{site.path} is a {type(module).__name__}, not an attention module")
        shapes.append((int(module.to_q.out_features), int(module.to_k.in_features)))
    return shapes


# --- loading ---------------------------------------------------------------------------------------------------------

def build_weights(entry: registry.LayerFile, get_attention: Callable[[str], nn.Module], *,
                  device: torch.device | str = "cpu") -> SharingWeights:
    """Empty (uninitialised) modules shaped to the model's attention layers."""
    sites = sd15_layer_sites()
    with torch.device(device):
        return SharingWeights(layer_shapes(get_attention, sites), entry.frames, entry.uses_control)


def load_weights(entry: registry.LayerFile, state_dict: Mapping[str, torch.Tensor],
                 get_attention: Callable[[str], nn.Module], *, dtype: torch.dtype, source: str) -> SharingWeights:
    """Strict load: every tensor of the file has its slot with the model's shape, and nothing is missing."""
    weights = build_weights(entry, get_attention, device="meta")
    expected = {k: tuple(v.shape) for k, v in weights.state_dict().items()}
    missing, unexpected, wrong = state_dict_mismatch(expected, state_dict)
    missing, unexpected = sorted(missing), sorted(unexpected)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        if wrong:
            k, want, got = wrong[0]
            parts.append(f"{len(wrong)} tensor(s) of the wrong shape, e.g. {k}: the model needs {list(want)}, "
                         f"the file has {list(got)}")
        raise LayerStackError(f"{source}: does not fit this model as {entry.describe()}: {'; '.join(parts)}. "
                              f"Attention-sharing files fit SD1.5 UNets only.")
    weights.load_state_dict({k: state_dict[k].to(dtype) for k in expected}, strict=True, assign=True)
    if weights.kwargs_encoder is not None:
        weights.kwargs_encoder.float()  # small, runs once per sampling; fp32 as in the reference
    return weights.requires_grad_(False).eval()


# --- attention helpers -----------------------------------------------------------------------------------------------

def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, *,
                      max_rows: int = MAX_ATTENTION_ROWS, **kwargs) -> torch.Tensor:
    """ComfyUI's attention on [B, tokens, heads·dim], split along the batch so no call exceeds max_rows B·heads."""
    from comfy.ldm.modules import attention  # the backend ComfyUI picked at start-up (xformers, sage, pytorch, ...)

    rows = max(1, max_rows // heads)
    if q.shape[0] <= rows:
        return attention.optimized_attention(q, k, v, heads, **kwargs)
    return torch.cat([attention.optimized_attention(q[s:s + rows], k[s:s + rows], v[s:s + rows], heads, **kwargs)
                      for s in range(0, q.shape[0], rows)])


# --- the per-frame LoRA terms and the temporal branch, in forms that are cheaper to run -----------------------------
#
# Both are exact rewritings of the reference's arithmetic (docs/FORMATS.md#attention-sharing-unit), built from the
# file's weights once per sampling run and activation dtype/device (`Derived`), never per call:
# - LoRA term up·down·x: when in·out <= rank·(in+out) the merged [out, in] matrix up·down is the cheaper product per
#   token (the reference merges W + up·down on every call); else down then up. All frames in one batched product.
# - temporal branch o(attention(q(i(n)), k(i(n)), v(i(n)))): i folds into q, k and v (q·i, q·b_i + b_q, ...); with
#   one frame the attention returns v, so o·v·i is a single matrix.
# Products are taken in at least float32, then cast to the activations' dtype.

def _exact_dtype(*tensors: torch.Tensor) -> torch.dtype:
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def lora_form(in_features: int, out_features: int, rank: int) -> str:
    """"merged" when one [out, in] product per token costs no more multiply-adds than down [rank, in] then up."""
    return "merged" if in_features * out_features <= rank * (in_features + out_features) else "low_rank"


@dataclass(frozen=True, eq=False)
class FrameTerms:
    """The per-frame LoRA terms of one or more projections reading the same input, for one dtype and device.

    merged: [F', sum of outs, in] (up_f·down_f of each projection, stacked along out), or None;
    low_rank: per projection (down [F', rank, in], up [F', out, rank]) when not merged;
    first: the first frame they cover (F' = F - first): 1 when the weight already carries frame 0's up·down, and the
    terms are then the differences up_f·down_f - up_0·down_0 (merged form only)."""

    merged: torch.Tensor | None
    low_rank: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    outs: tuple[int, ...]
    first: int = 0


def frame_terms(lora_lists: Sequence[nn.ModuleList], like: torch.Tensor, form: str | None = None, *,
                frame0_in_weight: bool = False) -> FrameTerms:
    downs = [torch.stack([lora.down.weight for lora in loras]) for loras in lora_lists]  # [F, r, in]
    ups = [torch.stack([lora.up.weight for lora in loras]) for loras in lora_lists]  # [F, out, r]
    outs = tuple(int(up.shape[1]) for up in ups)
    rank, in_features = int(downs[0].shape[1]), int(downs[0].shape[2])
    if frame0_in_weight or (form or lora_form(in_features, max(outs), rank)) == "merged":
        exact = _exact_dtype(*downs, *ups)
        products = [torch.bmm(up.to(like.device, exact), down.to(like.device, exact)) for down, up in zip(downs, ups)]
        if frame0_in_weight:
            products = [p[1:] - p[:1] for p in products]
        return FrameTerms(torch.cat(products, dim=1).to(like.dtype), (), outs, int(frame0_in_weight))
    return FrameTerms(None, tuple((_cast(d, like), _cast(u, like)) for d, u in zip(downs, ups)), outs)


def frame0_weight_delta(lora: LoRA, weight: torch.Tensor) -> torch.Tensor:
    """Frame 0's up·down [out, in], in at least float32 on the weight's device: what a Frame0Weight adds."""
    exact = _exact_dtype(lora.up.weight, lora.down.weight)
    return lora.up.weight.to(weight.device, exact) @ lora.down.weight.to(weight.device, exact)


def frame_term_values(terms: FrameTerms, x: torch.Tensor, frames: int) -> list[torch.Tensor]:
    """The LoRA terms of x [N, tokens, in] for the frame of each sample (n = b·F + f), each [F, b, tokens, out]
    (frames from terms.first on: [F - first, b, tokens, out]).

    Each is a view of a [b, F, tokens, out] tensor, the samples' own order: one product per set reads that set's F
    frames where they lie and plus_frame_term adds the result without a transposed copy."""
    tokens = x.shape[1]
    if frames == 1:
        sets = x.reshape(1, 1, -1, x.shape[-1])
    else:
        sets = x.reshape(-1, frames, tokens, x.shape[-1])[:, terms.first:]
    if terms.merged is not None:
        ys = _per_set(sets, (terms.merged.transpose(1, 2),)).split(terms.outs, dim=-1)
    else:
        ys = [_per_set(sets, (down.transpose(1, 2), up.transpose(1, 2))) for down, up in terms.low_rank]
    return [y.reshape(-1, frames - terms.first, tokens, y.shape[-1]).transpose(0, 1) for y in ys]


def _per_set(sets: torch.Tensor, chain: Sequence[torch.Tensor]) -> torch.Tensor:
    """sets [b, F, rows, in] times the per-frame matrices chain[0] @ chain[1] ... ([F, in, mid], [F, mid, out])."""
    out = sets.new_empty(*sets.shape[:3], chain[-1].shape[-1])
    for x, y in zip(sets, out):
        for matrix in chain[:-1]:
            x = torch.bmm(x, matrix)
        torch.bmm(x, chain[-1], out=y)
    return out


def plus_frame_term(base: torch.Tensor, term: torch.Tensor, frames: int | None = None) -> torch.Tensor:
    """base [N, T, out] + a term [F', b, T, out] of frame_term_values for the last F' of the F frames (F' = F unless
    frames says otherwise), in one pass (no copy of the term)."""
    frames = frames or term.shape[0]
    if frames == 1:
        return base + term[0]
    first = frames - term.shape[0]
    if first == 0:
        return (base.unflatten(0, (-1, frames)) + term.transpose(0, 1)).flatten(0, 1)
    out = base.clone()
    out.unflatten(0, (-1, frames))[:, first:] += term.transpose(0, 1)
    return out


@dataclass(frozen=True, eq=False)
class TemporalWeights:
    """The temporal branch's weights for one dtype and device: the norm, then either q/k/v with i folded in, stacked
    into one [3C, C] linear, and o (several frames), or the single matrix o·v·i (one frame)."""

    norm: tuple[torch.Tensor, torch.Tensor, float]
    qkv: tuple[torch.Tensor, torch.Tensor]  # (weight, bias) of q, k and v stacked; or of o·v·i alone
    out: tuple[torch.Tensor, torch.Tensor] | None


def temporal_weights(layer: SharingLayer, frames: int, like: torch.Tensor) -> TemporalWeights:
    exact = _exact_dtype(layer.temporal_i.weight)

    def wb(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        return linear.weight.to(like.device, exact), linear.bias.to(like.device, exact)

    def then(outer: tuple, inner: tuple) -> tuple[torch.Tensor, torch.Tensor]:  # outer(inner(x)) as one linear
        return outer[0] @ inner[0], outer[0] @ inner[1] + outer[1]

    def cast(pair: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        return pair[0].to(like.dtype), pair[1].to(like.dtype)

    norm = (_cast(layer.temporal_n.weight, like), _cast(layer.temporal_n.bias, like), layer.temporal_n.eps)
    i = wb(layer.temporal_i)
    if frames == 1:  # softmax over one key is exactly 1: the attention returns v
        return TemporalWeights(norm, cast(then(wb(layer.temporal_o), then(wb(layer.temporal_v), i))), None)
    qkv = [then(wb(m), i) for m in (layer.temporal_q, layer.temporal_k, layer.temporal_v)]
    stacked = (torch.cat([w for w, _ in qkv]), torch.cat([b for _, b in qkv]))
    return TemporalWeights(norm, cast(stacked), cast(wb(layer.temporal_o)))


def temporal_attention(layer: SharingLayer, hidden: torch.Tensor, frames: int, heads: int,
                       max_rows: int = MAX_ATTENTION_ROWS, weights: TemporalWeights | None = None) -> torch.Tensor:
    """The cross-frame branch: each token attends to the same token in the other frames of its group. weights: the
    derived weights when the caller keeps them (the patches: once per sampling run), else derived here."""
    w = weights or temporal_weights(layer, frames, hidden)
    x = F.layer_norm(hidden, hidden.shape[-1:], *w.norm)
    if w.out is None:
        return F.linear(x, *w.qkv)
    qkv = F.linear(x, *w.qkv).unflatten(0, (-1, frames))  # [b, F, tokens, 3C]: a set's frames side by side
    x = frames_attention(*qkv.chunk(3, dim=-1), heads, max_rows=max_rows)
    return F.linear(x.flatten(0, 1), *w.out)


def frames_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, *,
                     max_rows: int = MAX_ATTENTION_ROWS) -> torch.Tensor:
    """Softmax attention over the few frames of a group at each token, q/k/v [b, F, tokens, heads·dim], written out
    elementwise: with F <= 3 keys the F×F scores are cheaper as products and sums than through a batched attention
    kernel (about 4× on CPU), and they need no (b f) -> (b tokens) transpose. Computed in at least float32, in chunks
    of max_rows // heads (set, token) rows."""
    sets, frames, tokens, channels = q.shape
    dim = channels // heads
    exact = _exact_dtype(q)
    step = max(1, max_rows // (heads * sets))
    out = []
    for s in range(0, tokens, step):
        qh, kh, vh = (t[:, :, s:s + step].to(exact).unflatten(-1, (heads, dim)) for t in (q, k, v))  # b F t h d
        scores = (qh.unsqueeze(2) * kh.unsqueeze(1)).sum(-1) * dim ** -0.5  # [b, F query, F key, t, heads]
        weights = scores.softmax(dim=2)
        out.append((weights.unsqueeze(-1) * vh.unsqueeze(1)).sum(2).flatten(-2).to(q.dtype))
    return out[0] if len(out) == 1 else torch.cat(out, dim=2)


class Derived:
    """Weights derived from the file's for one sampling run (frame terms, temporal weights), by layer, role, dtype and
    device: built on first use, dropped with the run, so nothing outlives it on the model or across devices."""

    def __init__(self):
        self._cache: dict[tuple, object] = {}

    def get(self, key: tuple, build: Callable[[], object]):
        value = self._cache.get(key)
        if value is None:
            with torch.no_grad():
                value = self._cache[key] = build()
        return value


def repeat_tokens(context: torch.Tensor, tokens: int) -> torch.Tensor:
    """Context repeated along tokens to `tokens` (a multiple of its length): attention over k copies of every key and
    value gives the same result, which is how ComfyUI itself batches prompts of 77 and 154 tokens together."""
    return context if context.shape[1] == tokens else context.repeat(1, tokens // context.shape[1], 1)


def positive_samples(cond_or_uncond: Sequence[int], batch: int, device: torch.device) -> torch.Tensor:
    """Bool [batch]: which samples come from the positive prompt (chunk index 0 of ComfyUI's cond batching)."""
    chunk = batch // len(cond_or_uncond)
    return torch.tensor([c == 0 for c in cond_or_uncond], device=device).repeat_interleave(chunk)


# --- per-sampling state ----------------------------------------------------------------------------------------------

@dataclass(eq=False)
class SamplingRun:
    """What one sampling run adds to the patch; it lives in that run's transformer_options only, never on a node."""

    sigma_start: float  # active while sigma_end <= sigma <= sigma_start
    sigma_end: float
    groups_per_chunk: int  # latent batch / frames: one cond (or uncond) chunk of the model's batch
    control_image: torch.Tensor | None = None  # [n, 3, H, W] in [0, 1], fitted to the generation size
    maps: dict[int, torch.Tensor] | None = None  # control encoder output, by token count
    features: dict[tuple, torch.Tensor] = field(default_factory=dict)  # per (layer, dtype, device): [F, n, tokens, C]
    derived: Derived = field(default_factory=Derived)  # frame terms and temporal weights of this run
    # One model call hands every block the same sigmas and context tensors: decided / built once per call, not per layer.
    _sigmas: torch.Tensor | None = field(default=None, init=False, repr=False)
    _active: bool = field(default=True, init=False, repr=False)
    _contexts: tuple = field(default=(), init=False, repr=False)  # (context, cond_or_uncond, with layer prompts)

    def __deepcopy__(self, memo):
        return self

    def active_at(self, sigmas: torch.Tensor) -> bool:
        if sigmas is not self._sigmas:
            # One read (a device sync on GPUs) per model call.
            self._sigmas, self._active = sigmas, self.sigma_end <= float(sigmas.max()) <= self.sigma_start
        return self._active

    def context_for(self, context: torch.Tensor, cond_or_uncond: Sequence[int],
                    build: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = tuple(cond_or_uncond)
        for seen, seen_key, built in self._contexts:
            if seen is context and seen_key == key:
                return built
        built = build()
        self._contexts = (*self._contexts[-1:], (context, key, built))  # the context and the value of one call
        return built

    def control_maps(self, encoder: ControlEncoder, device: torch.device) -> dict[int, torch.Tensor]:
        # Encoded on first use, when ComfyUI has already moved the weights to the sampling device.
        if self.maps is None:
            with torch.no_grad():
                self.maps = encoder(self.control_image.to(device=device, dtype=torch.float32) * 2.0 - 1.0)
        return self.maps


@dataclass(eq=False)
class ModelCall:
    """One model call (UNet forward) while the patches are active, for the weights that carry frame 0's LoRA."""

    derived: Derived  # the run's derived weights (a fresh one outside a sampler)
    folded: set[tuple[int, str]] = field(default_factory=set)  # (layer, projection) whose Frame0Weight ran


@dataclass(eq=False)
class _Call:
    """Tensors of one attention call, carried from the before- to the replace- and after-patch in extra_options."""

    site: LayerSite
    h: torch.Tensor  # the block's normed input, as this patch received it
    h_in: torch.Tensor  # h plus control features: what to_q saw
    control: torch.Tensor | None  # control features, [N, tokens, C]
    context: torch.Tensor  # what to_k saw
    value: torch.Tensor  # what to_v saw
    attended: bool = False
    attention_out: torch.Tensor | None = None  # attention output before to_out


# --- the patches -----------------------------------------------------------------------------------------------------

class AttentionSharing:
    """One applied file: weights, per-layer prompts, control image and schedule. Immutable once built; the patch
    objects below all point at it."""

    def __init__(self, entry: registry.LayerFile, weights: SharingWeights, *, node: str,
                 layer_prompts: Sequence[torch.Tensor | None], control_image: torch.Tensor | None,
                 resize_mode: ResizeMode, start_percent: float, stop_percent: float,
                 control_input: str = "control_image"):
        self.entry = entry
        self.weights = weights
        self.frames = entry.frames
        self.node = node
        self.layer_prompts = tuple(layer_prompts)  # per frame: [1, tokens, 768] replacing the positive prompt, or None
        self.control_image = control_image  # IMAGE [n, H, W, 3|4] as given; fitted per run
        self.control_input = control_input  # the calling node's name for it, for errors raised while sampling
        self.resize_mode = resize_mode
        self.start_percent = start_percent
        self.stop_percent = stop_percent
        self.sites = sd15_layer_sites()
        self._by_block = {(s.kind, s.block, s.transformer_index): s for s in self.sites}
        # The one mutable part: the model call running now, when attach() put frame 0's LoRA into the weights
        # (ModelCallWrapper sets it, Frame0Weight reads it). ComfyUI runs one model call at a time.
        self.model_call: ModelCall | None = None

    def __deepcopy__(self, memo):
        return self

    @property
    def layers(self) -> nn.ModuleList:
        return self.weights.hookers.layers

    # which calls are ours and active

    def site_of(self, kind: str, extra_options: dict) -> LayerSite | None:
        block = extra_options.get("block")
        if block is None:
            return None
        return self._by_block.get((kind, tuple(block), int(extra_options.get("block_index", 0))))

    def is_active(self, extra_options: dict) -> bool:
        run = extra_options.get(RUN_KEY)
        sigmas = extra_options.get("sigmas")
        if run is None:
            needs_run = (self.start_percent, self.stop_percent) != (0.0, 1.0) or self.entry.uses_control \
                or any(p is not None for p in self.layer_prompts)
            if needs_run:
                raise LayerStackError(
                    f"{self.node}: the model ran outside a ComfyUI sampler (no sampling run was prepared), so the "
                    f"control image, layer prompts or start/stop range cannot be applied. Sample it with KSampler or "
                    f"SamplerCustom.")
            return True
        if sigmas is None:
            return True
        return run.active_at(sigmas)

    def derived(self, extra_options: dict) -> Derived:
        run = extra_options.get(RUN_KEY)
        return run.derived if run is not None else Derived()  # outside a sampler: nothing to keep it in

    def frame_terms(self, derived: Derived, index: int, roles: tuple[str, ...], x: torch.Tensor,
                    frame0_in_weight: bool = False) -> FrameTerms | None:
        """The terms still to add for these projections; None when there are none (one frame, already in the
        weight)."""
        if frame0_in_weight and self.frames == 1:
            return None
        layer = self.layers[index]
        return derived.get((index, roles, frame0_in_weight, x.dtype, x.device),
                           lambda: frame_terms([getattr(layer, f"to_{r}_lora") for r in roles], x,
                                               frame0_in_weight=frame0_in_weight))

    def frame0_in_weight(self, index: int, role: str) -> bool:
        """Whether this model call's weight of this projection carries frame 0's LoRA (its Frame0Weight ran)."""
        call = self.model_call
        return call is not None and (index, role) in call.folded

    # 1. before the attention

    def before(self, kind: str, n: torch.Tensor, context: torch.Tensor, value: torch.Tensor, extra_options: dict):
        site = self.site_of(kind, extra_options)
        if site is None or not self.is_active(extra_options):
            return n, context, value
        if n.shape[0] % self.frames:
            raise self.batch_error(f"a model batch of {n.shape[0]}")
        control = self.control_features(site, n, extra_options[RUN_KEY]) if self.entry.uses_control else None
        h_in = n if control is None else n + control
        if kind == "attn1":
            # Self-attention attends to its own (control-augmented) input unless an earlier patch gave it another.
            new_context = h_in if context is n else context
            new_value = h_in if value is n else value
        else:
            new_context = self.with_layer_prompts(context, extra_options)
            new_value = new_context if value is context else self.with_layer_prompts(value, extra_options)
        extra_options[_STASH_KEY[kind]] = _Call(site, n, h_in, control, new_context, new_value)
        return h_in, new_context, new_value

    def batch_error(self, got: str, hint: str = "") -> LayerStackError:
        return node_error(self.node, "latent batch", f"a multiple of {self.frames} ({self.entry.id} generates "
                          f"{self.frames} frames per set: {', '.join(self.entry.outputs)}){hint}", got)

    def control_features(self, site: LayerSite, n: torch.Tensor, run: SamplingRun) -> torch.Tensor:
        """Control features for every sample of n [N, tokens, C]: frame f's conv of the map of this resolution."""
        key = (site.index, n.dtype, n.device)
        features = run.features.get(key)
        if features is None:
            maps = run.control_maps(self.weights.kwargs_encoder, n.device)
            feature_map = maps.get(n.shape[1])
            if feature_map is None:
                raise LayerStackError(
                    f"{self.node}: diffusion_model.{site.path} sees {n.shape[1]} tokens but the control image gives "
                    f"maps of {sorted(maps)} tokens; the UNet input does not have the sampled latent's size "
                    f"(area conditioning or a tiled sampler?).")
            feature_map = feature_map.to(n.dtype)
            convs = self.layers[site.index].control_convs
            with torch.no_grad():
                features = torch.stack([
                    _conv2d(convs[f][2], F.silu(_conv2d(convs[f][0], feature_map))).flatten(2).transpose(1, 2)
                    for f in range(self.frames)])  # [F, images, tokens, C]
            run.features[key] = features
        index = torch.arange(n.shape[0], device=n.device)
        image = (index // self.frames) % run.groups_per_chunk if features.shape[1] > 1 else torch.zeros_like(index)
        return features[index % self.frames, image]

    def with_layer_prompts(self, context: torch.Tensor, extra_options: dict) -> torch.Tensor:
        """Cross-attention context with frame f's positive samples replaced by that layer's prompt, if it has one."""
        if not any(p is not None for p in self.layer_prompts):
            return context
        run = extra_options.get(RUN_KEY)
        if run is not None:
            return run.context_for(context, extra_options["cond_or_uncond"],
                                   lambda: self._with_layer_prompts(context, extra_options))
        return self._with_layer_prompts(context, extra_options)

    def _with_layer_prompts(self, context: torch.Tensor, extra_options: dict) -> torch.Tensor:
        prompts = [p for p in self.layer_prompts if p is not None]
        tokens = math.lcm(context.shape[1], *(p.shape[1] for p in prompts))
        out = repeat_tokens(context, tokens).clone()
        positive = positive_samples(extra_options["cond_or_uncond"], context.shape[0], context.device)
        frame = torch.arange(context.shape[0], device=context.device) % self.frames
        for f, prompt in enumerate(self.layer_prompts):
            if prompt is not None:
                chosen = positive & (frame == f)
                out[chosen] = repeat_tokens(prompt, tokens).to(out)
        return out

    # 2. the attention itself

    def attention(self, site: LayerSite, inner: Callable | None, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  extra_options: dict) -> torch.Tensor:
        call = extra_options.get(_STASH_KEY[site.kind])
        if call is not None and call.site == site and not call.attended:
            # attended guards a chain that calls back into this patch: the LoRA terms go in once
            call.attended = True
            derived = self.derived(extra_options)
            # q, k and v that read one tensor (and agree on frame 0's place): one product
            by_input: dict[tuple, tuple[torch.Tensor, bool, list[str]]] = {}
            for role, x in (("q", call.h_in), ("k", call.context), ("v", call.value)):
                folded = self.frame0_in_weight(site.index, role)
                by_input.setdefault((id(x), folded), (x, folded, []))[2].append(role)
            new = {"q": q, "k": k, "v": v}
            for x, folded, roles in by_input.values():
                terms = self.frame_terms(derived, site.index, tuple(roles), x, folded)
                if terms is not None:
                    for role, value in zip(roles, frame_term_values(terms, x, self.frames)):
                        new[role] = plus_frame_term(new[role], value, self.frames)
            q, k, v = new["q"], new["k"], new["v"]
        if inner is not None:
            out = inner(q, k, v, extra_options)
        else:
            out = chunked_attention(q, k, v, extra_options["n_heads"], attn_precision=extra_options.get("attn_precision"),
                                    transformer_options=extra_options)
        if call is not None and call.site == site:
            call.attention_out = out
        return out

    # 3. after to_out

    def after(self, kind: str, out: torch.Tensor, extra_options: dict) -> torch.Tensor:
        call = extra_options.pop(_STASH_KEY[kind], None)
        if call is None:
            return out
        if call.attention_out is None:
            raise LayerStackError(
                f"{self.node}: the attention of diffusion_model.{call.site.path} did not run through LayerStack's "
                f"attention patch; a node applied to this model removed it. Apply that node before this one.")
        index = call.site.index
        layer = self.layers[index]
        derived = self.derived(extra_options)
        x = call.attention_out
        terms = self.frame_terms(derived, index, ("out",), x, self.frame0_in_weight(index, "out"))
        y = out if terms is None else plus_frame_term(out, frame_term_values(terms, x, self.frames)[0], self.frames)
        if call.control is not None:
            y = y + call.control
        # The reference returns hidden - h with hidden = h + control + attention; then its temporal branch adds on top.
        weights = derived.get((index, "temporal", y.dtype, y.device),
                              lambda: temporal_weights(layer, self.frames, y))
        return y + temporal_attention(layer, call.h + y, self.frames, extra_options["n_heads"], weights=weights)

    # sampling run

    def prepare_run(self, model_sampling, noise_shape: Sequence[int]) -> SamplingRun:
        """Checks the batch before anything is sampled and builds this run's state."""
        batch = int(noise_shape[0])
        if batch % self.frames:
            below = batch - batch % self.frames
            nearest = " or ".join(str(b) for b in (below, below + self.frames) if b > 0)
            raise self.batch_error(f"{batch}", f", e.g. {nearest}")
        groups = batch // self.frames
        control = None
        if self.control_image is not None:
            images = self.control_image.shape[0]
            if images not in (1, groups):
                raise node_error(self.node, self.control_input, f"1 image or one per generated set ({groups} = the "
                                 f"sampled latent batch {batch} / {self.frames} frames; checked when sampling)",
                                 f"{images} images")
            height, width = int(noise_shape[-2]) * LATENT_SCALE, int(noise_shape[-1]) * LATENT_SCALE
            fitted = fit_image_to_size(composite_on_grey(self.control_image), width, height, self.resize_mode)
            control = fitted.movedim(-1, 1).float().cpu()
        return SamplingRun(model_sampling.percent_to_sigma(self.start_percent),
                           model_sampling.percent_to_sigma(self.stop_percent), groups, control)

    def install(self, transformer_options: dict) -> None:
        """Our replace patch at every site, wrapping whatever replace patch is there now (ours stays outermost)."""
        replace = transformer_options.setdefault("patches_replace", {})
        for site in self.sites:
            slots = replace.setdefault(site.kind, {})
            current = slots.get(site.replace_key)
            if not (isinstance(current, SharedAttention) and current.sharing is self):
                slots[site.replace_key] = SharedAttention(self, site, current)


class _Patch:
    def __init__(self, sharing: AttentionSharing):
        self.sharing = sharing

    def __deepcopy__(self, memo):
        return self  # immutable; ModelPatcher.clone deep-copies model_options, which must not copy the weights


class BeforeAttention(_Patch):
    """attn1_patch / attn2_patch: (n, context, value, extra_options) -> (n, context, value)."""

    def __init__(self, sharing: AttentionSharing, kind: str):
        super().__init__(sharing)
        self.kind = kind

    def __call__(self, n, context, value, extra_options):
        return self.sharing.before(self.kind, n, context, value, extra_options)


class SharedAttention(_Patch):
    """attn1 / attn2 replace patch of one site: (q, k, v, extra_options) -> attention output before to_out."""

    def __init__(self, sharing: AttentionSharing, site: LayerSite, inner: Callable | None):
        super().__init__(sharing)
        self.site = site
        self.inner = inner

    def __call__(self, q, k, v, extra_options):
        return self.sharing.attention(self.site, self.inner, q, k, v, extra_options)


class AfterAttention(_Patch):
    """attn1_output_patch / attn2_output_patch: (out, extra_options) -> out."""

    def __init__(self, sharing: AttentionSharing, kind: str):
        super().__init__(sharing)
        self.kind = kind

    def __call__(self, out, extra_options):
        return self.sharing.after(self.kind, out, extra_options)


class SamplingWrapper(_Patch):
    """OUTER_SAMPLE wrapper: per-run state into the run's own model_options (the guider cloned them for this run and
    restores the originals afterwards, so nothing leaks into the MODEL the node returned)."""

    def __call__(self, executor, noise, *args, **kwargs):
        guider = executor.class_obj
        transformer_options = guider.model_options.setdefault("transformer_options", {})
        transformer_options[RUN_KEY] = self.sharing.prepare_run(guider.model_patcher.model.model_sampling, noise.shape)
        self.sharing.install(transformer_options)
        return executor(noise, *args, **kwargs)


class ModelCallWrapper(_Patch):
    """APPLY_MODEL wrapper: decides, with the patches' own gate, whether this model call runs the file, and if so
    lets the Frame0Weight wrappers put frame 0's LoRA into the weights for it."""

    def __call__(self, executor, *args, **kwargs):
        options = args[5] if len(args) > 5 else kwargs.get("transformer_options", {})
        sharing = self.sharing
        previous = sharing.model_call
        sharing.model_call = ModelCall(sharing.derived(options)) if sharing.is_active(options) else None
        try:
            return executor(*args, **kwargs)
        finally:
            sharing.model_call = previous


class Frame0Weight(_Patch):
    """Weight wrapper of one projection (to_q / to_k / to_v / to_out.0 of one layer): adds frame 0's up·down to the
    weight the layer computes with, during model calls that run the file. The block's own projection then gives frame
    0's samples (W + up_0·down_0)·x, the reference's merged weight, and the patches add only the other frames'
    differences (up_f·down_f - up_0·down_0)·x. It marks the model call, so a projection whose wrapper did not run
    (a host path without weight functions) gets the full terms instead."""

    def __init__(self, sharing: AttentionSharing, index: int, role: str):
        super().__init__(sharing)
        self.index = index
        self.role = role

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        call = self.sharing.model_call
        if call is None:
            return weight
        lora = getattr(self.sharing.layers[self.index], f"to_{self.role}_lora")[0]
        delta = call.derived.get((self.index, self.role, "frame0", weight.device),
                                 lambda: frame0_weight_delta(lora, weight))
        call.folded.add((self.index, self.role))
        return (weight.to(delta.dtype) + delta).to(weight.dtype)


# --- applying a file to a model --------------------------------------------------------------------------------------

def apply_attention_sharing(model, file_id: str, *, layer_conds: Mapping[str, object] | None = None,
                            control_image: torch.Tensor | None = None, start_percent: float = 0.0,
                            stop_percent: float = 1.0, resize_mode: ResizeMode | str = ResizeMode.CROP_AND_RESIZE,
                            node: str = DEFAULT_NODE, input_names: Mapping[str, str] | None = None,
                            sets: int | None = None):
    """A clone of `model` (an SD1.5 ModelPatcher) running one of the four attention-sharing files.

    layer_conds: layer name (as in the registry entry's outputs, e.g. "background") -> CONDITIONING or None; that
    layer's frame uses it instead of the positive prompt. control_image: IMAGE for fg2bg / bg2fg, fitted to the
    generation size by `resize_mode` when sampling. input_names maps "model", "file", "control_image" and layer names
    to the calling node's input names, for error messages. sets: the number of image sets when the caller knows
    it (its latent input): the control image count is then checked here rather than when sampling.
    """
    names = {"model": "model", "file": "file", "control_image": "control_image", **(input_names or {})}
    entry = _attention_sharing_entry(file_id, node, names["file"])
    _check_model(model, node, names["model"])
    require_schedule_window(node, start_percent, stop_percent)
    control_image = _check_control_image(entry, control_image, node, names["control_image"])
    if control_image is not None and sets is not None and control_image.shape[0] not in (1, sets):
        raise node_error(node, names["control_image"], f"1 image or one per set ({sets} = the latent's batch)",
                         f"{control_image.shape[0]} images")
    context_dim = int(model.get_model_object("diffusion_model." + registry.SD15_ATTENTION_LAYERS[1]).to_k.in_features)
    prompts = _layer_prompts(entry, layer_conds or {}, context_dim, node, names)

    def get_attention(path: str) -> nn.Module:
        return model.get_model_object("diffusion_model." + path)

    loaded = files.load_layer_file(entry)
    weights = load_weights(entry, loaded.state_dict, get_attention, dtype=unet_compute_dtype(model), source=loaded.path)
    sharing = AttentionSharing(entry, weights, node=node, layer_prompts=prompts, control_image=control_image,
                               resize_mode=ResizeMode(resize_mode), start_percent=float(start_percent),
                               stop_percent=float(stop_percent), control_input=names["control_image"])
    return attach(model, sharing)


def attach(model, sharing: AttentionSharing):
    """The patched clone: weights as an additional model (ComfyUI loads and offloads them with the UNet), the
    transformer patches and the sampling wrapper."""
    import comfy.patcher_extension

    patched = model.clone()
    weights_patcher = host.model_patcher_class()(sharing.weights, load_device=model.load_device,
                                                 offload_device=model.offload_device)
    patched.set_additional_models(OWNER_KEY, [weights_patcher])
    add_patches(patched.model_options["transformer_options"], sharing)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, OWNER_KEY, SamplingWrapper(sharing))
    for key, index, role in frame0_weight_keys(model, sharing):
        patched.add_weight_wrapper(key, Frame0Weight(sharing, index, role))
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, OWNER_KEY, ModelCallWrapper(sharing))
    return patched


def frame0_weight_keys(model, sharing: AttentionSharing) -> list[tuple[str, int, str]]:
    """(weight key, layer, projection) of every projection whose LoRA terms are in the merged form: folding frame 0
    into its weight saves frame 0's term outright. In the low-rank form the difference of two LoRAs would cost twice
    a term per sample, so those keep all terms on the activations."""
    keys = []
    for site in sharing.sites:
        module = model.get_model_object("diffusion_model." + site.path)
        for role, name in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("out", "to_out.0")):
            linear = module.get_submodule(name)
            if isinstance(getattr(linear, "scale_weight", None), torch.Tensor):
                continue  # scaled-fp8 layers of older hosts scale the weight after its wrappers: keep the terms
            if lora_form(int(linear.in_features), int(linear.out_features), RANK) == "merged":
                keys.append((f"diffusion_model.{site.path}.{name}.weight", site.index, role))
    return keys


def add_patches(transformer_options: dict, sharing: AttentionSharing) -> None:
    """The before/after patches (appended, as ModelPatcher.set_model_patch does) and the 32 replace patches."""
    patches = transformer_options.setdefault("patches", {})
    for kind in ("attn1", "attn2"):
        patches[f"{kind}_patch"] = patches.get(f"{kind}_patch", []) + [BeforeAttention(sharing, kind)]
        patches[f"{kind}_output_patch"] = patches.get(f"{kind}_output_patch", []) + [AfterAttention(sharing, kind)]
    sharing.install(transformer_options)


def unet_compute_dtype(model) -> torch.dtype:
    """The dtype the UNet computes in (its manual-cast dtype when weights are stored in another one)."""
    base = model.model
    return getattr(base, "manual_cast_dtype", None) or base.get_dtype()


def _attention_sharing_entry(file_id: str, node: str, input_name: str) -> registry.LayerFile:
    try:
        entry = registry.get(file_id)
    except KeyError:
        entry = None
    if entry is None or entry.kind is not registry.Kind.ATTENTION_SHARING:
        allowed = ", ".join(f.id for f in registry.files_of(kind=registry.Kind.ATTENTION_SHARING))
        got = f"{file_id!r}" + (f" ({entry.describe()})" if entry else " (not an official file)")
        raise node_error(node, input_name, f"an SD1.5 attention-sharing file ({allowed})", got)
    return entry


def _check_model(model, node: str, input_name: str) -> None:
    family = registry.family_of_model(model)
    if family is not registry.Family.SD15:
        raise node_error(node, input_name, "an SD1.5 model (attention-sharing files exist for SD1.5 only)",
                         f"a {registry.model_type_name(model)} model")
    if model.get_additional_models_with_key(OWNER_KEY):
        raise node_error(node, input_name, "a model without SD1.5 attention sharing",
                         "a model that already has it (apply one attention-sharing node per model)")


def _check_control_image(entry: registry.LayerFile, image, node: str, input_name: str) -> torch.Tensor | None:
    if not entry.uses_control:
        if image is not None:
            raise node_error(node, input_name, f"no control image ({entry.id} takes none)", "an image")
        return None
    if image is None:
        raise node_error(node, input_name, f"the {entry.inputs[0]} image {entry.id} generates from", "nothing")
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
        got = f"shape {list(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise node_error(node, input_name, "an IMAGE [batch, height, width, 3 or 4]", got)
    return image


def _layer_prompts(entry: registry.LayerFile, layer_conds: Mapping[str, object], context_dim: int, node: str,
                   names: Mapping[str, str]) -> list[torch.Tensor | None]:
    unknown = sorted(set(layer_conds) - set(entry.outputs))
    if unknown:
        raise node_error(node, "layer_conds", f"prompts for the layers {entry.id} generates ({', '.join(entry.outputs)})",
                         f"{', '.join(unknown)}")
    prompts = []
    for layer in entry.outputs:
        cond = layer_conds.get(layer)
        prompts.append(None if cond is None else prompt_embedding(cond, context_dim, node, names.get(layer, layer)))
    return prompts


def prompt_embedding(cond, context_dim: int, node: str, input_name: str) -> torch.Tensor:
    """The text embedding [1, tokens, context_dim] of a single-prompt CONDITIONING."""
    if isinstance(cond, torch.Tensor):
        embedding = cond
    else:
        if not isinstance(cond, (list, tuple)) or not cond or not isinstance(cond[0], (list, tuple)):
            raise node_error(node, input_name, "a CONDITIONING", type(cond).__name__)
        if len(cond) != 1:
            raise node_error(node, input_name, "a single prompt (one conditioning entry)",
                             f"{len(cond)} entries (combined or concatenated conditionings cannot replace one layer's "
                             f"prompt)")
        embedding = cond[0][0]
    if not isinstance(embedding, torch.Tensor) or embedding.ndim != 3 or embedding.shape[0] != 1 \
            or embedding.shape[2] != context_dim:
        got = f"shape {list(embedding.shape)}" if isinstance(embedding, torch.Tensor) else type(embedding).__name__
        raise node_error(node, input_name, f"an SD1.5 text embedding [1, tokens, {context_dim}]", got)
    return embedding.detach()
