#!/usr/bin/env bash
# GPU check (one call, a few minutes): every mode's API twin on the GPU in fp16 with start/stop on, with and
# without dynamic VRAM, on the newest host when it is set up (else the default one). See scripts/gpu_check.py.
# Usage: bash scripts/gpu_check.sh [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
newest=.hosts/newest
if [ -x "$newest/venv/bin/python" ] && [ -d "$newest/comfyui" ]; then
  export LAYERSTACK_COMFY_DIR="$PWD/$newest/comfyui" LAYERSTACK_VENV="$PWD/$newest/venv"
fi
python="${LAYERSTACK_VENV:-.venv}/bin/python"
exec timeout 480 "$python" scripts/gpu_check.py "$@"
