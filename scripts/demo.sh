#!/usr/bin/env bash
# Install (first time) and run the demo study end to end. Extra arguments go to `biomarkerflow demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/biomarkerflow demo "$@"
