"""The one exception type the pack raises for bad input or bad files.

ComfyUI shows an exception's message in the UI and in the /prompt error response, so every message names the node
(or file), the input, what was expected and what came.
"""


class LayerStackError(ValueError):
    """Bad input to a LayerStack node, or a layer file that does not match what it should be."""


def node_error(node: str, input_name: str, expected: str, got: str) -> LayerStackError:
    return LayerStackError(f"{node}: input '{input_name}' expected {expected}, got {got}.")


def require_schedule_window(node: str, start_percent: float, stop_percent: float) -> None:
    """A start/stop pair on the schedule: both in [0, 1], start not after stop."""
    if not 0.0 <= start_percent <= stop_percent <= 1.0:
        raise node_error(node, "start_percent / stop_percent", "0 <= start_percent <= stop_percent <= 1",
                         f"start_percent={start_percent}, stop_percent={stop_percent}")


# Why a tensor holds NaN or inf, by where it came from (the most common cause first).
FROM_VAE = ("Likely cause: the VAE overflowed in fp16 (start ComfyUI with --fp32-vae or --bf16-vae, or use an "
            "fp16-fixed VAE); or the latent it decoded was already broken.")
FROM_SAMPLER = ("Likely cause: the model or sampler produced NaN/inf (fp16 overflow: start ComfyUI with --bf16-unet "
                "or --force-fp32; or a broken model, LoRA or too high a CFG), or an fp16 VAE encode overflowed "
                "(--fp32-vae or --bf16-vae).")
FROM_NETWORK = ("Likely cause: the transparent VAE overflowed in fp16 (start ComfyUI with --fp32-vae or "
                "--bf16-vae), or its layer file holds broken weights.")
FROM_IMAGE = ("Likely cause: an upstream node produced NaN/inf, most often a VAE Decode that overflowed in fp16 "
              "(start ComfyUI with --fp32-vae or --bf16-vae).")


def require_finite(tensor, node: str, name: str, likely_cause: str, *, kind: str = "input"):
    """`tensor` unchanged when every value is finite; else an error with the count, instead of an empty result.

    The fast test is one sum (NaN and inf propagate through it; measured at ~0.1 % of a 512² decode); only when
    the sum is not finite are the values counted, which also clears a sum that merely overflowed. Duck-typed on
    torch tensors so this module stays free of torch.
    """
    if bool(tensor.sum().isfinite()):
        return tensor
    finite = tensor.isfinite()
    bad = int(finite.numel() - finite.sum())
    if bad:
        raise LayerStackError(f"{node}: {kind} '{name}' holds {bad} non-finite value(s) (NaN or inf) out of "
                              f"{finite.numel()}. {likely_cause}")
    return tensor
