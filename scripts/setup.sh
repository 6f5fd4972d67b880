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
# Exact versions from uv.lock (the ones the test suite ran with); --inexact keeps pip and uv.
extras=()
if [ "${1:-}" = "--dev" ]; then extras=(--extra dev); fi
UV_PROJECT_ENVIRONMENT="$PWD/.venv" .venv/bin/python -m uv sync --quiet --frozen --inexact "${extras[@]}"
if [ "${1:-}" = "--dev" ]; then
  # The tests' own workflow type (tests/plugins/csvstats): a separate package that registers
  # through the entry point, as any other would. Editable, so the tests see its source as it is.
  .venv/bin/python -m uv pip install --quiet --python .venv/bin/python --no-deps -e tests/plugins/csvstats
  # The browser tests (tests/test_browser.py) drive Debian's Chromium with Playwright, which
  # never downloads a browser of its own here. Installed when missing, as root (as on CI).
  if [ ! -x /usr/lib/chromium/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing Debian's chromium for the browser tests (apt-get)"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "setup: Chromium is not installed and this is not root: the browser tests will skip" \
        "(install it with: sudo apt-get install chromium)" >&2
    fi
  fi
fi
# Compile everything to bytecode once per lock file: where PYTHONDONTWRITEBYTECODE is set
# (as on CI), Python would otherwise recompile every module in every process it starts,
# and each CLI call and worker would pay seconds for it.
stamp=".venv/.bytecode-$(sha256sum uv.lock | cut -c1-16)${extras[*]:+-dev}"
if [ ! -e "$stamp" ]; then
  UV_PROJECT_ENVIRONMENT="$PWD/.venv" .venv/bin/python -m uv sync --quiet --frozen --inexact "${extras[@]}" --compile-bytecode
  rm -f .venv/.bytecode-*
  touch "$stamp"
fi
.venv/bin/python -m compileall -q src >/dev/null
