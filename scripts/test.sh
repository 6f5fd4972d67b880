#!/usr/bin/env bash
# Install (first time) with development tools, lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# The catalog tests also run against a real PostgreSQL server at 127.0.0.1:5432: start it
# if it is installed but stopped, and wait until it answers.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
# Two test processes, each taking whole files (module fixtures stay shared): the suite is
# mostly SKDH on one core at a time, so this about halves its time on 2 cores.
exec .venv/bin/python -m pytest -n 2 --dist loadfile --durations=15 "$@"
