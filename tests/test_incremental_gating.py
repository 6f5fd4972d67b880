"""Work proportional to change (issue 19): gating re-checks only the files a change concerns,
and `status` counts and groups files by reason in the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from biomarkerflow.catalog.manager import Catalog, utcnow
from biomarkerflow.stages import discovery, gating
from tests.conftest import scanned_study
from tests.databases import BACKENDS, catalog_url

SUBJECTS = [f"S{i:02d}" for i in range(10)]


def _study(
    root: Path,
    *,
    requirements: str = "metadata: [height_m]",
    metadata: str = "subject,height_m\nS00,\n",
    per_subject: int = 3,
    url: str | None = None,
) -> tuple[Catalog, Path]:
    """A study of 3 files for each of 10 subjects (tiny GENEActiv-looking files: no job reads them)."""
    tiny = root / "tiny.bin"
    tiny.write_bytes(b"Device Identity\n")
    files = {f"{s}_{n}.bin": tiny for s in SUBJECTS for n in range(per_subject)}
    return scanned_study(
        root,
        study="s",
        files=files,
        metadata=metadata,
        requirements=requirements,
        steps="- GaitLumbar: {}\n",
        catalog_url=url,
    )


def _gate(catalog: Catalog, **kwargs: Any) -> gating.GateInfo:
    (study,) = catalog.studies()
    return gating.refresh_gates(catalog, study, **kwargs)


def _events(catalog: Catalog) -> int:
    return sum(len(catalog.events(f.id)) for f in catalog.files("s"))


@contextmanager
def _writes(catalog: Catalog) -> Iterator[list[str]]:
    """The INSERT, UPDATE and DELETE statements the catalog runs meanwhile."""
    seen: list[str] = []
    engine = catalog._db._engine  # noqa: SLF001 - the test looks under the facade on purpose

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_round_with_nothing_new_touches_no_file(tmp_path: Path) -> None:
    catalog, _ = _study(tmp_path)
    first = _gate(catalog)
    assert (first.checked, first.ready, first.waiting) == (30, 0, 30)
    events = _events(catalog)
    with _writes(catalog) as writes:
        again = _gate(catalog)
    assert (again.checked, again.waiting) == (0, 30)
    assert writes == [] and _events(catalog) == events


def test_new_metadata_for_one_subject_rechecks_only_its_files(tmp_path: Path) -> None:
    catalog, _ = _study(tmp_path)
    _gate(catalog)
    csv = tmp_path / "data" / "s.csv"
    csv.write_text(csv.read_text() + "S03,1.70\nS04,\n")  # S03 complete; S04 has a row, still no height
    before = {f.relative_path: (f.reason, len(catalog.events(f.id))) for f in catalog.files("s")}
    info = _gate(catalog)
    assert (info.checked, info.ready, info.waiting) == (6, 3, 27)
    after = {f.relative_path: (f.state, f.reason, len(catalog.events(f.id))) for f in catalog.files("s")}
    for path, (reason, events) in before.items():
        if path.startswith("S03"):
            assert after[path] == ("READY", None, events + 1)
        elif path.startswith("S04"):  # a waiting file whose reason changed gets its event
            assert after[path] == ("WAITING", "metadata missing for subject 'S04': height_m", events + 1)
        else:
            assert after[path] == ("WAITING", reason, events)


def test_a_new_file_rechecks_its_subject(tmp_path: Path) -> None:
    catalog, configs = _study(tmp_path, requirements="min_files_per_subject: 4", metadata=None)
    first = _gate(catalog)
    assert (first.checked, first.waiting) == (30, 30)
    assert catalog.files("s")[0].reason == "subject 'S00' has 3 of 4 expected files"
    (tmp_path / "data" / "s" / "S05_9.bin").write_bytes(b"Device Identity\n")
    assert discovery.scan(catalog, str(configs)).studies[0].files.new == 1
    info = _gate(catalog)
    assert (info.checked, info.ready, info.waiting) == (4, 4, 27)
    assert {f.relative_path for f in catalog.files("s", ["READY"])} == {f"S05_{n}.bin" for n in (0, 1, 2, 9)}


def test_a_config_change_rechecks_the_whole_study(tmp_path: Path) -> None:
    catalog, configs = _study(tmp_path)
    _gate(catalog)
    config = configs / "s.yaml"
    config.write_text(config.read_text().replace("study: s\n", "study: s\ndescription: a new description\n"))
    assert discovery.scan(catalog, str(configs)).studies[0].config_change == "changed"
    with _writes(catalog) as writes:
        info = _gate(catalog)
    assert (info.checked, info.waiting) == (30, 30)
    assert not any(w.lstrip().upper().startswith("UPDATE FILES") for w in writes)  # the same verdicts: none written
    assert _gate(catalog).checked == 0


def test_a_stable_seconds_wait_is_rechecked_when_it_ends(tmp_path: Path) -> None:
    catalog, _ = _study(tmp_path, requirements="stable_seconds: 600", metadata=None)
    now = utcnow()
    first = _gate(catalog, now=now)
    assert (first.checked, first.waiting) == (30, 30)
    assert catalog.files("s")[0].reason == "file changed 0 s ago; waits until unchanged for 600 s"
    assert _gate(catalog, now=now + timedelta(seconds=300)).checked == 0  # not due yet: not read
    due = _gate(catalog, now=now + timedelta(seconds=601))
    assert (due.checked, due.ready, due.waiting) == (30, 30, 0)


def _cli(home: Path, *args: str) -> str:
    env = {**os.environ, "BIOMARKERFLOW_HOME": str(home), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "biomarkerflow.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_status_groups_files_by_reason_and_all_lists_every_file(tmp_path: Path) -> None:
    catalog, _ = _study(tmp_path)
    _gate(catalog)
    catalog.close()
    grouped = _cli(tmp_path / "home", "status")
    assert "WAITING   27 files: no metadata row for subject '...'" in grouped
    assert "e.g. S01_0.bin: no metadata row for subject 'S01'" in grouped
    assert "WAITING   S00_0.bin: metadata missing for subject 'S00': height_m" in grouped  # 3 files: all shown
    assert "status --all" in grouped and len(grouped.splitlines()) < 15
    every = _cli(tmp_path / "home", "status", "--all")
    assert sum(line.lstrip().startswith("WAITING") for line in every.splitlines()) == 30
    (study,) = json.loads(_cli(tmp_path / "home", "status", "--json"))["studies"]
    assert len(study["waiting"]) == 30  # the JSON lists every file, as before, and has the groups
    assert [(g["state"], g["files"], len(g["examples"])) for g in study["groups"]] == [
        ("WAITING", 27, 3),
        ("WAITING", 3, 3),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gating_and_status_aggregate_the_same_on_every_backend(tmp_path: Path, backend: str) -> None:
    with catalog_url(backend, tmp_path / "catalog") as url:
        catalog, _ = _study(tmp_path, metadata="subject,height_m\nS00,\nS01,1.8\n", url=url)
        assert _gate(catalog).checked == 30
        assert _gate(catalog).checked == 0
        (status,) = catalog.status("s", every_file=False)
        assert status.counts["WAITING"] == 27 and status.counts["READY"] == 3
        assert status.waiting == [] and not status.every_file
        groups = [(g.state, g.reason, g.files, g.examples[0]) for g in status.groups]
        assert groups == [
            ("WAITING", "no metadata row for subject '...'", 24, ("S02_0.bin", "no metadata row for subject 'S02'")),
            (
                "WAITING",
                "metadata missing for subject '...': height_m",
                3,
                ("S00_0.bin", "metadata missing for subject 'S00': height_m"),
            ),
        ]
        (every,) = catalog.status("s")
        assert len(every.waiting) == 27 and every.groups == status.groups
        catalog.close()
