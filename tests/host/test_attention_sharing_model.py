"""Attention sharing on the fixture SD1.5 checkpoint, sampled in-process through ComfyUI's own sampler: the four
files load strictly and act, the base model stays bit-identical, other attention patches keep working, the schedule
gate, and the errors."""

from __future__ import annotations

import pytest
import torch

from fixtures.weights import assert_same_weights, weights_fingerprint

FILES = {"layer_sd15_transparent_attn": 1, "layer_sd15_joint": 3, "layer_sd15_fg2bg": 2, "layer_sd15_bg2fg": 2}


def _sample(model, positive, negative, batch, *, steps=1, seed=0):
    import comfy.sample

    latent = torch.zeros(batch, 4, 8, 8)  # 64x64 px
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, 2.0, "euler", "normal", positive, negative, latent,
                               disable_pbar=True, seed=seed)


def _control_image(batch=1, seed=0):
    return torch.rand(batch, 80, 96, 4, generator=torch.Generator().manual_seed(seed))  # RGBA, not 64x64


@pytest.fixture(scope="module")
def prompts(sd15):
    return sd15.encode("a glass bottle"), sd15.encode("blurry")


@pytest.fixture(scope="module", autouse=True)
def read_each_file_once(fixture_paths):
    """The tests apply the same few files many times; parsing each once keeps this module fast (apply still builds
    and strictly loads the modules every time)."""
    import functools

    from layerstack.models import files

    with pytest.MonkeyPatch.context() as m:
        m.setattr(files, "load_layer_file", functools.cache(files.load_layer_file))
        yield


_SAMPLES: dict = {}


def _sample_once(key, model, prompts, batch, **kwargs):
    """Samples reused as references by several tests (same model, inputs and seed give the same result)."""
    if key not in _SAMPLES:
        _SAMPLES[key] = _sample(model, *prompts, batch, **kwargs)
    return _SAMPLES[key]


@pytest.fixture(scope="module")
def patched(sd15):
    """file id -> the fixture model with that file applied (defaults), built once."""
    return {file_id: _apply(sd15, file_id) for file_id in FILES}


def _apply(sd15, file_id, **kwargs):
    from layerstack.models.attention_sharing import apply_attention_sharing

    if registry_uses_control(file_id):
        kwargs.setdefault("control_image", _control_image())
    return apply_attention_sharing(sd15.model, file_id, node="test", **kwargs)


def registry_uses_control(file_id):
    from layerstack.models import registry

    return registry.get(file_id).uses_control


class CallLog:
    """An attn1/attn2 patch of 'another node': records what it saw, optionally changes the input."""

    def __init__(self, scale=1.0):
        self.calls = []
        self.scale = scale

    def __deepcopy__(self, memo):
        return self  # ModelPatcher.clone deep-copies patches; the log must stay the one the test reads

    def __call__(self, n, context, value, extra_options):
        from layerstack.models.attention_sharing import _STASH_KEY

        self.calls.append((float(extra_options["sigmas"].max()), _STASH_KEY["attn1"] in extra_options))
        return n * self.scale, context, value


@pytest.mark.parametrize("file_id", list(FILES))
def test_each_file_loads_strictly_and_changes_the_sample(fixture_paths, sd15, prompts, patched, file_id):
    import safetensors.torch

    from layerstack.models import registry

    entry = registry.get(file_id)
    on_disk = safetensors.torch.load_file(str(fixture_paths["layer_model_dir"] / entry.filename))
    assert len(on_disk) == entry.tensor_count  # 640 / 1152 / 1180

    weights = patched[file_id].get_additional_models_with_key("layerstack_attention_sharing")[0].model
    assert len(weights.state_dict()) == entry.tensor_count
    for key, tensor in weights.state_dict().items():  # every tensor of the file is in, unchanged but for the dtype
        assert torch.equal(tensor, on_disk[key].to(tensor.dtype)), key

    frames = FILES[file_id]
    base = _sample_once(("base", frames), sd15.model, prompts, frames)
    out = _sample_once(file_id, patched[file_id], prompts, frames)
    assert out.shape == base.shape and torch.isfinite(out).all()
    assert (out - base).abs().max() > 1e-3


