"""The application layer in-process: one Platform, its use cases, and a Watcher started and stopped."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from biomarkerflow.errors import Category, NotFoundError, UsageError
from biomarkerflow.service import Platform, Watcher
from tests.conftest import write_study


def test_platform_finds_its_home_and_names_the_catalog(tmp_path: Path) -> None:
    (tmp_path / ".biomarkerflow").mkdir()
    inner = tmp_path / "studies"
    inner.mkdir()
    platform = Platform(env={}, cwd=inner)
    assert platform.home == tmp_path / ".biomarkerflow"
    assert platform.catalog_name() == f"{tmp_path / '.biomarkerflow'} (found above the current folder)"
    assert platform.status().as_json() == {
        "catalog": platform.catalog_name(),
        "studies": [],
        "workers": [],
        "profiles": [],
    }


def test_unknown_study_and_missing_configs_are_typed_errors(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "home")
    with pytest.raises(NotFoundError) as missing:
        platform.status("nope")
    assert missing.value.category is Category.NOT_FOUND
    with pytest.raises(UsageError) as bad:
        platform.scan(str(tmp_path / "no-such-folder"))
    assert bad.value.category is Category.INVALID_INPUT
    assert platform.costs(None, "study").as_json()["groups"] == []


class _Recorder:
    """A WatchReporter that keeps what it was told."""

    def __init__(self) -> None:
        from biomarkerflow.stages.processing import SilentProgress

        self.progress: Any = SilentProgress()
        self.scans: list[Any] = []
        self.gates: list[Any] = []

    def scanned(self, report: Any) -> None:
        self.scans.append(report)

    def gated(self, gates: Any) -> None:
        self.gates.append(gates)

    def retrained(self, results: Any) -> None:
        pass


def test_watcher_runs_in_process_until_stopped(tmp_path: Path, samples: Path) -> None:
    configs = write_study(
        tmp_path,
        study="lab",
        files={"S01_lumbar.cwa": samples / "ax3_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height\nS01,1.75\n",
        requirements="metadata: [height]",
    )
    platform = Platform(tmp_path / "home")
    recorder = _Recorder()
    watcher = Watcher(platform, str(configs), interval=1, workers=1, reporter=recorder)
    watcher.start()
    try:
        deadline = time.monotonic() + 240
        while not _succeeded(platform) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _succeeded(platform), platform.status().as_json()
        live = platform.status().runners
        assert [(w.id, w.kind) for w in live] == [(watcher.worker_id, "watch")]
    finally:
        watcher.stop()
        watcher.join(timeout=120)
    assert watcher.rounds >= 1
    assert recorder.scans and recorder.scans[0].category is None
    assert recorder.scans[0].info.studies[0].study_id == "lab"
    assert platform.status().runners == []  # its runner row is gone once it stopped
    assert len(platform.query("lab", 'SELECT "gait speed" FROM gait')) > 0


def _succeeded(platform: Platform) -> bool:
    studies = platform.status().studies
    return bool(studies) and studies[0].counts.get("SUCCEEDED", 0) == 1


def test_resources_open_once_when_threads_race_for_them(tmp_path: Path) -> None:
    """A Watcher thread and the API (or a test) asking for a new catalog at the same moment."""
    from concurrent.futures import ThreadPoolExecutor

    for attempt in range(5):
        platform = Platform(tmp_path / f"home-{attempt}")
        with ThreadPoolExecutor(4) as pool:
            catalogs = list(pool.map(lambda _, opened=platform: opened.catalog, range(4)))
        assert all(catalog is catalogs[0] for catalog in catalogs)
        assert platform.status().studies == []
        platform.close()
