"""The attention-sharing unit, checked against a direct re-computation of the reference unit (docs/FORMATS.md#attention-sharing-unit)
inside one ComfyUI BasicTransformerBlock, in float64 so the comparison is tight."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

DIM, HEADS, CONTEXT_DIM, CONTEXT_TOKENS = 64, 4, 32, 6
SIDE = 4  # 4x4 = 16 tokens


def _random_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 1.0 / math.sqrt(p.shape[1] if p.ndim > 1 else 16)
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale + (1.0 if "norm" in name else 0))
    return module


def _block():
    from comfy.ldm.modules.attention import BasicTransformerBlock

    block = BasicTransformerBlock(DIM, HEADS, DIM // HEADS, context_dim=CONTEXT_DIM, checkpoint=False)
    return _random_(block.double(), seed=1).eval()


@functools.cache
def _weights(frames: int, use_control: bool):
    from layerstack.models.attention_sharing import SharingWeights

    shapes = [(DIM, DIM if i % 2 == 0 else CONTEXT_DIM) for i in range(32)]
    with torch.device("meta"):
        weights = SharingWeights(shapes, frames, use_control)
    weights = weights.to_empty(device="cpu").double().eval()
    with torch.no_grad():
        for p in weights.parameters():
            p.zero_()
    for i in (0, 1):  # the two layers of input block 1, the block these tests run
        _random_(weights.hookers.layers[i], seed=2 + i)
    return weights


def _sharing(frames: int, use_control: bool, prompts=None, start=0.0, stop=1.0):
    from layerstack.models import registry
    from layerstack.models.attention_sharing import AttentionSharing
    from layerstack.models.conditioning_images import ResizeMode

    file_id = {(1, False): "layer_sd15_transparent_attn", (3, False): "layer_sd15_joint",
               (2, True): "layer_sd15_fg2bg"}[(frames, use_control)]
    weights = _weights(frames, use_control)
    return AttentionSharing(registry.get(file_id), weights, node="test", layer_prompts=prompts or [None] * frames,
                            control_image=None, resize_mode=ResizeMode.CROP_AND_RESIZE, start_percent=start,
                            stop_percent=stop)


def _options(sharing, batch, cond_or_uncond=(0, 1), sigma=1.0, control_maps=None):
    from layerstack.models.attention_sharing import RUN_KEY, SamplingRun, add_patches

    run = SamplingRun(sigma_start=1e9, sigma_end=0.0, groups_per_chunk=batch // len(cond_or_uncond) // sharing.frames)
    if control_maps is not None:
        run.maps = control_maps
    options = {"block": ("input", 1), "block_index": 0, "cond_or_uncond": list(cond_or_uncond),
               "sigmas": torch.full((batch // len(cond_or_uncond),), sigma, dtype=torch.float64), RUN_KEY: run}
    add_patches(options, sharing)
    return options


# --- the reference, written from docs/FORMATS.md#attention-sharing-unit, independent of the pack's code -----------------------------------

def _attention(q, k, v, heads):
    b, t, c = q.shape
    q, k, v = (x.reshape(b, -1, heads, c // heads).transpose(1, 2) for x in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(b, t, c)


def _merged(lora, base_weight):
    return base_weight + lora.up.weight @ lora.down.weight


def reference_unit(layer, module, h, context, frames, heads, cond_mark, overwrite=(), control_map=None):
    """hidden − h of the reference AttentionSharingUnit for input h [(b f), d, c]."""
    hidden = h.unflatten(0, (-1, frames)).transpose(0, 1)  # f b d c
    if control_map is not None:
        controls = []
        for f in range(frames):
            conv = layer.control_convs[f]
            c = conv[2](F.silu(conv[0](control_map)))
            controls.append(c.flatten(2).transpose(1, 2))
        hidden = hidden + torch.stack(controls)
    framed_context = hidden if context is None else context.unflatten(0, (-1, frames)).transpose(0, 1)
    marks = cond_mark.unflatten(0, (-1, frames)).transpose(0, 1)
    outs = []
    for f in range(frames):
        fcf = framed_context[f]
        if context is not None and f < len(overwrite) and overwrite[f] is not None:
            mark = marks[f][:, None, None]
            fcf = overwrite[f] * (1.0 - mark) + fcf * mark
        q = F.linear(hidden[f], _merged(layer.to_q_lora[f], module.to_q.weight))
        k = F.linear(fcf, _merged(layer.to_k_lora[f], module.to_k.weight))
        v = F.linear(fcf, _merged(layer.to_v_lora[f], module.to_v.weight))
        o = _attention(q, k, v, heads)
        outs.append(F.linear(o, _merged(layer.to_out_lora[f], module.to_out[0].weight), module.to_out[0].bias))
    hidden = (hidden + torch.stack(outs)).transpose(0, 1).flatten(0, 1)
    x = layer.temporal_i(layer.temporal_n(hidden))
    d = x.shape[1]
    x = x.unflatten(0, (-1, frames)).transpose(1, 2).flatten(0, 1)
    x = layer.temporal_o(_attention(layer.temporal_q(x), layer.temporal_k(x), layer.temporal_v(x), heads))
    hidden = hidden + x.unflatten(0, (-1, d)).transpose(1, 2).flatten(0, 1)
    return hidden - h


def reference_block(block, sharing, x, context, cond_mark, overwrite=(), control_map=None):
    layers = sharing.weights.hookers.layers
    frames = sharing.frames
    x = x + reference_unit(layers[0], block.attn1, block.norm1(x), None, frames, HEADS, cond_mark, (), control_map)
    x = x + reference_unit(layers[1], block.attn2, block.norm2(x), context, frames, HEADS, cond_mark, overwrite,
                           control_map)
    return x + block.ff(block.norm3(x))


def _inputs(batch, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, SIDE * SIDE, DIM, generator=g, dtype=torch.float64)
    context = torch.randn(batch, CONTEXT_TOKENS, CONTEXT_DIM, generator=g, dtype=torch.float64)
    return x, context


# --- tests -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames,groups", [(1, 1), (1, 2), (3, 1), (3, 2)])
def test_block_output_equals_reference(comfy_host, frames, groups):
    block, sharing = _block(), _sharing(frames, False)
    batch = 2 * groups * frames  # cond + uncond chunks
    x, context = _inputs(batch)
    with torch.no_grad():
        got = block(x, context=context, transformer_options=_options(sharing, batch))
        cond_mark = torch.tensor([0.0] * (batch // 2) + [1.0] * (batch // 2), dtype=torch.float64)
        want = reference_block(block, sharing, x, context, cond_mark)
        plain = block(x, context=context, transformer_options={})
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert (got - plain).abs().max() > 1e-3  # the unit did something


def test_block_output_with_control_and_layer_prompts_equals_reference(comfy_host):
    frames, groups = 2, 2
    g = torch.Generator().manual_seed(7)
    prompt = torch.randn(1, CONTEXT_TOKENS, CONTEXT_DIM, generator=g, dtype=torch.float64)
    sharing = _sharing(frames, True, prompts=[None, prompt])
    block = _block()
    batch = 2 * groups * frames
    x, context = _inputs(batch)
    control_map = torch.randn(1, 256, SIDE, SIDE, generator=g, dtype=torch.float64)
    with torch.no_grad():
        got = block(x, context=context, transformer_options=_options(sharing, batch,
                                                                      control_maps={SIDE * SIDE: control_map}))
        cond_mark = torch.tensor([0.0] * (batch // 2) + [1.0] * (batch // 2), dtype=torch.float64)
        want = reference_block(block, sharing, x, context, cond_mark, [None, prompt], control_map)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_one_control_image_per_set_reaches_its_own_set(comfy_host):
    """Control batch = sets per chunk: set s (in both the cond and the uncond chunk) gets control image s."""
    frames, groups = 2, 2
    sharing = _sharing(frames, True)
    block = _block()
    batch = 2 * groups * frames
    x, context = _inputs(batch)
    g = torch.Generator().manual_seed(8)
    maps = torch.randn(groups, 256, SIDE, SIDE, generator=g, dtype=torch.float64)
    with torch.no_grad():
        got = block(x, context=context, transformer_options=_options(sharing, batch, control_maps={SIDE * SIDE: maps}))
        for s in range(groups):
            rows = [chunk * groups * frames + s * frames + f for chunk in range(2) for f in range(frames)]
            mark = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
            want = reference_block(block, sharing, x[rows], context[rows], mark, (), maps[s:s + 1])
            torch.testing.assert_close(got[rows], want, rtol=1e-10, atol=1e-10)


def test_frame_grouping_is_b_times_frames_plus_f(comfy_host):
    from layerstack.models.attention_sharing import LoRA, frame_term_values, frame_terms, temporal_attention

    frames, groups, tokens, channels = 3, 4, 5, 8
    loras = torch.nn.ModuleList(LoRA(channels, channels, rank=channels) for _ in range(frames)).double()
    with torch.no_grad():
        for f, lora in enumerate(loras):
            lora.down.weight.copy_(torch.eye(channels))
            lora.up.weight.copy_(torch.eye(channels) * (f + 1))
    x = torch.randn(groups * frames, tokens, channels, dtype=torch.float64)
    with torch.no_grad():
        out = frame_term_values(frame_terms([loras], x), x, frames)[0].transpose(0, 1).flatten(0, 1)  # [N, T, C]
    for n in range(groups * frames):
        torch.testing.assert_close(out[n], x[n] * (n % frames + 1))  # sample n belongs to frame n mod F

    # the temporal branch mixes exactly the samples of one set: n // F
    layer = _sharing(frames, False).weights.hookers.layers[0]
    hidden = torch.randn(groups * frames, tokens, DIM, dtype=torch.float64)
    changed = hidden.clone()
    changed[4] += torch.randn(tokens, DIM, dtype=torch.float64)  # set 1 (samples 3, 4, 5), frame 1
    with torch.no_grad():
        diff = (temporal_attention(layer, changed, frames, HEADS) - temporal_attention(layer, hidden, frames, HEADS))
    moved = (diff.abs().amax(dim=(1, 2)) > 1e-9).nonzero().flatten().tolist()
    assert moved == [3, 4, 5]


def test_layer_prompt_replaces_only_its_frames_positive_context(comfy_host):
    from layerstack.models.attention_sharing import _STASH_KEY

    frames, groups = 3, 2
    g = torch.Generator().manual_seed(9)
    bg_prompt = torch.randn(1, CONTEXT_TOKENS, CONTEXT_DIM, generator=g, dtype=torch.float64)
    sharing = _sharing(frames, False, prompts=[None, bg_prompt, None])
    batch = 2 * groups * frames
    block = _block()
    x, context = _inputs(batch)
    options = _options(sharing, batch, cond_or_uncond=(1, 0))  # uncond chunk first: order must not matter
    seen = {}

    def spy(extra_options_out):
        def after(n, extra_options):
            seen["context"] = extra_options[_STASH_KEY["attn2"]].context.clone()
            return n
        return after

    options["patches"]["attn2_output_patch"].insert(0, spy(seen))
    with torch.no_grad():
        block(x, context=context, transformer_options=options)
    got = seen["context"]
    for n in range(batch):
        positive = n >= batch // 2
        if positive and n % frames == 1:
            torch.testing.assert_close(got[n], bg_prompt[0])
        else:
            torch.testing.assert_close(got[n], context[n])


def test_layer_prompt_of_other_length_is_repeated_to_a_common_length(comfy_host):
    """A 2×-long layer prompt (two CLIP chunks) works: the context is repeated to the common token count, which does
    not change attention (ComfyUI batches 77- and 154-token prompts the same way)."""
    frames, groups = 3, 1
    g = torch.Generator().manual_seed(10)
    prompt = torch.randn(1, 2 * CONTEXT_TOKENS, CONTEXT_DIM, generator=g, dtype=torch.float64)
    sharing = _sharing(frames, False, prompts=[prompt, None, None])
    block = _block()
    batch = 2 * groups * frames
    x, context = _inputs(batch)
    with torch.no_grad():
        got = block(x, context=context, transformer_options=_options(sharing, batch))
        cond_mark = torch.tensor([0.0] * (batch // 2) + [1.0] * (batch // 2), dtype=torch.float64)
        want = reference_block(block, sharing, x, context.repeat(1, 2, 1), cond_mark, [prompt])
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_outside_the_sigma_range_the_block_is_untouched(comfy_host):
    from layerstack.models.attention_sharing import RUN_KEY

    sharing = _sharing(3, False)
    block = _block()
    x, context = _inputs(6)
    options = _options(sharing, 6, sigma=2.0)
    options[RUN_KEY].sigma_start, options[RUN_KEY].sigma_end = 10.0, 5.0  # active for 10 >= sigma >= 5 only
    with torch.no_grad():
        plain = block(x, context=context, transformer_options={})
        off = block(x, context=context, transformer_options=options)
        options["sigmas"] = torch.full((3,), 7.0, dtype=torch.float64)
        on = block(x, context=context, transformer_options=options)
    assert torch.equal(off, plain)
    assert (on - plain).abs().max() > 1e-3


def test_chunked_attention_equals_one_call(comfy_host):
    from layerstack.models.attention_sharing import chunked_attention, temporal_attention

    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(10, 7, 16, generator=g, dtype=torch.float64) for _ in range(3))
    whole = chunked_attention(q, k, v, 4)
    torch.testing.assert_close(chunked_attention(q, k, v, 4, max_rows=12), whole)  # 3 samples x 4 heads per call
    torch.testing.assert_close(whole, _attention(q, k, v, 4))

    layer = _sharing(3, False).weights.hookers.layers[0]
    hidden = torch.randn(6, 16, DIM, generator=g, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(temporal_attention(layer, hidden, 3, HEADS, max_rows=8),
                                   temporal_attention(layer, hidden, 3, HEADS))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_runs_in_the_unet_dtype(comfy_host, dtype):
    """Weights kept in float64 here still work on half-precision activations (cast per call), and the result is the
    float64 result up to that precision."""
    block, sharing = _block(), _sharing(3, False)
    x, context = _inputs(6)
    with torch.no_grad():
        exact = block(x, context=context, transformer_options=_options(sharing, 6))
        low_block = _block().to(dtype)
        options = _options(sharing, 6)
        low = low_block(x.to(dtype), context=context.to(dtype), transformer_options=options)
    assert low.dtype == dtype
    assert torch.isfinite(low).all()
    assert (low.double() - exact).abs().max() / exact.abs().max() < 0.05


def test_outside_a_sampler_only_the_plain_mode_runs(comfy_host):
    """Without the sampling wrapper's run state there is no control image, schedule or prompt context: refuse."""
    from layerstack.errors import LayerStackError
    from layerstack.models.attention_sharing import RUN_KEY

    block = _block()
    x, context = _inputs(4)
    for sharing in (_sharing(2, True), _sharing(1, False, stop=0.5)):
        options = _options(sharing, 4)
        del options[RUN_KEY]
        with pytest.raises(LayerStackError, match="outside a ComfyUI sampler"), torch.no_grad():
            block(x, context=context, transformer_options=options)
    options = _options(_sharing(1, False), 4)
    del options[RUN_KEY]
    with torch.no_grad():
        assert torch.isfinite(block(x, context=context, transformer_options=options)).all()


