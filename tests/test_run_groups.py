"""Run groups: shared job limits across studies and workers, and a time limit per job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.stages.processing import _group_limits, process
from tests.conftest import scanned_study
from tests.databases import BACKENDS, catalog_url


@pytest.fixture(params=BACKENDS)
def two_studies(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    with catalog_url(request.param, tmp_path / "home") as url:
        catalog = Catalog(url)
        for study in ("big", "small", "other"):
            catalog.upsert_study(
                study,
                config_source=f"/c/{study}.yaml",
                config_sha256="a" * 64,
                config={"study": study},
                output_location=str(tmp_path / study),
                data_location=str(tmp_path / "data"),
                priority=1 if study == "big" else 0,
            )
            catalog.register_files(
                study, [(f"/data/{study}/{i}.bin", f"{i}.bin", f"S{i}", 1000 - i, 1.0, "f") for i in range(4)]
            )
            for file in catalog.files(study):
                catalog.set_gate(file.id, file.state, True, None)
        yield catalog
        catalog.close()


def test_a_run_group_caps_claims_across_workers(two_studies: Catalog) -> None:
    catalog = two_studies
    limits = {"big": ("trial", 2), "small": ("trial", 2)}
    first = catalog.claim("w1", 3, 60, ["big", "small"], limits)
    second = catalog.claim("w2", 3, 60, ["big", "small"], limits)
    assert len(first) + len(second) == 2  # the group's limit, whoever asks
    assert {f.study_id for f in first} == {"big"}  # priority still orders within the limit
    # A study outside the group is not held back by it.
    assert len(catalog.claim("w3", 3, 60, ["other"], limits)) == 3
    # Giving one back frees one slot of the group.
    catalog.release("w1")
    assert len(catalog.claim("w2", 3, 60, ["big", "small"], limits)) == len(first)


def test_group_limits_take_the_tightest_of_jobs_and_cores() -> None:
    from biomarkerflow.config.schema import StudyConfig

    def config(name: str, **group: object) -> StudyConfig:
        return StudyConfig.model_validate(
            {
                "study": name,
                "data": {"location": "d"},
                "pipeline": {"package": "scikit-digital-health==0.17.18", "steps": [{"Sleep": {}}]},
                "run_group": {"name": "g", **group},
            }
        )

    configs = {"a": config("a", max_concurrent_jobs=5), "b": config("b", max_cpu=4)}
    assert _group_limits(configs, cores_per_job=2) == {"a": ("g", 2), "b": ("g", 2)}
    assert _group_limits(configs, cores_per_job=1) == {"a": ("g", 4), "b": ("g", 4)}
    assert _group_limits({"c": config("c", max_job_seconds=10)}, cores_per_job=1) == {}


def test_a_job_over_its_time_limit_is_stopped_and_marked(
    tmp_path: Path, wrist_recording: Path, executor: LocalExecutor
) -> None:
    catalog, _ = scanned_study(
        tmp_path,
        study="wrist",
        files={"P01_wrist.bin": wrist_recording},
        metadata="subject,height_m\nP01,1.7\n",
        extra="max_attempts: 2\nretry_delay_seconds: 0\nrun_group: {name: quick, max_job_seconds: 2}\n",
    )
    info = process(catalog, executor)
    assert [state for _, _, state in info.outcomes] == ["FAILED"]
    (file,) = catalog.files("wrist")
    assert file.state == "FAILED" and "stopped after 2 s" in (file.last_error or "")
    runs = catalog.runs("wrist")
    assert [r.outcome for r in runs] == ["failed"]  # over time is final: the file would take as long again
    assert "max_job_seconds" in (runs[0].error or "")
    assert not (tmp_path / "results" / "wrist" / "runs").exists()  # nothing half-written is visible
