#!/usr/bin/env bash
# The main job: ComfyUI 0.3.75 with this pack at http://127.0.0.1:8188 (set-up included, idempotent).
# Extra arguments go to ComfyUI's main.py (e.g. --lowvram, --port 8190).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT/.comfyui"
device_args=()
# ComfyUI needs --cpu on a machine without an accelerator; with one it picks the device itself.
if ! ../.venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() or torch.backends.mps.is_available() else 1)"; then
  device_args=(--cpu)
fi
exec ../.venv/bin/python main.py --listen 127.0.0.1 --port 8188 "${device_args[@]}" "$@"
