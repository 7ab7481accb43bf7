"""How a family's decoder/encoder pair is wired: the few facts where the Flux files differ from the SD ones
(docs/FORMATS.md#flux). Everything else (UNet1024 body, passes, padding, median) is shared."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    name: str  # the model families whose latents it reads, for messages
    latent_channels: int
    # Decoder output [R,G,B,A] and offset-encoder input [padded RGB, A]; the SD files put alpha first in both.
    alpha_last: bool
    # The offset encoder's output is multiplied by this before it moves the posterior mean (a constant of the
    # trained network, not stored in the file); the node's offset_multiplier comes on top.
    offset_scale: float


SD = Layout(name="SD1.5/SDXL", latent_channels=4, alpha_last=False, offset_scale=1.0)
FLUX = Layout(name="Flux", latent_channels=16, alpha_last=True, offset_scale=300.0)
BY_LATENT_CHANNELS = {layout.latent_channels: layout for layout in (SD, FLUX)}
