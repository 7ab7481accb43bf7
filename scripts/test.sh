#!/usr/bin/env bash
# Every test: set-up (idempotent), lint, then the whole pytest suite (unit, in-process ComfyUI, real server).
# Extra arguments go to pytest (e.g. tests/unit -k decoder).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] pytest"
exec .venv/bin/python -m pytest "$@"
