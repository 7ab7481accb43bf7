"""Start/stop ("stop at", Forge semantics) of the SDXL layer patches: weight wrappers gated by the current sigma.

Forge swaps in the unpatched UNet and drops c_concat once sigma < percent_to_sigma(stop); these tests check the
same switch per model call, the two ends (1.0 = always on, 0.0 = the base model), that a stop mid-way gives
what the two-pass workaround (layer model for the first steps, base model for the rest) gives, and that the
outputs are those of the weight hook the pack used before (kept here as the reference).
"""

from __future__ import annotations

import pytest
import torch

from fixtures.sdxl_testing import LATENT, prompt, sample, unload_everything
from layerstack.errors import LayerStackError
from layerstack.models import sdxl_patches

FILE_ID = "layer_xl_fg2ble"  # a diff file that widens conv_in: both the wrappers and the padding are exercised
OUT_KEY = "diffusion_model.out.2.weight"


@pytest.fixture(scope="module")
def layer(sdxl):
    return sdxl_patches.load_layer_patches(sdxl.model, FILE_ID, node="Test")


@pytest.fixture(scope="module")
def conds(sdxl):
    """Positive and negative with a random foreground latent as c_concat."""
    latent = torch.randn(1, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(7))
    c_concat = sdxl_patches.condition_c_concat(sdxl.model, [latent], node="Test", names=["foreground"])
    return sdxl_patches.with_c_concat(prompt(1), c_concat), sdxl_patches.with_c_concat(prompt(2), c_concat)


@pytest.fixture(scope="module")
def base_output(sdxl):
    unload_everything()
    return sample(sdxl.model, prompt(1), prompt(2), cfg=1.0)


def apply(sdxl, layer, conds, start: float = 0.0, stop: float = 1.0):
    return sdxl_patches.apply_layer_patches(sdxl.model, layer, node="Test", start_percent=start, stop_percent=stop,
                                            positive=conds[0], negative=conds[1])


def hook_reference(sdxl, layer, conds, start: float, stop: float):
    """The previous mechanism: a WeightHook on the conditioning whose keyframes switch it on and off."""
    import comfy.hooks

    patched = sdxl.model.clone()
    delta = layer.patches[sdxl_patches.CONV_IN_KEY][1][0]
    patched.add_patches({sdxl_patches.CONV_IN_KEY: ("diff", (torch.zeros_like(delta), {"pad_weight": True}))}, 1.0)
    hook = comfy.hooks.WeightHook(strength_model=1.0)
    hook.weights = {k: ("diff", (p[1][0],)) if isinstance(p, tuple) else p for k, p in layer.patches.items()}
    hook.need_weight_init = False
    group = comfy.hooks.HookGroup()
    group.add(hook)
    keyframes = comfy.hooks.HookKeyframeGroup()
    keyframes.add(comfy.hooks.HookKeyframe(strength=1.0 if start <= 0.0 else 0.0, start_percent=0.0, guarantee_steps=0))
    if start > 0.0:
        keyframes.add(comfy.hooks.HookKeyframe(strength=1.0, start_percent=start, guarantee_steps=0))
    if stop < 1.0:
        keyframes.add(comfy.hooks.HookKeyframe(strength=0.0, start_percent=stop, guarantee_steps=0))
    group.set_keyframes_on_hooks(keyframes)
    return (patched, comfy.hooks.set_hooks_for_conditioning(conds[0], group),
            comfy.hooks.set_hooks_for_conditioning(conds[1], group))


def test_no_hook_rides_on_the_conditioning(sdxl, layer, conds):
    patched, positive, negative = apply(sdxl, layer, conds, start=0.2, stop=0.6)
    assert positive is conds[0] and negative is conds[1] and "hooks" not in positive[0][1]
    import comfy.patcher_extension

    assert not patched.hook_patches
    assert patched.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, sdxl_patches.OWNER_KEY)


@pytest.mark.parametrize("start, stop", [(0.0, 0.25), (0.25, 1.0), (0.3, 0.7)])
def test_outputs_equal_the_previous_weight_hook(sdxl, layer, conds, start, stop):
    unload_everything()
    patched, positive, negative = apply(sdxl, layer, conds, start=start, stop=stop)
    scheduled = sample(patched, positive, negative, steps=4, cfg=2.0)
    unload_everything()
    reference = sample(*hook_reference(sdxl, layer, conds, start, stop), steps=4, cfg=2.0)
    unload_everything()
    torch.testing.assert_close(scheduled, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())


def test_stop_at_zero_equals_the_base_model(sdxl, layer, conds, base_output):
    patched, positive, negative = apply(sdxl, layer, conds, stop=0.0)
    torch.testing.assert_close(sample(patched, positive, negative, cfg=1.0), base_output, rtol=1e-4, atol=1e-4)


def test_stop_at_one_equals_always_on_through_plain_patches_and_through_the_wrappers(sdxl, layer, conds, base_output):
    patched, positive, negative = apply(sdxl, layer, conds, stop=1.0)
    assert not patched.weight_wrapper_patches  # the whole schedule: plain patches, no per-call overhead
    always_on = sample(patched, positive, negative, cfg=1.0)
    assert (always_on - base_output).abs().max() > 1e-2
    # 0.999 goes through the scheduled wrappers, whose switch-off sigma lies below every sigma sampled here.
    patched, positive, negative = apply(sdxl, layer, conds, stop=0.999)
    assert set(patched.weight_wrapper_patches) == set(layer.patches)
    torch.testing.assert_close(sample(patched, positive, negative, cfg=1.0), always_on, rtol=1e-4, atol=1e-4)


