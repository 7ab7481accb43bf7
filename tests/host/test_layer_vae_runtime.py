"""runtime.decode around a real ModelPatcher: sub-batch caps, the out-of-memory retry, progress and model management.

The decoder here is a tiny module with the decoder's call signature (the official-shape one is exercised in
test_layer_vae_official.py and test_layer_vae_nodes.py); it records the batch of every forward call.
"""

from __future__ import annotations

import pytest
import torch

from layerstack.layer_vae import decode_augmented, runtime
from layerstack.models.registry import Family
from layerstack.models.transparent_vae import TransparentVAE


class RecordingDecoder(torch.nn.Module):
    def __init__(self, fail_above: int | None = None, error: type[Exception] | None = None):
        super().__init__()
        self.conv = torch.nn.Conv2d(7, 4, 3, padding=1)
        self.fail_above = fail_above
        self.error = error
        self.calls: list[int] = []

    def forward(self, pixel, latent):
        import comfy.model_management as mm

        if self.fail_above is not None and pixel.shape[0] > self.fail_above:
            raise (self.error or mm.OOM_EXCEPTION)("CUDA out of memory (simulated by the test decoder)")
        self.calls.append(pixel.shape[0])
        lat = torch.nn.functional.interpolate(latent, size=pixel.shape[-2:], mode="nearest")
        return self.conv(torch.cat([pixel, lat], dim=1))


def managed_vae(module):
    return TransparentVAE(Family.SDXL, _decoder=runtime.managed(module, torch.float32))