@pytest.mark.parametrize("form", ["merged", "low_rank"])
def test_frame_terms_in_either_form_equal_down_then_up_per_frame(comfy_host, form):
    """The cheaper forms the patches run (merged up·down or down then up, all frames in one product; q/k/v fused when
    they read one input) equal each frame's LoRA applied to its own samples."""
    from layerstack.models.attention_sharing import LoRA, frame_term_values, frame_terms, plus_frame_term

    frames, groups, tokens, cin, cout, rank = 3, 2, 5, 12, 10, 4
    g = torch.Generator().manual_seed(12)
    lists = [_random_(torch.nn.ModuleList(LoRA(cin, cout, rank=rank) for _ in range(frames)).double(), seed=s)
             for s in (13, 14)]
    x = torch.randn(groups * frames, tokens, cin, generator=g, dtype=torch.float64)
    base = torch.randn(groups * frames, tokens, cout, generator=g, dtype=torch.float64)
    with torch.no_grad():
        terms = frame_terms(lists, x, form=form)
        assert (terms.merged is not None) == (form == "merged")
        got = [plus_frame_term(base, t) for t in frame_term_values(terms, x, frames)]
        for loras, out in zip(lists, got):
            want = torch.stack([base[n] + x[n] @ loras[n % frames].down.weight.T @ loras[n % frames].up.weight.T
                                for n in range(groups * frames)])
            torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)