def record_layer_state(model, base_out_weight: torch.Tensor, calls: list):
    """Per model call: (sigma, conv_in condition channels non-zero, out.2 the base weight), for the weights each
    layer computes with (its weight through its weight functions, as ComfyUI's cast ops apply them)."""
    import comfy.patcher_extension

    def effective(module):
        weight = module.weight
        for function in module.weight_function:
            weight = function(weight)
        return weight

    def wrapper(executor, x, t, *args, **kwargs):
        unet = executor.class_obj.diffusion_model
        conv_in, out = effective(unet.input_blocks[0][0]), effective(unet.out[2])
        calls.append((float(t[0]), bool(conv_in[:, 4:].abs().sum() > 0), torch.equal(out, base_out_weight)))
        return executor(x, t, *args, **kwargs)

    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "layerstack-test", wrapper)


@pytest.mark.parametrize("start, stop", [(0.0, 0.25), (0.25, 1.0)])
def test_patches_switch_at_the_schedule_percent_like_forge(sdxl, layer, conds, start, stop):
    unload_everything()
    base_out_weight = sdxl.model.model.state_dict()[OUT_KEY].clone()
    patched, positive, negative = apply(sdxl, layer, conds, start=start, stop=stop)
    calls: list = []
    record_layer_state(patched, base_out_weight, calls)
    sample(patched, positive, negative, steps=2, cfg=1.0)
    sampling = sdxl.model.model.model_sampling
    sigma_start, sigma_stop = sampling.percent_to_sigma(start), sampling.percent_to_sigma(stop)
    assert len(calls) == 2
    for sigma, conv_in_active, out_is_base in calls:
        expected_active = sigma_stop < sigma <= sigma_start  # Forge: on while sigma >= sigma(stop)
        assert conv_in_active == expected_active and out_is_base == (not expected_active), calls
    assert [active for _, active, _ in calls] == ([True, False] if start == 0.0 else [False, True])
    unload_everything()


def test_stop_mid_way_equals_the_two_pass_workaround(sdxl, layer, conds):
    """stop 0.25 over 2 steps = step 1 with the layer model, step 2 with the base model (and no c_concat)."""
    patched, positive, negative = apply(sdxl, layer, conds, stop=0.25)
    scheduled = sample(patched, positive, negative, steps=2, cfg=1.0)
    always_on, pos_on, neg_on = apply(sdxl, layer, conds, stop=1.0)
    first = sample(always_on, pos_on, neg_on, steps=2, cfg=1.0, start_step=0, last_step=1, full_denoise=False)
    two_pass = sample(sdxl.model, prompt(1), prompt(2), steps=2, cfg=1.0, latent=first, add_noise=False,
                      start_step=1, last_step=2)
    torch.testing.assert_close(scheduled, two_pass, rtol=1e-4, atol=1e-4)


def test_window_needs_an_ordered_range(sdxl, layer):
    with pytest.raises(LayerStackError, match=r"expected 0 <= start_percent <= stop_percent <= 1, "
                                              r"got start_percent=0.6, stop_percent=0.5"):
        sdxl_patches.apply_layer_patches(sdxl.model, layer, node="Test", start_percent=0.6, stop_percent=0.5,
                                         positive=prompt(1), negative=prompt(2))


def drop_norm_weight_functions(model):
    """Simulates a host that runs norm layers without their weight functions inside each model call (what ComfyUI's
    dynamic VRAM does with layers under 16 KB); the functions are put back afterwards, the model is shared."""
    import comfy.patcher_extension

    def wrapper(executor, x, t, *args, **kwargs):
        unet = executor.class_obj.diffusion_model
        norms = [m for m in unet.modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm))]
        saved = [(m, m.weight_function, m.bias_function) for m in norms]
        for m in norms:
            m.weight_function, m.bias_function = [], []
        try:
            return executor(x, t, *args, **kwargs)
        finally:
            for m, weight_function, bias_function in saved:
                m.weight_function, m.bias_function = weight_function, bias_function

    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "layerstack-test", wrapper)


def test_weights_the_host_left_unpatched_inside_the_window_are_reported_once(sdxl, layer, conds, caplog):
    unload_everything()
    patched, positive, negative = apply(sdxl, layer, conds, stop=0.6)
    with caplog.at_level("WARNING", logger="layerstack"):
        sample(patched, positive, negative, steps=2, cfg=1.0)
    assert not [r for r in caplog.records if "not reached" in r.getMessage()]  # every wrapped weight ran
    unet = sdxl.model.model.diffusion_model
    norms = {f"diffusion_model.{name}" for name, m in unet.named_modules()
             if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm))}
    norm_keys = {k for k in layer.patches if k.rpartition(".")[0] in norms}
    assert norm_keys
    unload_everything()
    patched, positive, negative = apply(sdxl, layer, conds, stop=0.6)
    drop_norm_weight_functions(patched)
    caplog.clear()
    with caplog.at_level("WARNING", logger="layerstack"):
        sample(patched, positive, negative, steps=4, cfg=1.0)
    warnings = [r.getMessage() for r in caplog.records if "not reached" in r.getMessage()]
    unload_everything()
    assert len(warnings) == 1, warnings
    assert f"Test: start/stop: {len(norm_keys)} of {len(layer.patches)} patched weights were not reached" in warnings[0]
    assert "--disable-dynamic-vram" in warnings[0]