def inputs(batch=2, h=64, w=64):
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, h, w, 3, generator=g), torch.randn(batch, 4, h // 8, w // 8, generator=g)


def test_sub_batch_size_caps_every_call(comfy_host):
    net = RecordingDecoder()
    images, latent = inputs(batch=3)
    out = runtime.decode(managed_vae(net), images, latent, node="t", passes=8, sub_batch_size=5)
    assert out.shape == (3, 64, 64, 4) and max(net.calls) <= 5 and sum(net.calls) == 24
    expected = decode_augmented(net, images.movedim(-1, 1), latent)
    assert torch.allclose(out.movedim(-1, 1), expected, atol=1e-6)


def test_automatic_sub_batch_is_what_the_memory_budget_holds(comfy_host, monkeypatch):
    images, latent = inputs(batch=2)
    per_sample = runtime.bytes_per_sample(64, 64, torch.float32)
    calls = {}
    for budget in (per_sample - 1, 3 * per_sample, 1 << 40):  # less than one sample; three; more than the decode
        monkeypatch.setattr(runtime, "memory_budget", lambda device, b=budget: b)
        net = RecordingDecoder()
        runtime.decode(managed_vae(net), images, latent, node="t", passes=4, sub_batch_size=None)
        calls[budget] = net.calls
    assert calls[per_sample - 1] == [1] * 8  # one sample per call even when not even one fits (OOM would halve)
    assert calls[3 * per_sample] == [3, 1, 3, 1]  # one image's 4 passes at a time, in calls of at most 3
    assert calls[1 << 40] == [8]  # both images' 4 passes in one call


def test_the_memory_budget_is_a_share_of_the_free_memory_the_host_reports(comfy_host):
    import comfy.model_management as mm

    cpu = torch.device("cpu")
    expected = mm.get_free_memory(cpu) * runtime.CPU_FREE_MEMORY_SHARE  # the checkpoint and the system share RAM
    assert abs(runtime.memory_budget(cpu) - expected) <= 64 * 2**20  # free memory moves a little
    assert 0 < runtime.CPU_FREE_MEMORY_SHARE < 1
    # A small image batches its passes within the budget, a large one runs one sample per call.
    budget = runtime.memory_budget(cpu)
    small, large = runtime.bytes_per_sample(64, 64, torch.float32), runtime.bytes_per_sample(2048, 2048, torch.float32)
    assert runtime.auto_sub_batch(cpu, small) == budget // small > runtime.auto_sub_batch(cpu, large) == 1


def test_automatic_sub_batch_elsewhere_comes_from_free_memory(comfy_host):
    import comfy.model_management as mm

    device = torch.device("mps")  # model management reports system memory for it, so this runs without a GPU
    per_sample = runtime.bytes_per_sample(1024, 1024, torch.float16)
    assert per_sample == 1024 * 1024 * (runtime.ACTIVATION_CHANNELS * 2 + runtime.RESULT_BYTES_PER_PIXEL)
    expected = max(1, int(mm.get_free_memory(device) / per_sample))
    assert abs(runtime.auto_sub_batch(device, per_sample) - expected) <= 1  # free memory moves a little
    assert runtime.auto_sub_batch(device, 1 << 60) == 1


def test_out_of_memory_halves_the_sub_batch_and_retries(comfy_host, caplog):
    net = RecordingDecoder(fail_above=3)
    images, latent = inputs(batch=2)
    out = runtime.decode(managed_vae(net), images, latent, node="t", passes=8, sub_batch_size=16)
    assert max(net.calls) <= 3 and sum(net.calls) == 16
    assert "out of memory, retrying with 8" in caplog.text and "retrying with 2" in caplog.text
    net.fail_above = None
    expected = decode_augmented(net, images.movedim(-1, 1), latent)
    assert torch.allclose(out.movedim(-1, 1), expected, atol=1e-6)


def test_out_of_memory_at_one_sample_is_raised(comfy_host):
    import comfy.model_management as mm

    images, latent = inputs(batch=1)
    with pytest.raises(mm.OOM_EXCEPTION):
        runtime.decode(managed_vae(RecordingDecoder(fail_above=0)), images, latent, node="t", sub_batch_size=4)


class AcceleratorOutOfMemory(RuntimeError):
    """An OOM that is not the CUDA OOM type (as some accelerators raise it)."""


def test_every_out_of_memory_kind_the_host_knows_halves_the_sub_batch(comfy_host, monkeypatch):
    import comfy.model_management as mm

    # a host whose OOM predicate knows this error (newer hosts have one; on 0.3.75 the test adds it)
    monkeypatch.setattr(mm, "is_oom", lambda e: isinstance(e, (mm.OOM_EXCEPTION, AcceleratorOutOfMemory)),
                        raising=False)
    net = RecordingDecoder(fail_above=2, error=AcceleratorOutOfMemory)
    images, latent = inputs(batch=1)
    runtime.decode(managed_vae(net), images, latent, node="t", passes=8, sub_batch_size=8)
    assert max(net.calls) <= 2 and sum(net.calls) == 8


def test_other_errors_are_raised_without_a_retry(comfy_host):
    net = RecordingDecoder(fail_above=2, error=AcceleratorOutOfMemory)  # no predicate knows it here
    images, latent = inputs(batch=1)
    with pytest.raises(AcceleratorOutOfMemory):
        runtime.decode(managed_vae(net), images, latent, node="t", passes=8, sub_batch_size=8)
    assert net.calls == []


def test_progress_bar_counts_forward_calls(comfy_host, monkeypatch):
    import comfy.utils

    bars = []

    class RecordingBar(comfy.utils.ProgressBar):
        def __init__(self, total, *args, **kwargs):
            super().__init__(total, *args, **kwargs)
            self.steps: list[int] = []
            bars.append(self)

        def update(self, value):
            self.steps.append(value)
            super().update(value)

    monkeypatch.setattr(comfy.utils, "ProgressBar", RecordingBar)
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        images, latent = inputs(batch=2, h=64, w=128)  # non-square: two shape groups
        runtime.decode(managed_vae(RecordingDecoder()), images, latent, node="t", passes=8, sub_batch_size=3)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    # 3 per call is less than 8 passes: one image at a time, each shape group of 4 passes in calls of 3 + 1
    assert len(bars) == 1 and bars[0].total == 8 and bars[0].steps == [1] * 8
    # Newer hosts throttle what reaches the UI hook; the first and the last update always get through.
    values = [v for v, _ in seen]
    assert seen[0] == (1, 8) and seen[-1] == (8, 8) and values == sorted(set(values))


def test_the_network_is_loaded_through_model_management(comfy_host):
    import comfy.model_management as mm

    tvae = managed_vae(RecordingDecoder())
    images, latent = inputs(batch=1)
    runtime.decode(tvae, images, latent, node="t", passes=1)
    assert any(m is tvae.decoder() for m in mm.loaded_models())
