"""Shared fixtures: real sample files, a synthetic multi-day recording, study workspaces."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.demo.run import SHARED_SAMPLES as SAMPLES  # noqa: E402  (../shared/data/skdh)
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.runtimes.environment import RUNTIMES_ENV
from tests.runtime_fixtures import runtime_root, skdh_0_16_runtime  # noqa: F401  (session fixtures)
from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401  (S3 fixtures: moto server on loopback)

WRIST_STEPS = """\
    - CalibrateAccelerometer: {min_hours: 24}
    - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
    - AccelThresholdWearDetection: {}
    - Sleep: {day_window: [12, 24]}
    - ActivityLevelClassification: {cutpoints: migueles_wrist_adult}
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not SAMPLES.exists() and os.environ.get("CI"):
        # In CI ../shared is always there: a missing folder must fail, not skip half the suite.
        raise pytest.UsageError(f"sample data not found at {SAMPLES}")
    if not SAMPLES.exists():
        skip = pytest.mark.skip(reason=f"sample data not found at {SAMPLES}")
        for item in items:
            if "samples" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def shared_runtime_cache(runtime_root: Path) -> Iterator[Path]:  # noqa: F811
    """Every catalog home in the session (and every CLI run) shares one runtime cache."""
    previous = os.environ.get(RUNTIMES_ENV)
    os.environ[RUNTIMES_ENV] = str(runtime_root)
    yield runtime_root
    if previous is None:
        os.environ.pop(RUNTIMES_ENV, None)
    else:
        os.environ[RUNTIMES_ENV] = previous


@pytest.fixture(scope="session")
def executor() -> Iterator[LocalExecutor]:
    """Two warm workers shared by the whole session: SKDH's import is paid once."""
    pool = LocalExecutor(2)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def wrist_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic 1.25-day wrist recording at 25 Hz, written once per test session."""
    from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin

    folder = tmp_path_factory.mktemp("recordings")
    path = folder / "P01_wrist.bin"
    write_geneactiv_bin(path, RecordingSpec(subject="P01", days=1.25, fs=25.0, seed=11))
    return path


def write_study(
    root: Path,
    *,
    study: str,
    files: dict[str, Path],
    steps: str = WRIST_STEPS,
    metadata: str | None = "subject,height_m\n",
    requirements: str = "metadata: [height_m]",
    extra: str = "",
    package: str = "scikit-digital-health==0.17.18",
    constraints: list[str] | None = None,
) -> Path:
    """A study workspace under `root`: studies/<study>.yaml, data/<study>/..., returns the configs folder."""
    data = root / "data" / study
    data.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, data / name)
    metadata_block = ""
    if metadata is not None:
        (root / "data" / f"{study}.csv").write_text(metadata)
        metadata_block = f"metadata:\n  - location: ../data/{study}.csv\n"
    configs = root / "studies"
    configs.mkdir(exist_ok=True)
    (configs / f"{study}.yaml").write_text(
        textwrap.dedent(
            f"""\
            study: {study}
            data:
              location: ../data/{study}
              include: ["*.bin", "*.cwa"]
              subject: '(?P<subject>[A-Za-z0-9]+)_'
            """
        )
        + metadata_block
        + f"requirements:\n  {requirements}\n"
        + f"pipeline:\n  package: {package}\n"
        + (f"  constraints: {json.dumps(constraints)}\n" if constraints else "")
        + "  steps:\n"
        + textwrap.indent(textwrap.dedent(steps), "    ")
        + f"output:\n  location: ../results/{study}\n"
        + extra
    )
    return configs


def scanned_study(root: Path, checks: Any = None, catalog_url: str | None = None, **study: Any) -> tuple[Catalog, Path]:
    """`write_study`, then a catalog under root/home that has scanned it; (catalog, configs folder).

    `checks` runs the config checks (default: in this process, with the installed SKDH).
    """
    from biomarkerflow.config.validate import run_workflow_checks, validate_source
    from biomarkerflow.stages.discovery import scan

    configs = write_study(root, **study)
    catalog = Catalog(catalog_url) if catalog_url else Catalog.for_home(root / "home")
    info = scan(catalog, str(configs), lambda url, text: validate_source(url, text, checks or run_workflow_checks))
    assert info.ok, [(s.problems, s.error) for s in info.studies]
    return catalog, configs


class DemoWorkspace:
    """The folder `biomarkerflow demo` built (its catalog is path/.biomarkerflow) and what it printed."""

    def __init__(self, path: Path, output: str) -> None:
        self.path = path
        self.output = output


DEMO_OPTIONS = ("--subjects", "1", "--days", "1.05", "--workers", "2")


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> DemoWorkspace:
    """A small demo workspace (1 subject, 1.05 days), built once per session by the real
    `biomarkerflow demo` (about 45 s). Tests share it: whatever one leaves there, the next sees."""
    return build_demo_workspace(tmp_path_factory.mktemp("demo") / "demo-workspace")


def build_demo_workspace(path: Path) -> DemoWorkspace:
    """Run the real `biomarkerflow demo` into `path` (a folder of its own)."""
    import subprocess
    import sys

    command = [str(Path(sys.executable).parent / "biomarkerflow"), "demo", "--workspace", str(path), *DEMO_OPTIONS]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return DemoWorkspace(path, result.stdout)
