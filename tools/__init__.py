"""Tools that run beside the pack (never imported by ComfyUI); a package so ``python -m tools.batch_runner`` finds
this folder first."""
