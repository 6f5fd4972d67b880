"""`biomarkerflow gc`: what killed work left behind goes (abandoned temporary publish folders,
run folders an upload did not finish, snapshots long out of force, half-made runtime
builds); what a live job or the tables in force use stays."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import s3fs

from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.results import cleanup, query, snapshots
from biomarkerflow.runtimes.layout import BUILD_PREFIX
from biomarkerflow.service import Platform
from biomarkerflow.stages.processing import process
from tests.test_claims import held_study
from tests.test_cli import cli

HOURS_AGO = time.time() - 2 * 3600


def _aged(path: Path, when: float = HOURS_AGO) -> Path:
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (when, when))
    return path


def _temporary(parent: Path, name: str) -> Path:
    folder = parent / f".{name}.{uuid.uuid4().hex}.tmp"
    folder.mkdir(parents=True)
    (folder / "table.parquet").write_bytes(b"x" * 100)
    return folder


def test_gc_removes_leftovers_and_keeps_what_is_in_use(tmp_path: Path, executor: LocalExecutor) -> None:
    catalog, home, release = held_study(tmp_path, files=2)
    release.touch()
    process(catalog, executor)
    output = str(tmp_path / "results")
    runs = tmp_path / "results" / "runs"
    abandoned = _aged(_temporary(runs / "S00" / "S00_a", "20261201T000000-deadbeef"))
    fresh = _temporary(runs / "S01" / "S01_a", "20261201T000001-deadbeef")  # a publish in progress
    in_force = snapshots.current(output)
    assert in_force is not None and in_force.id is not None
    made = snapshots.made_at(in_force.id)
    assert made is not None
    # Two older snapshots: one replaced 2 h ago (expired), one replaced just now (readers may be on it).
    old_ids = [snapshots.new_id(made - timedelta(hours=3)), snapshots.new_id(made - timedelta(hours=2))]
    for snapshot_id in old_ids:
        folder = Path(snapshots.snapshot_location(output, snapshot_id))
        folder.mkdir(parents=True)
        (folder / "csv_rows.parquet").write_bytes(b"old")
    build = Path(os.environ["BIOMARKERFLOW_RUNTIMES"]) / f"{BUILD_PREFIX}x-{'0' * 8}-{uuid.uuid4().hex}"
    build.mkdir(parents=True)  # a build whose builder died (no lock held)
    platform = Platform(home=home)

    planned = platform.gc(dry_run=True)
    kinds = {(item.kind, Path(item.url).name) for item in planned.leftovers}
    assert ("temporary", abandoned.name) in kinds and ("expired snapshot", old_ids[0]) in kinds
    assert ("half-made runtime build", build.name) in kinds
    assert not any(name in (fresh.name, old_ids[1], in_force.id) for _, name in kinds), kinds
    assert abandoned.exists() and build.exists()  # a dry run removes nothing
    shown = json.loads(cli(home, "gc", "--dry-run", "--json").stdout)
    assert {(item["kind"], Path(item["location"]).name) for item in shown["would_remove"]} == kinds

    done = platform.gc()
    assert {(item.kind, Path(item.url).name) for item in done.leftovers} == kinds
    assert not abandoned.exists() and not build.exists() and fresh.exists()
    assert snapshots.snapshot_ids(output) == sorted([old_ids[1], in_force.id])
    found = query.run_query(output, "SELECT count(*) AS n FROM csv_rows")
    assert int(found["n"][0]) == 2  # the tables in force still answer
    for file in catalog.files("held"):  # every run folder in use is whole
        run = catalog.get_run(file.current_run_id or "")
        assert run is not None and (Path(run.result_location or "") / "_SUCCESS").exists()
    assert platform.gc().leftovers == []
    platform.close()


def test_s3_run_folders_without_success_go_unless_their_run_is_running(s3_bucket: str) -> None:
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket = s3_bucket.removeprefix("s3://")
    output = f"{s3_bucket}/study"
    complete, cut, running = "20261201T000000-aaaaaaaa", "20261201T000001-bbbbbbbb", "20261201T000002-cccccccc"
    fs.pipe(
        {
            f"{bucket}/study/runs/S1/f/{complete}/wear.parquet": b"w",
            f"{bucket}/study/runs/S1/f/{complete}/_SUCCESS": b"",
            f"{bucket}/study/runs/S1/f/{cut}/wear.parquet": b"w",  # the upload stopped before its marker
            f"{bucket}/study/runs/S2/g/{running}/wear.parquet": b"w",  # still being uploaded
        }
    )
    later = time.time() + 2 * 3600  # S3 sets the objects' times: look from two hours on
    found = cleanup.leftovers(output, running_runs={running}, now=later)
    assert [(item.kind, item.url) for item in found] == [("unmarked run folder", f"{output}/runs/S1/f/{cut}")]
    assert cleanup.leftovers(output, running_runs=set(), now=time.time()) == []  # too young to judge
    cleanup.remove(found)
    left = sorted(key.removeprefix(f"{bucket}/study/") for key in fs.find(f"{bucket}/study"))
    assert left == [f"runs/S1/f/{complete}/_SUCCESS", f"runs/S1/f/{complete}/wear.parquet",
                    f"runs/S2/g/{running}/wear.parquet"]  # fmt: skip


def test_watch_runs_gc(tmp_path: Path) -> None:
    catalog, home, release = held_study(tmp_path, files=1)
    release.touch()
    abandoned = _aged(_temporary(tmp_path / "results" / "runs" / "S00" / "S00_a", "20261201T000000-deadbeef"))
    result = cli(home, "watch", "--configs", str(tmp_path / "studies"), "--once", "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not abandoned.exists()  # its first round cleaned up (then every processing.gc_every_hours)
    assert [f.state for f in catalog.files("held")] == ["SUCCEEDED"]
