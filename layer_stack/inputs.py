"""Tensor contracts at node boundaries: ComfyUI IMAGE / MASK inputs to straight rgb + alpha (1 = opaque).

IMAGE is [B,H,W,C] with C = 3 (RGB) or 4 (RGBA, alpha last); MASK is [B,H,W] or [H,W]. A MASK is taken as alpha
(1 = opaque, what our decode nodes output and Text2Layer's m) unless the caller says it is a LoadImage-style mask
(1 = transparent). A batch of 1 is repeated to match the other inputs; other batch differences are errors.
LoadImage's placeholder mask for an image without alpha (all zeros, 64x64 whatever the image size) counts as no mask,
so a LoadImage MASK may be wired in whether or not the picture has transparency.
"""

from __future__ import annotations

import torch

from ..errors import FROM_IMAGE, node_error, require_finite


def _shape(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"shape {list(t.shape)}"
    return f"a {type(t).__name__}"


def check_image(image: object, node: str, input_name: str) -> torch.Tensor:
    if not (isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[-1] in (3, 4)):
        raise node_error(node, input_name, "an IMAGE of shape [batch, height, width, 3 or 4]", _shape(image))
    if not image.is_floating_point():
        raise node_error(node, input_name, "a float IMAGE", f"dtype {image.dtype}")
    return require_finite(image.detach().to("cpu", torch.float32), node, input_name, FROM_IMAGE)


def check_mask(mask: object, node: str, input_name: str) -> torch.Tensor:
    if isinstance(mask, torch.Tensor) and mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if not (isinstance(mask, torch.Tensor) and mask.ndim == 3 and mask.is_floating_point()):
        raise node_error(node, input_name, "a float MASK of shape [batch, height, width]", _shape(mask))
    return require_finite(mask.detach().to("cpu", torch.float32), node, input_name, FROM_IMAGE)


PLACEHOLDER_SIZE = (64, 64)  # the size of LoadImage's all-zero mask for a picture without an alpha channel


def is_placeholder_mask(mask: torch.Tensor, image: torch.Tensor) -> bool:
    """LoadImage's "this picture has no alpha" mask next to a picture of another size: it carries no information."""
    return tuple(mask.shape[1:]) == PLACEHOLDER_SIZE != tuple(image.shape[1:3]) and not bool(mask.any())


def match_batch(tensors: dict[str, torch.Tensor], node: str) -> dict[str, torch.Tensor]:
    """Repeat batch-1 tensors to the common batch size; refuse any other difference."""
    sizes = {name: t.shape[0] for name, t in tensors.items()}
    largest = max(sizes, key=sizes.get)
    target = sizes[largest]
    for name, size in sizes.items():
        if size not in (1, target):
            raise node_error(node, name, f"batch size 1 or {target} (the batch size of '{largest}')", str(size))
    return {name: t if t.shape[0] == target else t.expand(target, *t.shape[1:]) for name, t in tensors.items()}


def same_size_and_batch(images: dict[str, torch.Tensor], node: str, reference: str) -> dict[str, torch.Tensor]:
    """Every image must have the reference's height and width; batch-1 images are repeated to the common batch."""
    height, width = images[reference].shape[1:3]
    for name, t in images.items():
        if tuple(t.shape[1:3]) != (height, width):
            raise node_error(node, name, f"height x width {height}x{width} (the size of '{reference}')",
                             f"{t.shape[1]}x{t.shape[2]}")
    return match_batch(images, node)


def rgb_and_alpha(
    image: object,
    alpha: object | None,
    node: str,
    image_input: str = "image",
    alpha_input: str = "alpha",
    mask_is_inverted: bool = False,
    alpha_required: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """rgb [B,H,W,3] and alpha [B,H,W] (1 = opaque, clamped to [0,1]) from an IMAGE and an optional MASK.

    The alpha comes from the MASK, or else from a 4-channel IMAGE, or else (unless required) is opaque.
    Both at once is refused: silently preferring one would hide a wiring mistake. LoadImage's placeholder mask is
    no MASK (see is_placeholder_mask).
    """
    image = check_image(image, node, image_input)
    if alpha is not None:
        alpha = check_mask(alpha, node, alpha_input)
        if is_placeholder_mask(alpha, image):
            alpha = None
    has_image_alpha = image.shape[-1] == 4
    if alpha is not None and has_image_alpha:
        raise node_error(
            node, alpha_input, f"no MASK when '{image_input}' already has an alpha channel (4 channels)",
            "both; connect an RGB image, or leave the mask unconnected",
        )
    if alpha is None:
        if has_image_alpha:
            return image[..., :3].clamp(0, 1), image[..., 3].clamp(0, 1)
        if alpha_required:
            raise node_error(
                node, alpha_input, f"a MASK, or an RGBA (4-channel) '{image_input}'",
                "an RGB image and no mask (LoadImage's MASK of a picture without transparency is empty)",
            )
        return image.clamp(0, 1), torch.ones(image.shape[:3])
    mask = alpha
    if mask.shape[1:] != image.shape[1:3]:
        raise node_error(
            node, alpha_input, f"height x width {image.shape[1]}x{image.shape[2]} (the size of '{image_input}')",
            f"{mask.shape[1]}x{mask.shape[2]}",
        )
    matched = match_batch({image_input: image, alpha_input: mask}, node)
    mask = matched[alpha_input].clamp(0, 1)
    return matched[image_input][..., :3].clamp(0, 1), (1.0 - mask) if mask_is_inverted else mask
