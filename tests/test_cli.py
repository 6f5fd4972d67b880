"""Acceptance: the real `biomarkerflow` command in a subprocess, on a real study folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from biomarkerflow.catalog.manager import Catalog, FileRecord
from tests.conftest import write_study


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "biomarkerflow.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


@dataclass(frozen=True)
class StudyRun:
    """One study taken through the everyday commands, in order, once per module."""

    root: Path
    configs: Path
    home: Path
    first: subprocess.CompletedProcess[str]  # run: P01 ok, P02 waits for height, P03 corrupt
    status_after_first: subprocess.CompletedProcess[str]
    rescan: subprocess.CompletedProcess[str]
    files_before_rescan: list[FileRecord]
    files_after_rescan: list[FileRecord]
    runs_before_metadata: set[str]
    second: subprocess.CompletedProcess[str]  # process, after P02's height arrived


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, wrist_recording: Path) -> StudyRun:
    root = tmp_path_factory.mktemp("cli-study")
    corrupt = root / "corrupt.bin"
    corrupt.write_bytes(wrist_recording.read_bytes()[:20_000])
    configs = write_study(
        root,
        study="wrist",
        files={"P01_wrist.bin": wrist_recording, "P02_wrist.bin": wrist_recording, "P03_wrist.bin": corrupt},
        metadata="subject,height_m\nP01,1.70\nP02,\nP03,1.65\n",
        extra="max_attempts: 1\n",
    )
    home = root / "home"
    first = cli(home, "run", "--configs", str(configs), "--workers", "2")
    status_after_first = cli(home, "status", "--json")
    catalog = Catalog.for_home(home)
    files_before_rescan = catalog.files("wrist")
    rescan = cli(home, "scan", "--configs", str(configs))
    files_after_rescan = catalog.files("wrist")
    runs_before_metadata = {r.id for r in catalog.runs("wrist")}
    (root / "data" / "wrist.csv").write_text("subject,height_m\nP01,1.70\nP02,1.82\nP03,1.65\n")
    second = cli(home, "process", "--workers", "1")
    return StudyRun(
        root,
        configs,
        home,
        first,
        status_after_first,
        rescan,
        files_before_rescan,
        files_after_rescan,
        runs_before_metadata,
        second,
    )


def test_first_run_reports_failure_in_exit_code_and_output(study: StudyRun) -> None:
    assert study.first.returncode == 1, study.first.stderr
    out = study.first.stdout
    assert "SUCCEEDED wrist/P01_wrist.bin" in out
    assert "FAILED    wrist/P03_wrist.bin" in out
    assert "1 succeeded, 1 failed" in out


def test_status_json_names_waiting_reason_and_failure(study: StudyRun) -> None:
    result = study.status_after_first
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    (wrist,) = payload["studies"]
    assert payload["workers"] == []  # the process command that ran has unregistered
    assert wrist["counts"]["SUCCEEDED"] == 1 and wrist["counts"]["WAITING"] == 1 and wrist["counts"]["FAILED"] == 1
    assert wrist["waiting"] == [{"file": "P02_wrist.bin", "reason": "metadata missing for subject 'P02': height_m"}]
    (failed,) = wrist["failed"]
    assert failed["file"] == "P03_wrist.bin" and failed["error"]


def test_failed_job_leaves_no_result_folder(study: StudyRun) -> None:
    runs = study.root / "results" / "wrist" / "runs"
    assert (runs / "P01").is_dir()
    assert not (runs / "P03").exists()


def test_runs_are_metered(study: StudyRun) -> None:
    catalog = Catalog.for_home(study.home)
    (p01,) = [f for f in catalog.files("wrist") if f.subject == "P01"]
    (run,) = catalog.runs(file_id=p01.id)
    assert run.outcome == "succeeded" and run.package_version == "0.17.18"
    assert run.wall_seconds and run.wall_seconds > 0
    assert run.cpu_seconds and run.cpu_seconds > 0.5  # SKDH did real work
    assert run.peak_rss_bytes and run.peak_rss_bytes > 100 * 2**20  # SKDH + a day of samples
    assert p01.size <= (run.bytes_read or 0) < 3 * p01.size  # the reader read the file, about once
    written = sum(p.stat().st_size for p in Path(run.result_location or "").iterdir())
    assert run.bytes_written == written  # every byte of the published folder
    (p03,) = [f for f in catalog.files("wrist") if f.subject == "P03"]
    (failed,) = catalog.runs(file_id=p03.id)
    assert failed.outcome == "failed" and failed.error and failed.wall_seconds is not None


def test_provenance_travels_with_results(study: StudyRun) -> None:
    from biomarkerflow.results.writer import read_provenance

    catalog = Catalog.for_home(study.home)
    (p01,) = [f for f in catalog.files("wrist") if f.subject == "P01"]
    folder = Path(catalog.runs(file_id=p01.id)[0].result_location or "")
    sidecar = json.loads((folder / "provenance.json").read_text())
    embedded = read_provenance(str(folder / "sleep.parquet"))
    assert embedded == sidecar
    assert sidecar["run_id"] == folder.name
    assert sidecar["input"]["fingerprint"] == p01.fingerprint
    assert sidecar["package"] == {"name": "scikit-digital-health", "version": "0.17.18"}
    assert sidecar["config"]["sha256"] == catalog.get_study("wrist").config_sha256  # type: ignore[union-attr]
    steps = [s["step"] for s in sidecar["pipeline"]]
    assert steps == [
        "ReadBin",
        "CalibrateAccelerometer",
        "GetDayWindowIndices",
        "AccelThresholdWearDetection",
        "Sleep",
        "ActivityLevelClassification",
    ]
    sleep_params = sidecar["pipeline"][4]["params"]
    assert sleep_params["day_window"] == [12, 24] and "min_rest_block" in sleep_params  # defaults recorded too


def test_rescan_of_unchanged_study_changes_nothing(study: StudyRun) -> None:
    assert study.rescan.returncode == 0, study.rescan.stderr
    assert "unchanged wrist: 3 files (0 new, 0 changed, 3 unchanged)" in study.rescan.stdout
    assert study.files_after_rescan == study.files_before_rescan


def test_metadata_arrival_runs_exactly_the_waiting_file(study: StudyRun) -> None:
    assert study.second.returncode == 0, study.second.stdout + study.second.stderr
    catalog = Catalog.for_home(study.home)
    new_runs = [r for r in catalog.runs("wrist") if r.id not in study.runs_before_metadata]
    files = {f.id: f for f in catalog.files("wrist")}
    assert [files[r.file_id].subject for r in new_runs] == ["P02"]
    assert files[new_runs[0].file_id].state == "SUCCEEDED"
    assert {f.subject: f.state for f in files.values()}["P03"] == "FAILED"  # not retried: max_attempts 1


def test_unknown_study_is_an_error_not_a_no_op(study: StudyRun) -> None:
    for command in (["process", "--study", "nosuch"], ["status", "--study", "nosuch"]):
        result = cli(study.home, *command)
        assert result.returncode == 4, result.stdout
        assert "no study 'nosuch'" in result.stderr and "wrist" in result.stderr


def test_scan_of_missing_data_location_exits_3(tmp_path: Path) -> None:
    configs = tmp_path / "studies"
    configs.mkdir()
    (configs / "s.yaml").write_text(
        "study: s\ndata:\n  location: ../nowhere\npipeline:\n  package: scikit-digital-health==0.17.18\n"
        "  steps:\n    - GaitLumbar: {}\n"
    )
    result = cli(tmp_path / "home", "scan", "--configs", str(configs))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "nowhere does not exist" in result.stdout


def test_query_reads_consolidated_tables(study: StudyRun) -> None:
    result = cli(
        study.home,
        "query",
        "--study",
        "wrist",
        "--format",
        "csv",
        "SELECT subject, COUNT(*) AS days FROM activity GROUP BY subject ORDER BY subject",
    )
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(__import__("io").StringIO(result.stdout))
    assert frame["subject"].tolist() == ["P01", "P02"]
    # P01 and P02 are the same recording: identical biomarkers.
    same = cli(
        study.home,
        "query",
        "--study",
        "wrist",
        "--format",
        "json",
        'SELECT subject, "total sleep time" AS tst FROM sleep ORDER BY subject, "Day N"',
    )
    rows = json.loads(same.stdout)
    by_subject: dict[str, list[object]] = {}
    for row in rows:
        by_subject.setdefault(row["subject"], []).append(row["tst"])
    assert by_subject["P01"] == by_subject["P02"]


def test_query_errors_name_the_tables(study: StudyRun) -> None:
    result = cli(study.home, "query", "--study", "wrist", "SELECT * FROM nosuchtable")
    assert result.returncode == 2
    assert "activity" in result.stderr and "sleep" in result.stderr and "wear" in result.stderr
    missing = cli(study.home, "query", "--study", "nosuchstudy", "SELECT 1")
    assert missing.returncode == 4 and "no study 'nosuchstudy'" in missing.stderr


def test_validate_cli_reports_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "study: x\ndata:\n  location: d\n  subject: '(?P<subject>['\npipeline:\n  steps:\n    - NoSuchStep: {}\n"
    )
    result = cli(tmp_path / "home", "validate", str(bad))
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith(f"{bad}:4:") and "data.subject" in line for line in lines), lines
    assert any(line.startswith(f"{bad}:7:") and "NoSuchStep" in line for line in lines), lines


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    result = cli(tmp_path / "unused-home", "demo", "--workspace", str(workspace), "--subjects", "2", "--days", "1.05")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "WAITING demo-wrist/S02_wrist.bin: metadata missing for subject 'S02': height_m" in out
    assert "SUCCEEDED demo-wrist/S02_wrist.bin" in out.split("One subject waits")[1]
    first_table, versions_table = out.split("two pinned SKDH versions")
    summary = [line for line in first_table.splitlines() if line.strip().startswith("│") and ("S0" in line)]
    assert len(summary) == 2
    nights = [line.split("│")[3:5] for line in versions_table.splitlines() if line.strip().startswith("│ S01")]
    assert nights, versions_table
    catalog = Catalog.for_home(workspace / ".biomarkerflow")
    states = {s.study_id: s.counts for s in catalog.status()}
    assert states["demo-wrist"]["SUCCEEDED"] == 2
    assert states["demo-lab-gait"]["SUCCEEDED"] == 3
    assert states["demo-wrist-skdh-0.16.15"]["SUCCEEDED"] == 1
    assert (workspace / "results" / "demo-wrist" / "tables" / "sleep.parquet").exists()
    assert "What it cost (aws-fargate-us-east-1" in out
    assert all(r.cost and r.cost > 0 for r in catalog.runs())  # every run charged
    assert (workspace / ".biomarkerflow" / "settings.yaml").exists()
    assert not (tmp_path / "unused-home" / "settings.yaml").exists()  # the demo keeps to its workspace


def test_postgresql_catalog_end_to_end(tmp_path: Path, samples: Path) -> None:
    """The everyday commands against a real PostgreSQL catalog (--catalog / BIOMARKERFLOW_CATALOG)."""
    from tests.conftest import write_study
    from tests.databases import postgres_database

    configs = write_study(
        tmp_path,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa", "ax3_a.cwa": samples / "ax3_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m\nax6,1.7\n",
    )
    home = tmp_path / "home"
    with postgres_database() as url:
        ran = cli(home, "--catalog", url, "run", "--configs", str(configs), "--workers", "1")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "done: 1 succeeded, 0 failed" in ran.stdout
        status = json.loads(cli(home, "--catalog", url, "status", "--json").stdout)["studies"]
        assert status[0]["counts"]["SUCCEEDED"] == 1
        assert status[0]["waiting"] == [{"file": "ax3_a.cwa", "reason": "no metadata row for subject 'ax3'"}]
        result = next((tmp_path / "results" / "gait" / "runs").rglob("gait.parquet"))
        traced = json.loads(cli(home, "--catalog", url, "lineage", str(result), "--json").stdout)
        assert traced["catalog"]["status"] == "current"
        assert not (home / "catalog.db").exists()  # nothing went to the SQLite default