def test_frames_attention_and_folded_temporal_weights_equal_the_plain_forms(comfy_host):
    from layerstack.models.attention_sharing import chunked_attention, frames_attention, temporal_attention

    g = torch.Generator().manual_seed(15)
    q, k, v = (torch.randn(10, 3, 16, generator=g, dtype=torch.float64) for _ in range(3))  # [rows, F, C]
    sets = [t.transpose(0, 1).unsqueeze(0) for t in (q, k, v)]  # one set: [1, F, rows as tokens, C]
    torch.testing.assert_close(frames_attention(*sets, 4)[0].transpose(0, 1), chunked_attention(q, k, v, 4),
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(frames_attention(*sets, 4, max_rows=12), frames_attention(*sets, 4))

    for frames in (1, 3):  # i folded into q/k/v (3 frames); o·v·i as one matrix (1 frame: the attention returns v)
        layer = _random_(_sharing(frames, False).weights.hookers.layers[0], seed=16)
        hidden = torch.randn(2 * frames, 16, DIM, generator=g, dtype=torch.float64)
        x = layer.temporal_i(layer.temporal_n(hidden))
        d = x.shape[1]
        x = x.unflatten(0, (-1, frames)).transpose(1, 2).flatten(0, 1)
        x = layer.temporal_o(_attention(layer.temporal_q(x), layer.temporal_k(x), layer.temporal_v(x), HEADS))
        want = x.unflatten(0, (-1, d)).transpose(1, 2).flatten(0, 1)
        with torch.no_grad():
            torch.testing.assert_close(temporal_attention(layer, hidden, frames, HEADS), want, rtol=1e-10, atol=1e-10)
