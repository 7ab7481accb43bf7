#!/usr/bin/env bash
# Every test: set-up (idempotent), lint, then the pytest tiers (tests/conftest.py):
#   unit                 plain torch/numpy, no ComfyUI                                once
#   host + server        in-process ComfyUI, then a real ComfyUI server (one test drives it from headless Chromium,
#                          which the set-up installs with --browser)                  on each host:
#                          ComfyUI 0.3.75 (.comfyui) and the newest host (.hosts/newest, see scripts/setup.sh)
# Usage: bash scripts/test.sh [--fast] [pytest arguments]
#   --fast      the unit tier only, without its few tests marked slow (the developer's loop: well under a minute)
#   arguments   go to pytest in every stage (e.g. -k decoder, -x); tier selection is by marker, so they combine.
# Each stage's time is printed; the command fails if any stage failed, after running them all.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FAST=0
if [ "${1:-}" = "--fast" ]; then FAST=1; shift; fi
say() { echo "[test] $*"; }

failed=()
summary=()
start=$(date +%s)
if [ "$FAST" = 1 ]; then bash scripts/setup.sh; else bash scripts/setup.sh --newest-host --browser; fi || exit 1
summary+=("set-up: $(( $(date +%s) - start ))s")
say "ruff"
.venv/bin/ruff check . || exit 1
# stage NAME VENV COMFY_DIR MARKERS FOLDERS: one pytest run over the tier folders (so a stage imports only what its
# tiers need: the unit stage never imports ComfyUI); empty VENV/COMFY_DIR mean the default host.
stage() {
  local name="$1" venv="$2" comfy="$3" markers="$4" folders start rc
  read -r -a folders <<< "$5"
  shift 5
  start=$(date +%s)
  say "stage $name: pytest -m '$markers'"
  LAYERSTACK_VENV="$venv" LAYERSTACK_COMFY_DIR="$comfy" "${venv:-.venv}/bin/python" -m pytest -m "$markers" "${folders[@]}" "$@"
  rc=$?
  # pytest's 5 = nothing collected: fine when the caller's own arguments filtered a stage empty.
  if [ "$rc" = 5 ] && [ "$#" -gt 0 ]; then rc=0; fi
  summary+=("$name: $(( $(date +%s) - start ))s, $([ "$rc" = 0 ] && echo passed || echo "FAILED (pytest exit $rc)")")
  [ "$rc" = 0 ] || failed+=("$name")
}

if [ "$FAST" = 1 ]; then
  stage "unit (--fast: not slow)" "" "" "unit and not slow" "tests/unit" "$@"
else
  stage "unit" "" "" "unit" "tests/unit" "$@"
fi
if [ "$FAST" = 0 ]; then
  stage "host+server on ComfyUI 0.3.75" "" "" "host or server" "tests/host tests/e2e" "$@"
  newest="$ROOT/.hosts/newest"
  if [ -f "$newest/.source" ] && [ -x "$newest/venv/bin/python" ]; then
    version=$(sed -n 's/__version__ = "\(.*\)"/\1/p' "$newest/comfyui/comfyui_version.py")
    stage "host+server on ComfyUI $version (newest host)" "$newest/venv" "$newest/comfyui" "host or server" "tests/host tests/e2e" "$@"
  else
    summary+=("newest host: SKIPPED (no ComfyUI source: put a comfyui-*.tar.gz in ../shared/hosts or set LAYERSTACK_NEWEST_COMFYUI to a ComfyUI folder or tarball, then re-run)")
  fi
else
  summary+=("host and server tiers: not run (--fast)")
fi

say "summary"
for line in "${summary[@]}"; do say "  $line"; done
if [ "${#failed[@]}" -gt 0 ]; then
  say "FAILED stages: ${failed[*]}"
  exit 1
fi
