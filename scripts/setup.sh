#!/usr/bin/env bash
# Create ./.venv (once) and install biomarkerflow into it. Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -m uv --version >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --upgrade pip uv
fi
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
VIRTUAL_ENV="$PWD/.venv" .venv/bin/python -m uv pip install --quiet -e ".${extras}"
