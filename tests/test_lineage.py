"""Lineage: a result, a consolidated table and an input file traced back through one real processed study.

The study is processed once for the module; every test reads what the catalog says
*now* (current run, runs of the file), so the tests hold in any order, also after the
last test has changed the pipeline and recomputed the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from biomarkerflow.catalog.manager import Catalog, FileRecord, RunRecord
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.errors import BiomarkerflowError
from biomarkerflow.results.lineage import LineageError, lineage, render
from biomarkerflow.results.writer import write_run
from biomarkerflow.stages.discovery import scan
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study

STUDY = "wrist"
STEPS = [
    "ReadBin",  # chosen by the file's extension, recorded as a step
    "CalibrateAccelerometer",
    "GetDayWindowIndices",
    "AccelThresholdWearDetection",
    "Sleep",
    "ActivityLevelClassification",
]


@dataclass(frozen=True)
class Processed:
    root: Path
    catalog: Catalog
    configs: Path

    def current(self) -> tuple[FileRecord, RunRecord]:
        (current,) = self.catalog.current_results(STUDY)
        return current

    @property
    def tables(self) -> Path:
        return self.root / "results" / STUDY / "tables"


@pytest.fixture(scope="module")
def processed(
    tmp_path_factory: pytest.TempPathFactory, wrist_recording: Path, executor: LocalExecutor
) -> Iterator[Processed]:
    root = tmp_path_factory.mktemp("lineage")
    catalog, configs = scanned_study(
        root, study=STUDY, files={"P01_wrist.bin": wrist_recording}, metadata="subject,height_m\nP01,1.7\n"
    )
    info = process(catalog, executor)
    assert info.succeeded == 1, info.outcomes
    yield Processed(root, catalog, configs)
    catalog.close()


def test_result_file_names_exact_input_config_pipeline_and_packages(processed: Processed) -> None:
    file, run = processed.current()
    study = processed.catalog.get_study(STUDY)
    assert study is not None and run.result_location
    data = lineage(f"{run.result_location}/sleep.parquet", processed.catalog)
    assert data["kind"] == "result"
    assert data["input"]["url"] == file.url
    assert data["input"]["size"] == file.size == Path(file.url).stat().st_size
    assert data["input"]["fingerprint"] == file.fingerprint
    assert data["config"] == {
        "source": study.config_source,
        "sha256": study.config_sha256,
        "package_pin": "scikit-digital-health==0.17.18",
    }
    assert [step["step"] for step in data["pipeline"]] == STEPS
    assert data["pipeline"][1]["params"]["min_hours"] == 24  # what the config says
    assert "sd_criteria" in data["pipeline"][1]["params"]  # and the defaults it did not say
    runtime = data["runtime"]
    assert runtime["package"] == {"name": "scikit-digital-health", "version": run.package_version}
    assert run.package_version == "0.17.18"
    assert runtime["recorded"] and runtime["key_packages"]["numpy"] == np.__version__
    assert runtime["lock_hash"] and data["catalog"]["lock_hash"] == runtime["lock_hash"]
    assert data["run"]["id"] == run.id
    assert data["result"]["files"] == [
        "activity.parquet",
        "activity.png",
        "calibrate_accelerometer.parquet",
        "events.parquet",
        "quality.parquet",
        "quality_days.parquet",
        "sleep.parquet",
        "wear.parquet",
    ]
    assert data["result"]["complete"]
    assert data["catalog"]["status"] == "current" and data["catalog"]["attempt"] == 1
    assert data["notes"] == []


def test_provenance_json_and_run_folder_give_the_same_chain(processed: Processed) -> None:
    _, run = processed.current()
    assert run.result_location
    by_file = lineage(f"{run.result_location}/sleep.parquet", processed.catalog)
    for target in (f"{run.result_location}/provenance.json", run.result_location):
        other = lineage(target, processed.catalog)
        assert other["result"]["folder"] == run.result_location
        assert {k: other[k] for k in ("input", "config", "pipeline", "runtime", "run")} == {
            k: by_file[k] for k in ("input", "config", "pipeline", "runtime", "run")
        }


def test_consolidated_table_lists_the_catalogs_current_runs(processed: Processed) -> None:
    current = sorted(run.id for _, run in processed.catalog.current_results(STUDY))
    folder_lock = lineage(processed.current()[1].result_location or "", None)["runtime"]["lock_hash"]
    data = lineage(str(processed.tables / "sleep.parquet"), processed.catalog)
    assert data["kind"] == "table" and data["study"] == STUDY and data["up_to_date"] is True
    assert [run["id"] for run in data["runs"]] == current
    assert data["manifest"] == current
    (run,) = data["runs"]
    assert (run["subject"], run["file"], run["package_version"]) == ("P01", "P01_wrist.bin", "0.17.18")
    assert run["lock_hash"] == folder_lock and run["lock_hash"]
    assert run["current"] is True and run["rows"] == data["rows"] > 0
    # The tables folder itself: every run its manifest names.
    assert [r["id"] for r in lineage(str(processed.tables), processed.catalog)["runs"]] == current
    # Without a catalog the run folders are found by searching <output>/runs.
    alone = lineage(str(processed.tables / "sleep.parquet"), None)
    assert [(r["id"], r["folder"], r["current"]) for r in alone["runs"]] == [(current[0], run["folder"], None)]


def test_input_file_lists_its_runs_and_marks_the_current(processed: Processed) -> None:
    file, run = processed.current()
    data = lineage(file.url, processed.catalog)
    assert data["kind"] == "input"
    assert (data["file"]["study"], data["file"]["state"], data["file"]["size"]) == (STUDY, "SUCCEEDED", file.size)
    runs = processed.catalog.runs(STUDY, file_id=file.id)
    assert [r["id"] for r in data["runs"]] == [r.id for r in runs]
    assert [r["id"] for r in data["runs"] if r["status"] == "current"] == [run.id]
    assert data["current"]["run"]["id"] == run.id and data["current"]["input"]["url"] == file.url
    # The path relative to the study's data location names the same file.
    assert lineage("P01_wrist.bin", processed.catalog)["file"]["url"] == file.url


def test_render_shows_the_chain(processed: Processed) -> None:
    file, run = processed.current()
    text = "\n".join(render(lineage(f"{run.result_location}/sleep.parquet", processed.catalog)))
    assert f"input    {file.url}" in text
    assert "scikit-digital-health 0.17.18" in text
    assert "CalibrateAccelerometer(" in text and "min_hours=24" in text
    assert f"run      {run.id}" in text and "current result" in text
    assert file.url in "\n".join(render(lineage(file.url, processed.catalog)))
    assert run.id in "\n".join(render(lineage(str(processed.tables / "sleep.parquet"), processed.catalog)))


def test_unknown_path_raises_a_clear_error(processed: Processed, tmp_path: Path) -> None:
    stray = tmp_path / "notes.txt"
    stray.write_text("not a result")
    for target in (str(stray), str(tmp_path / "missing.parquet"), str(tmp_path / "tables" / "missing.parquet")):
        with pytest.raises(BiomarkerflowError, match=f"no result, table or catalogued input file at {target}") as err:
            lineage(target, processed.catalog)
        assert "biomarkerflow status" in (err.value.hint or "")
    # An input file is only known through a catalog.
    with pytest.raises(LineageError, match="no result, table or catalogued input file"):
        lineage(processed.current()[0].url, None)


def test_run_folder_without_provenance_names_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "runs" / "S1" / "f" / "run-1"
    folder.mkdir(parents=True)
    (folder / "sleep.csv").write_text("a\n1\n")
    for target in (folder, folder / "sleep.csv"):
        with pytest.raises(LineageError, match=f"result folder {folder} has no provenance.json"):
            lineage(str(target), None)


def test_older_provenance_without_hash_or_runtime_says_not_recorded(tmp_path: Path) -> None:
    import pandas as pd

    folder = tmp_path / "out" / "runs" / "S1" / "f" / "run-1"
    provenance = {
        "run_id": "run-1",
        "input": {"url": "/data/S1_f.bin", "size": 12_300_000, "fingerprint": "12300000:1.0"},
        "config": {"source": "/studies/old.yaml", "sha256": "9c1e" * 16},
        "package": {"name": "scikit-digital-health", "version": "0.16.15"},
        "pipeline": [{"step": "ReadBin", "params": {}}],
    }
    write_run(str(folder), {"sleep": pd.DataFrame({"x": [1]})}, provenance, key_columns={}, formats=["parquet"])
    data = lineage(str(folder / "sleep.parquet"), None)
    assert data["input"]["sha256"] is None and data["runtime"]["recorded"] is False
    assert data["catalog"] is None
    text = "\n".join(render(data))
    assert "12.3 MB, sha256 not recorded" in text
    assert "scikit-digital-health 0.16.15; runtime not recorded" in text
    assert "not checked against a catalog" in text


def test_recomputed_file_leaves_the_old_run_superseded(processed: Processed, executor: LocalExecutor) -> None:
    """Last on purpose (though the others do not depend on it): it changes the study's pipeline."""
    file, old = processed.current()
    assert old.result_location
    config = processed.configs / f"{STUDY}.yaml"
    config.write_text(
        config.read_text().replace("AccelThresholdWearDetection: {}", "AccelThresholdWearDetection: {sd_crit: 0.013}")
    )
    assert scan(processed.catalog, str(processed.configs)).studies[0].stale == 1
    stale = lineage(old.result_location, processed.catalog)
    assert stale["catalog"]["status"] == "outdated" and "STALE" in stale["catalog"]["why"]
    assert any("study config has changed" in note for note in stale["notes"])
    assert process(processed.catalog, executor).succeeded == 1
    _, new = processed.current()
    assert new.id != old.id
    data = lineage(old.result_location, processed.catalog)
    assert (data["catalog"]["status"], data["catalog"]["superseded_by"]) == ("superseded", new.id)
    assert f"superseded by {new.id}" in "\n".join(render(data))
    assert lineage(new.result_location or "", processed.catalog)["catalog"]["status"] == "current"
    statuses = {r["id"]: r["status"] for r in lineage(file.url, processed.catalog)["runs"]}
    assert statuses == {old.id: "superseded", new.id: "current"}
    table = lineage(str(processed.tables / "sleep.parquet"), processed.catalog)
    assert [r["id"] for r in table["runs"]] == [new.id]
