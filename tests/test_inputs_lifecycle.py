"""Inputs that go away, come back or move, and config files that are renamed: a deleted file
becomes REMOVED and leaves the study's tables (its run folder stays), one that comes back
unchanged or under a new name is matched by its fingerprint and not recomputed, and a
renamed config keeps its study."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.results import query
from biomarkerflow.results.lineage import lineage
from biomarkerflow.stages.discovery import scan
from biomarkerflow.stages.processing import process
from tests.test_claims import STUDY, held_study


def _processed(tmp_path: Path, executor: LocalExecutor) -> tuple[Catalog, Path]:
    catalog, _, release = held_study(tmp_path, files=3)
    release.touch()  # the jobs run straight through
    info = process(catalog, executor)
    assert [state for _, _, state in info.outcomes] == ["SUCCEEDED"] * 3
    return catalog, tmp_path / "studies"


def _states(catalog: Catalog) -> dict[str, str]:
    return {f.relative_path: f.state for f in catalog.files(STUDY)}


def _subjects_in_tables(tmp_path: Path) -> list[str]:
    found = query.run_query(str(tmp_path / "results"), "SELECT subject FROM csv_rows ORDER BY subject")
    return list(found["subject"])


def test_a_deleted_file_leaves_the_tables_and_comes_back_without_recomputing(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    catalog, configs = _processed(tmp_path, executor)
    data = tmp_path / "data"
    [gone] = [f for f in catalog.files(STUDY) if f.relative_path == "S01_a.csv"]
    kept = tmp_path / "kept.csv"
    shutil.move(data / "S01_a.csv", kept)  # a move keeps the file's mtime: the same fingerprint later

    [info] = scan(catalog, str(configs)).studies
    assert (info.files.removed, info.files.unchanged) == (1, 2)
    assert _states(catalog) == {"S00_a.csv": "SUCCEEDED", "S01_a.csv": "REMOVED", "S02_a.csv": "SUCCEEDED"}
    assert process(catalog, executor).outcomes == []
    assert _subjects_in_tables(tmp_path) == ["S00", "S02"]
    run = catalog.get_run(gone.current_run_id or "")
    assert run is not None and run.result_location and Path(run.result_location).is_dir()  # its runs are kept
    view = lineage(run.result_location, catalog)["catalog"]
    assert (view["status"], view["why"]) == ("removed", "its input file was removed from the data location")

    shutil.move(kept, data / "S01_a.csv")
    [back] = scan(catalog, str(configs)).studies
    assert (back.files.restored, back.files.new) == (1, 0)
    assert set(_states(catalog).values()) == {"SUCCEEDED"}
    assert process(catalog, executor).outcomes == []  # nothing recomputed
    assert _subjects_in_tables(tmp_path) == ["S00", "S01", "S02"]
    assert len(catalog.runs(STUDY)) == 3


def test_a_file_moved_within_the_data_location_keeps_its_results(tmp_path: Path, executor: LocalExecutor) -> None:
    catalog, configs = _processed(tmp_path, executor)
    data = tmp_path / "data"
    (data / "2026").mkdir()
    os.rename(data / "S02_a.csv", data / "2026" / "S02_a.csv")
    [info] = scan(catalog, str(configs)).studies
    assert (info.files.moved, info.files.new, info.files.removed) == (1, 0, 0)
    [moved] = [f for f in catalog.files(STUDY) if f.subject == "S02"]
    assert (moved.relative_path, moved.state) == ("2026/S02_a.csv", "SUCCEEDED")
    assert any("moved from S02_a.csv (same content)" in (reason or "") for *_, reason in catalog.events(moved.id))
    assert process(catalog, executor).outcomes == [] and len(catalog.runs(STUDY)) == 3


def test_an_empty_listing_removes_nothing(tmp_path: Path, executor: LocalExecutor) -> None:
    """A data location that lists no file is more likely a mount that is down than a study emptied."""
    catalog, configs = _processed(tmp_path, executor)
    aside = tmp_path / "aside"
    shutil.move(tmp_path / "data", aside)
    (tmp_path / "data").mkdir()
    [info] = scan(catalog, str(configs)).studies
    assert info.files.removed == 0 and set(_states(catalog).values()) == {"SUCCEEDED"}


def test_a_renamed_config_keeps_its_study_and_two_configs_of_one_id_are_named(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    catalog, configs = _processed(tmp_path, executor)
    os.rename(configs / f"{STUDY}.yaml", configs / f"{STUDY}-renamed.yaml")
    [info] = scan(catalog, str(configs)).studies
    assert info.config_change in ("changed", "unchanged") and not info.problems, info
    assert info.study_id == STUDY and info.stale == 0 and info.files.unchanged == 3
    study = catalog.get_study(STUDY)
    assert study is not None and study.config_source.endswith(f"{STUDY}-renamed.yaml")
    assert process(catalog, executor).outcomes == []  # nothing recomputed

    shutil.copy(configs / f"{STUDY}-renamed.yaml", configs / f"{STUDY}-copy.yaml")
    result = scan(catalog, str(configs))
    [problem] = [p for s in result.studies for p in s.problems]
    assert f"study id '{STUDY}' is already registered in the catalog by" in str(problem)
    assert f"{STUDY}-renamed.yaml" in str(problem) and f"{STUDY}-copy.yaml" in str(problem)