def test_base_model_is_bit_identical_after_use(sd15, prompts):
    before = weights_fingerprint(sd15.model)
    options_before = repr(sd15.model.model_options)
    model = _apply(sd15, "layer_sd15_joint", layer_conds={"background": prompts[0]}, stop_percent=0.7)
    _sample(model, *prompts, 3, steps=2)
    assert_same_weights(before, sd15.model)
    assert repr(sd15.model.model_options) == options_before
    assert not sd15.model.get_additional_models()
    assert not any(sd15.model.wrappers.values())
    assert model.model is sd15.model.model  # shared weights, patched only through options


def test_another_attn1_patch_still_takes_effect(sd15, prompts, patched):
    alone = _sample_once("layer_sd15_joint", patched["layer_sd15_joint"], prompts, 3)

    after = patched["layer_sd15_joint"].clone()
    late = CallLog(scale=0.5)
    after.set_model_attn1_patch(late)
    with_late = _sample(after, *prompts, 3)
    assert late.calls and all(active for _, active in late.calls)  # ran inside our active attention calls
    assert (with_late - alone).abs().max() > 1e-3  # and its change reached the result

    first = sd15.model.clone()
    early = CallLog(scale=0.5)
    first.set_model_attn1_patch(early)
    from layerstack.models.attention_sharing import apply_attention_sharing

    both = apply_attention_sharing(first, "layer_sd15_joint", node="test")
    with_early = _sample(both, *prompts, 3)
    assert early.calls
    assert (with_early - alone).abs().max() > 1e-3


@pytest.mark.parametrize("order", ["before", "after"])
def test_replace_patch_of_another_node_is_chained_not_lost(sd15, prompts, patched, order):
    """An IPAdapter-style attn2 replace patch on the same keys: ours wraps it, whichever was applied first. With a
    replace patch that computes plain attention, the result is exactly the result without it."""
    from comfy.ldm.modules.attention import optimized_attention

    from layerstack.models.attention_sharing import apply_attention_sharing, sd15_layer_sites

    calls = []

    def plain_attention(q, k, v, extra_options):
        calls.append(extra_options["block"])
        return optimized_attention(q, k, v, extra_options["n_heads"], attn_precision=extra_options["attn_precision"])

    def add_replace(model):
        model = model.clone()
        for site in sd15_layer_sites():
            if site.kind == "attn2":
                model.set_model_attn2_replace(plain_attention, *site.replace_key)
        return model

    reference = _sample_once("layer_sd15_joint", patched["layer_sd15_joint"], prompts, 3)
    if order == "before":
        model = apply_attention_sharing(add_replace(sd15.model), "layer_sd15_joint", node="test")
    else:
        model = add_replace(patched["layer_sd15_joint"])
    out = _sample(model, *prompts, 3)
    assert sorted(set(calls)) == sorted({s.block for s in sd15_layer_sites()})  # reached at all 16 blocks
    torch.testing.assert_close(out, reference, rtol=0, atol=0)


def test_schedule_gate_follows_sigma(sd15, prompts):
    from layerstack.models.attention_sharing import RUN_KEY

    patched = _apply(sd15, "layer_sd15_transparent_attn", stop_percent=0.5)
    log = CallLog()
    patched.set_model_attn1_patch(log)
    sigma_end = sd15.model.model.model_sampling.percent_to_sigma(0.5)
    _sample(patched, *prompts, 1, steps=3)
    sigmas = sorted({s for s, _ in log.calls}, reverse=True)
    assert len(sigmas) == 3 and sigmas[0] > sigma_end > sigmas[-1]  # the schedule crosses the stop point
    for sigma, active in log.calls:
        assert active == (sigma >= sigma_end), (sigma, sigma_end)
    assert RUN_KEY not in patched.model_options["transformer_options"]  # run state stayed in the run


def test_stop_at_zero_is_the_base_model_exactly(sd15, prompts):
    base = _sample_once(("base", 2), sd15.model, prompts, 2)
    off = _sample(_apply(sd15, "layer_sd15_fg2bg", stop_percent=0.0), *prompts, 2)
    assert torch.equal(off, base)


