"""Session fixtures for isolated runtimes: one real uv-built SKDH 0.16.15 runtime shared by the suite.

Building it costs seconds with uv's cache warm (longer on a cold cache), so it is built once per
session and tests that need to change a runtime copy nothing from it: they build on a fresh root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from biomarkerflow.runtimes.builder import BuiltRuntime, RuntimeCache, RuntimeSpec

SKDH_0_16 = "scikit-digital-health==0.16.15"


@pytest.fixture(scope="session")
def runtime_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtimes")


@pytest.fixture(scope="session")
def skdh_0_16_runtime(runtime_root: Path) -> BuiltRuntime:
    return RuntimeCache(runtime_root).ensure(RuntimeSpec(SKDH_0_16))
