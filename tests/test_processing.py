"""Stage 2 (processing) in-process: requirement gating on files arriving, and a worker killed mid-job."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.results import snapshots
from biomarkerflow.stages.discovery import scan
from biomarkerflow.stages.processing import plan, process
from tests.conftest import scanned_study
from tests.databases import BACKENDS, catalog_url


def states(catalog: Catalog, study: str) -> dict[str, str]:
    return {f.relative_path: f.state for f in catalog.files(study)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_subject_waits_until_all_its_files_arrived(
    tmp_path: Path, samples: Path, executor: LocalExecutor, backend: str
) -> None:
    with catalog_url(backend, tmp_path / "home") as url:
        _subject_waits_until_all_its_files_arrived(tmp_path, samples, executor, url)


def _subject_waits_until_all_its_files_arrived(
    tmp_path: Path, samples: Path, executor: LocalExecutor, url: str
) -> None:
    catalog, configs = scanned_study(
        tmp_path,
        catalog_url=url,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa", "ax3_a.cwa": samples / "ax3_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m\nax6,1.7\nax3,1.8\n",
        requirements="min_files_per_subject: 2",
    )
    info = process(catalog, executor)
    assert info.outcomes == []
    waiting = {f.relative_path: f.reason for f in catalog.files("gait")}
    assert waiting == {
        "ax3_a.cwa": "subject 'ax3' has 1 of 2 expected files",
        "ax6_a.cwa": "subject 'ax6' has 1 of 2 expected files",
    }
    # The second file of ax6 arrives: exactly ax6's two files run; ax3 keeps waiting.
    shutil.copyfile(samples / "ax6_sample.cwa", tmp_path / "data" / "gait" / "ax6_b.cwa")
    assert scan(catalog, str(configs)).studies[0].files.new == 1
    assert {(p.relative_path, p.will_run) for p in plan(catalog)} == {
        ("ax3_a.cwa", False),
        ("ax6_a.cwa", True),
        ("ax6_b.cwa", True),
    }
    info = process(catalog, executor)
    assert sorted(f.relative_path for f, _, _ in info.outcomes) == ["ax6_a.cwa", "ax6_b.cwa"]
    assert states(catalog, "gait") == {"ax3_a.cwa": "WAITING", "ax6_a.cwa": "SUCCEEDED", "ax6_b.cwa": "SUCCEEDED"}
    assert info.consolidated["gait"]["gait"] > 0


def _kill_worker_when_running(
    catalog: Catalog, executor: LocalExecutor, stop: threading.Event, killed: list[int]
) -> None:
    """Wait until the file is RUNNING, give SKDH two seconds, then kill -9 the worker."""
    while not stop.is_set():
        if any(f.state == "RUNNING" for f in catalog.files("wrist")):
            time.sleep(2.0)
            for pid in executor.worker_pids():
                psutil.Process(pid).kill()
                killed.append(pid)
            return
        time.sleep(0.1)


def test_worker_killed_mid_job_is_retried_and_leaves_one_result_set(tmp_path: Path, wrist_recording: Path) -> None:
    catalog, configs = scanned_study(
        tmp_path,
        study="wrist",
        files={"P01_wrist.bin": wrist_recording},
        metadata="subject,height_m\nP01,1.7\n",
        extra="retry_delay_seconds: 0.5\n",
    )
    killed: list[int] = []
    stop = threading.Event()
    executor = LocalExecutor(1)
    executor.prestart()
    killer = threading.Thread(target=_kill_worker_when_running, args=(catalog, executor, stop, killed))
    killer.start()
    try:
        info = process(catalog, executor)
    finally:
        stop.set()
        killer.join()
        executor.close()
    assert killed, "the worker was never seen running"
    runs = catalog.runs("wrist")
    assert [r.outcome for r in runs] == ["failed", "succeeded"]
    assert "worker process died" in (runs[0].error or "")
    assert [state for _, _, state in info.outcomes] == ["READY", "SUCCEEDED"]
    # Exactly one published result set; nothing half-written is visible.
    run_folders = [p for p in (tmp_path / "results" / "wrist" / "runs" / "P01" / "P01_wrist").iterdir()]
    assert [p.name for p in run_folders] == [runs[1].id]
    assert (run_folders[0] / "_SUCCESS").exists()


def test_a_killed_worker_fails_only_its_own_job(tmp_path: Path, wrist_recording: Path) -> None:
    """Two jobs run at once on two workers; killing one worker leaves the other job alone."""
    catalog, _ = scanned_study(
        tmp_path,
        study="wrist",
        files={"P01_wrist.bin": wrist_recording, "P02_wrist.bin": wrist_recording},
        metadata="subject,height_m\nP01,1.7\nP02,1.7\n",
        extra="max_attempts: 1\n",
    )
    executor = LocalExecutor(2)
    executor.prestart()
    victim: list[int] = []

    def kill_one_when_both_run() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if sum(f.state == "RUNNING" for f in catalog.files("wrist")) == 2:
                time.sleep(2.0)
                pid = executor.worker_pids()[0]
                psutil.Process(pid).kill()
                victim.append(pid)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one_when_both_run)
    killer.start()
    try:
        info = process(catalog, executor)
    finally:
        killer.join()
        executor.close()
    assert victim, "the two jobs were never seen running together"
    outcomes = sorted(state for _, _, state in info.outcomes)
    assert outcomes == ["FAILED", "SUCCEEDED"], [(f.relative_path, o.error) for f, o, _ in info.outcomes]
    (failed,) = [o for _, o, state in info.outcomes if state == "FAILED"]
    assert f"worker process {victim[0]}" in (failed.error or "") and "SIGKILL" in (failed.error or "")


def test_metadata_csv_problems_name_file_and_line(tmp_path: Path) -> None:
    import pytest

    from biomarkerflow.errors import StorageError
    from biomarkerflow.stages.processing import read_metadata

    csv = tmp_path / "subjects.csv"
    csv.write_text("subject,height_m\nS1,1.7\nS2,\nS1,1.8\n")
    with pytest.raises(StorageError, match=r"subjects.csv:4: subject 'S1' appears twice"):
        read_metadata(str(csv), "subject")
    csv.write_text("id,height_m\nS1,1.7\n")
    with pytest.raises(StorageError, match="has no column 'subject' \\(columns: id, height_m\\)"):
        read_metadata(str(csv), "subject")
    csv.write_text("subject,height_m,site\n007,1.7,A\nS2,,B\n")
    assert read_metadata(str(csv), "subject") == {
        "007": {"height_m": 1.7, "site": "A"},  # ids stay text: leading zeros kept
        "S2": {"height_m": None, "site": "B"},
    }


def test_bad_metadata_never_touches_the_catalog(tmp_path: Path, samples: Path, executor: LocalExecutor) -> None:
    catalog, configs = scanned_study(
        tmp_path,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m\nax6,1.7\n",
    )
    catalog.upsert_metadata("gait", {"ax6": {"height_m": 1.7}}, "earlier")
    (tmp_path / "data" / "gait.csv").write_text("subject,height_m\nax6,1.7\nax6,1.9\n")
    info = process(catalog, executor)
    assert any("appears twice" in p for p in info.gates[0].problems)
    assert catalog.metadata("gait") == {"ax6": {"height_m": 1.7}}


def test_file_still_changing_waits_even_without_a_rescan(
    tmp_path: Path, samples: Path, executor: LocalExecutor
) -> None:
    catalog, configs = scanned_study(
        tmp_path,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata=None,
        requirements="stable_seconds: 3600",
    )
    first_seen = catalog.files("gait")[0].fingerprint_seen_at
    with (tmp_path / "data" / "gait" / "ax6_a.cwa").open("ab") as growing:  # the copy goes on
        growing.write(b"\0" * 512)
    info = process(catalog, executor)  # no scan in between
    assert info.outcomes == []
    (file,) = catalog.files("gait")
    assert file.state == "WAITING" and "waits until unchanged for 3600 s" in (file.reason or "")
    assert file.fingerprint_seen_at > first_seen  # the clock restarted with the change


def test_pipeline_change_recomputes_exactly_the_finished_files(
    tmp_path: Path, samples: Path, executor: LocalExecutor
) -> None:
    catalog, configs = scanned_study(
        tmp_path,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m\nax6,1.7\n",
    )
    process(catalog, executor)
    config_file = configs / "gait.yaml"
    # A description is not part of the results: nothing becomes STALE.
    config_file.write_text(config_file.read_text().replace("study: gait\n", "study: gait\ndescription: lab\n"))
    assert scan(catalog, str(configs)).studies[0].stale == 0
    assert process(catalog, executor).outcomes == []
    # A step parameter is: the file is recomputed, the earlier run kept.
    config_file.write_text(config_file.read_text().replace("GaitLumbar: {}", "GaitLumbar: {height_factor: 0.6}"))
    info = scan(catalog, str(configs))
    assert (info.studies[0].config_change, info.studies[0].stale) == ("changed", 1)
    assert catalog.files("gait")[0].state == "STALE"
    (planned,) = plan(catalog)  # --dry-run: says what and why, changes nothing
    assert planned.will_run and planned.why.startswith("results are STALE: the study's pipeline")
    assert catalog.files("gait")[0].state == "STALE"
    assert [f.relative_path for f, _, _ in process(catalog, executor).outcomes] == ["ax6_a.cwa"]
    first, second = catalog.runs("gait")
    assert catalog.files("gait")[0].current_run_id == second.id
    assert Path(first.result_location or "").is_dir()  # nothing overwritten in place
    in_force = snapshots.current(str(tmp_path / "results" / "gait"))
    assert in_force is not None
    assert set(pd.read_parquet(in_force.tables["gait"])["run_id"]) == {second.id}


def test_corrected_height_recomputes_only_that_subject(tmp_path: Path, samples: Path, executor: LocalExecutor) -> None:
    catalog, configs = scanned_study(
        tmp_path,
        study="gait",
        files={"ax6_a.cwa": samples / "ax6_sample.cwa", "ax3_a.cwa": samples / "ax3_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m,site\nax6,1.7,A\nax3,1.8,A\n",
    )
    process(catalog, executor)
    metadata = tmp_path / "data" / "gait.csv"
    metadata.write_text("subject,height_m,site\nax6,1.7,B\nax3,1.8,A\n")  # not a pipeline input
    assert process(catalog, executor).outcomes == []
    metadata.write_text("subject,height_m,site\nax6,1.62,B\nax3,1.8,A\n")  # a corrected height
    info = process(catalog, executor)
    assert [f.relative_path for f, _, _ in info.outcomes] == ["ax6_a.cwa"]
    assert {f.relative_path: f.state for f in catalog.files("gait")} == {
        "ax3_a.cwa": "SUCCEEDED",
        "ax6_a.cwa": "SUCCEEDED",
    }