@pytest.mark.parametrize("file_id", ["layer_sd15_joint", "layer_sd15_transparent_attn", "layer_sd15_fg2bg"])
def test_frame0_in_the_weights_samples_as_all_terms_on_the_activations(sd15, prompts, patched, file_id):
    """The patched model puts frame 0's LoRA into the projection weights for its model calls and adds only the other
    frames' differences; without the model-call wrapper that opens those weights, every frame's full LoRA term goes
    on the activations. Both give the same samples, up to float rounding."""
    import comfy.patcher_extension

    from layerstack.models.attention_sharing import OWNER_KEY

    folded = patched[file_id]
    assert folded.weight_wrapper_patches  # the fixture's 320-channel projections are in the merged form: all fold
    unfolded = folded.clone()
    unfolded.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, OWNER_KEY)
    frames = FILES[file_id]
    want = _sample(unfolded, *prompts, frames)
    got = _sample_once(file_id, folded, prompts, frames)
    assert (got - _sample_once(("base", frames), sd15.model, prompts, frames)).abs().max() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def _sharing(patched_model):
    import comfy.patcher_extension

    from layerstack.models.attention_sharing import OWNER_KEY

    (wrapper,) = patched_model.get_wrappers(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, OWNER_KEY)
    return wrapper.sharing


