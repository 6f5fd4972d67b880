"""SKDH result dicts -> tables, consolidation across runs, and atomic publishing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from biomarkerflow.plugins.skdh.tables import step_tables, table_name
from biomarkerflow.results.consolidate import combine
from biomarkerflow.results.writer import read_provenance, write_run
from biomarkerflow.storage import store

TIME = 1_600_000_000.0 + np.arange(1000) / 10.0


def test_signal_arrays_are_not_results() -> None:
    result = {
        "accel": np.zeros((1000, 3)),
        "offset": np.array([0.1, 0.2, 0.3]),
        "scale": np.array([1.0, 1.1, 0.9]),
        "temperature scale": np.array([[0.01, 0.02, 0.03]]),
    }
    tables = step_tables("CalibrateAccelerometer", result, TIME, None)
    assert list(tables) == ["calibrate_accelerometer"]
    frame = tables["calibrate_accelerometer"]
    assert list(frame.columns) == ["offset", "scale", "temperature scale"]
    assert frame["temperature scale"].tolist() == [0.01, 0.02, 0.03]


def test_wear_bouts_get_times_and_durations() -> None:
    tables = step_tables("AccelThresholdWearDetection", {"wear": np.array([[0, 600], [700, 999]])}, TIME, None)
    wear = tables["wear"]
    assert wear["duration_minutes"].tolist() == [1.0, pytest.approx(299 / 600)]
    assert wear["start"].iloc[1] == pd.Timestamp(TIME[700], unit="s", tz="UTC")
    assert wear["start_local"].iloc[1] == pd.Timestamp(TIME[700], unit="s")  # no zone: the device's clock
    assert wear["end_index"].tolist() == [600, 999]


def test_wear_bouts_are_utc_with_the_subjects_wall_clock_beside() -> None:
    wear = step_tables("AccelThresholdWearDetection", {"wear": np.array([[0, 10]])}, TIME, "America/New_York")["wear"]
    assert str(wear["start"].dt.tz) == "UTC" and wear["time_zone"].tolist() == ["America/New_York"]
    expected = pd.Timestamp(TIME[0], unit="s", tz="UTC").tz_convert("America/New_York").tz_localize(None)
    assert wear["start_local"].iloc[0] == expected


def test_mixed_text_and_nan_columns_survive() -> None:
    result = {"Day N": [1, 2], "TSO Start": [float("nan"), "2020-03-01 22:00:00"], "total sleep time": [np.nan, 420]}
    sleep = step_tables("Sleep", result, TIME, None)["sleep"]
    assert pd.isna(sleep["TSO Start"][0]) and sleep["TSO Start"][1] == "2020-03-01 22:00:00"
    assert np.isnan(sleep["total sleep time"][0]) and sleep["total sleep time"][1] == 420.0


def test_columns_of_another_length_are_kept_in_their_own_table() -> None:
    tables = step_tables("MyStep", {"a": [1, 2, 3], "b": [4, 5, 6], "odd": [7]}, TIME, None)
    assert set(tables) == {"my_step", "my_step_odd"}
    assert tables["my_step_odd"]["odd"].tolist() == [7]


def test_table_names() -> None:
    assert table_name("ActivityLevelClassification") == "activity"
    assert table_name("CtaWearDetection") == "wear"
    assert table_name("Sit2Stand") == "sit2stand"
    assert table_name("MotionDetectRCoV") == "motion_detect_r_co_v"


def test_combine_widens_conflicting_types_without_losing_values() -> None:
    first = pa.table({"x": pa.array([None, None], pa.float64()), "n": pa.array([1, 2])})
    second = pa.table({"x": pa.array(["a", None]), "n": pa.array([1.5, 2.5]), "extra": pa.array([True, False])})
    empty = pa.table({"x": pa.array([], pa.float64())})
    combined = combine([first, second, empty])
    assert combined.column_names == ["x", "n", "extra"]
    assert combined["x"].to_pylist() == [None, None, "a", None]
    assert combined["n"].to_pylist() == [1.0, 2.0, 1.5, 2.5]
    assert combined["extra"].to_pylist() == [None, None, True, False]


def test_write_run_publishes_whole_folder_with_provenance(tmp_path: Path) -> None:
    destination = str(tmp_path / "out" / "runs" / "S1" / "f" / "run-1")
    frame = pd.DataFrame({"value": [1.0, 2.0]})
    written = write_run(
        destination,
        {"sleep": frame},
        {"run_id": "run-1"},
        key_columns={"subject": "S1", "run_id": "run-1"},
        formats=["parquet", "csv"],
    )
    folder = Path(destination)
    assert sorted(p.name for p in folder.iterdir()) == ["_SUCCESS", "provenance.json", "sleep.csv", "sleep.parquet"]
    assert written == sum(p.stat().st_size for p in folder.iterdir())
    assert read_provenance(str(folder / "sleep.parquet")) == {"run_id": "run-1"}
    assert pd.read_parquet(folder / "sleep.parquet").columns.tolist() == ["subject", "run_id", "value"]
    # Nothing but the published folder is visible beside it.
    assert [p.name for p in folder.parent.iterdir()] == ["run-1"]


def test_list_files_patterns_and_fingerprints(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a_1.bin", "b_1.cwa", "notes.txt", "sub/c_1.bin"):
        (tmp_path / name).write_bytes(b"x" * 10)
    entries = store.list_files(str(tmp_path), ["**/*.bin", "**/*.cwa"], exclude=["sub/*"])
    assert [e.relative_path for e in entries] == ["a_1.bin", "b_1.cwa"]
    assert all(e.size == 10 and e.fingerprint for e in entries)
    with pytest.raises(store.StorageError, match="does not exist"):
        store.list_files(str(tmp_path / "missing"), ["*"])


def test_replace_folder_replaces_and_removes_stale(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.parquet").write_text("new")
    (source / "_runs.json").write_text("[]")
    target = tmp_path / "tables"
    target.mkdir()
    (target / "old.parquet").write_text("stale")
    store.replace_folder(source, str(target))
    assert sorted(p.name for p in target.iterdir()) == ["_runs.json", "a.parquet"]