def test_control_image_per_set_and_resize(sd15, prompts):
    """One control image per generated set (2 sets of 2 frames), of another size and RGBA: each run fits it to the
    generation size (grey composite, then the resize mode), and sample n of a chunk gets frame n % 2's features of
    set n // 2's image, in the cond and the uncond chunk alike."""
    from layerstack.models.conditioning_images import composite_on_grey, fit_image_to_size

    images = _control_image(batch=2)
    patched = _apply(sd15, "layer_sd15_bg2fg", control_image=images, resize_mode="resize and fill")
    sharing = _sharing(patched)
    model_sampling = sd15.model.model.model_sampling
    run = sharing.prepare_run(model_sampling, (4, 4, 8, 8))  # latent batch 4 of 64x64 px
    assert run.groups_per_chunk == 2
    expected = fit_image_to_size(composite_on_grey(images), 64, 64, "resize and fill").movedim(-1, 1)
    assert run.control_image.shape == (2, 3, 64, 64)
    assert torch.equal(run.control_image, expected.float())
    assert not torch.equal(expected, fit_image_to_size(composite_on_grey(images), 64, 64, "just resize").movedim(-1, 1))

    # per-set mapping, against runs that have only one of the two images
    site = sharing.sites[0]  # 64 tokens at 64x64 px
    channels = sharing.layers[site.index].control_convs[0][2].out_channels
    hidden = torch.zeros(8, 64, channels)  # cond chunk (4 samples) + uncond chunk (4 samples)
    features = sharing.control_features(site, hidden, run)
    alone = [_sharing(_apply(sd15, "layer_sd15_bg2fg", control_image=images[i:i + 1], resize_mode="resize and fill"))
             for i in range(2)]
    single = [s.control_features(site, torch.zeros(2, 64, channels), s.prepare_run(model_sampling, (2, 4, 8, 8)))
              for s in alone]  # [frame 0, frame 1] of that image alone
    for n in range(8):
        torch.testing.assert_close(features[n], single[(n // 2) % 2][n % 2], rtol=0, atol=1e-6)
    assert not torch.allclose(single[0][0], single[1][0])  # the two images do give different features

    out = _sample(patched, *prompts, 4)
    assert torch.isfinite(out).all()


# --- errors ----------------------------------------------------------------------------------------------------------

def _error(fn, *args, **kwargs) -> str:
    from layerstack.errors import LayerStackError

    with pytest.raises(LayerStackError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_error_wrong_family(sdxl):
    from layerstack.models.attention_sharing import apply_attention_sharing

    message = _error(apply_attention_sharing, sdxl.model, "layer_sd15_joint", node="Joint Node")
    assert "Joint Node" in message and "'model'" in message and "SD1.5" in message and "SDXL" in message


@pytest.mark.parametrize("file_id,got", [("layer_xl_fg2ble", "layer_xl_fg2ble.safetensors (SDXL"),
                                         ("layer_sd15_vae_transparent_decoder", "transparent decoder"),
                                         ("nonsense", "not an official file")])
def test_error_wrong_file_id(sd15, file_id, got):
    from layerstack.models.attention_sharing import apply_attention_sharing

    message = _error(apply_attention_sharing, sd15.model, file_id, node="N")
    assert "N: input 'file'" in message and "layer_sd15_joint" in message and got in message


def test_error_wrong_file_content(sd15, fixture_paths, tmp_path, monkeypatch):
    """A joint file saved under the fg2bg name is refused, naming what it looks like."""
    import shutil

    from layerstack.models import files

    shutil.copy(fixture_paths["layer_model_dir"] / "layer_sd15_joint.safetensors",
                tmp_path / "layer_sd15_fg2bg.safetensors")
    monkeypatch.setattr(files, "layer_model_folders", lambda: [str(tmp_path)])
    monkeypatch.setattr(files, "load_layer_file", files.load_layer_file.__wrapped__)  # not the parse-once cache
    message = _error(_apply, sd15, "layer_sd15_fg2bg")
    assert "layer_sd15_fg2bg.safetensors" in message and "layer_sd15_joint" in message and "1180" in message


def test_error_file_shaped_for_another_model(sd15, fixture_paths):
    import safetensors.torch

    from layerstack.models import registry
    from layerstack.models.attention_sharing import load_weights

    entry = registry.get("layer_sd15_transparent_attn")
    state_dict = safetensors.torch.load_file(str(fixture_paths["layer_model_dir"] / entry.filename))
    state_dict["hookers.layers.4.temporal_q.weight"] = torch.zeros(640, 640)  # official size, not the fixture's 320

    def get_attention(path):
        return sd15.model.get_model_object("diffusion_model." + path)

    message = _error(load_weights, entry, state_dict, get_attention, dtype=torch.float32, source="the file")
    assert "hookers.layers.4.temporal_q.weight" in message and "[320, 320]" in message and "[640, 640]" in message


def test_error_bad_batch_before_sampling(sd15, prompts, patched):
    model = patched["layer_sd15_joint"].clone()
    log = CallLog()
    model.set_model_attn1_patch(log)
    message = _error(_sample, model, *prompts, 4)
    assert "'latent batch'" in message and "multiple of 3" in message and "got 4" in message
    assert not log.calls  # refused before the UNet ran


def test_error_control_image_count(sd15, prompts):
    # Without the set count (the legacy node has no latent input) it is checked when sampling, naming the input as
    # the calling node calls it.
    patched = _apply(sd15, "layer_sd15_fg2bg", control_image=_control_image(batch=3), input_names={"control_image": "image"})
    message = _error(_sample, patched, *prompts, 4)
    assert "test: input 'image' expected 1 image or one per generated set (2" in message and "3 images" in message


def test_error_control_image_missing_or_unexpected(sd15):
    from layerstack.models.attention_sharing import apply_attention_sharing

    message = _error(apply_attention_sharing, sd15.model, "layer_sd15_bg2fg", node="N",
                     input_names={"control_image": "background"})
    assert "N: input 'background'" in message and "background image" in message
    message = _error(apply_attention_sharing, sd15.model, "layer_sd15_joint", control_image=_control_image(), node="N")
    assert "no control image" in message


def test_error_layer_prompts(sd15, sdxl, prompts):
    from layerstack.models.attention_sharing import apply_attention_sharing

    message = _error(apply_attention_sharing, sd15.model, "layer_sd15_fg2bg", control_image=_control_image(),
                     layer_conds={"foreground": prompts[0]}, node="N")
    assert "foreground" in message and "background, blended" in message
    message = _error(apply_attention_sharing, sd15.model, "layer_sd15_joint", layer_conds={"blended": sdxl.encode("x")},
                     node="N", input_names={"blended": "blended_cond"})
    assert "'blended_cond'" in message and "768" in message and "2048" in message
    message = _error(apply_attention_sharing, sd15.model, "layer_sd15_joint",
                     layer_conds={"blended": prompts[0] + prompts[1]}, node="N")
    assert "single prompt" in message and "2 entries" in message


def test_error_applied_twice(patched):
    from layerstack.models.attention_sharing import apply_attention_sharing

    message = _error(apply_attention_sharing, patched["layer_sd15_transparent_attn"], "layer_sd15_joint", node="N")
    assert "already has it" in message
