"""Our numbers equal SKDH's own: the platform's Parquet tables vs. a plain SKDH Pipeline run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study

# The wrist study's subject lives in India (UTC+05:30): a time zone, and one with a half-hour
# offset, so that a wear time given in UTC or in the device's clock cannot pass for local time.
WRIST_TZ = "Asia/Kolkata"


def plain_skdh(path: Path, reader: Any, steps: list[Any], **inputs: Any) -> dict[str, Any]:
    """What a scientist would run by hand: SKDH's Pipeline with the reader as first step."""
    import skdh

    pipeline = skdh.Pipeline()
    pipeline.add(reader)
    for step in steps:
        pipeline.add(step)
    return pipeline.run(file=str(path), **inputs)


def run_platform(executor: LocalExecutor, root: Path, **study: Any) -> tuple[Catalog, dict[str, pd.DataFrame]]:
    """Write and scan a study under `root`, process it, return the consolidated tables."""
    catalog, _ = scanned_study(root, **study)
    info = process(catalog, executor)
    assert info.failed == 0, [o.error for _, o, _ in info.outcomes]
    record = catalog.studies()[0]
    tables = {}
    for parquet in (Path(record.output_location) / "tables").glob("*.parquet"):
        tables[parquet.stem] = pd.read_parquet(parquet)
    return catalog, tables


def assert_same(ours: pd.Series, theirs: Any, label: str) -> None:
    expected = pd.Series(list(np.asarray(theirs, dtype=object)))
    actual = pd.Series(list(ours))
    assert len(actual) == len(expected), label
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if e is None or (isinstance(e, float | np.floating) and np.isnan(e)):
            assert a is None or (isinstance(a, float) and np.isnan(a)), f"{label}[{i}]: {a!r} != {e!r}"
        elif isinstance(e, int | float | np.integer | np.floating):
            assert float(a) == float(e), f"{label}[{i}]: {a!r} != {e!r}"
        else:
            assert str(a) == str(e), f"{label}[{i}]: {a!r} != {e!r}"


def wall_clock(unix: float, tz_name: str | None) -> datetime:
    """A reader's timestamp as SKDH documents it, by the standard library alone: the instant in
    the subject's time zone, or (no tz_name) the device's own naive clock, which SKDH's readers
    give as if it were UTC. timedelta keeps microseconds; the float itself resolves ~0.24 us."""
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=float(unix))
    return instant.astimezone(ZoneInfo(tz_name)) if tz_name else instant.replace(tzinfo=None)


def assert_wear_table(
    ours: pd.DataFrame, wear: Any, time: np.ndarray, fs: float, tz_name: str | None, label: str
) -> None:
    """The platform's wear table, row by row, against SKDH's wear bouts (sample indices) and
    the reader's time axis from the same run: indices and unix times exactly, start/end as the
    wall-clock times of those samples, durations from the indices and the sample rate."""
    bouts = np.asarray(wear, dtype=np.int64).reshape(-1, 2)
    assert len(bouts) >= 1, f"{label}: SKDH found no wear on this recording"
    assert ((bouts >= 0) & (bouts < len(time))).all(), f"{label}: a bout index past the time axis: {bouts}"
    ours = ours.reset_index(drop=True)
    assert len(ours) == len(bouts), f"{label}: {len(ours)} rows, SKDH has {len(bouts)} bouts"
    assert ours["bout"].tolist() == list(range(1, len(bouts) + 1)), label
    assert ours["start_index"].tolist() == bouts[:, 0].tolist(), f"{label}.start_index"
    assert ours["end_index"].tolist() == bouts[:, 1].tolist(), f"{label}.end_index"
    assert ours["start_unix"].tolist() == time[bouts[:, 0]].tolist(), f"{label}.start_unix"
    assert ours["end_unix"].tolist() == time[bouts[:, 1]].tolist(), f"{label}.end_unix"
    assert set(ours["time_zone"]) <= {tz_name}, f"{label}.time_zone"
    for column, index in (("start", 0), ("end", 1)):
        for row, (value, local, sample) in enumerate(
            zip(ours[column], ours[f"{column}_local"], bouts[:, index], strict=True)
        ):
            actual, expected = pd.Timestamp(value), wall_clock(time[sample], tz_name)
            where = f"{label}.{column}[{row}] (sample {sample})"
            assert str(actual.tzinfo) == "UTC", f"{where}: {actual} should be UTC"
            assert pd.Timestamp(local).tzinfo is None, f"{where}: {local} should be naive wall-clock time"
            # The same instant, and the same wall-clock time in the subject's zone, to the microsecond.
            instant = expected if tz_name else expected.replace(tzinfo=UTC)
            off = abs(actual - pd.Timestamp(instant))
            assert off <= pd.Timedelta(1, "us"), f"{where}: {actual} != {instant} (off by {off})"
            off = abs(pd.Timestamp(local) - pd.Timestamp(expected.replace(tzinfo=None)))
            assert off <= pd.Timedelta(1, "us"), f"{where}: local {local} != {expected} (off by {off})"
    minutes = (bouts[:, 1] - bouts[:, 0]) / fs / 60.0
    for row, (actual_minutes, expected_minutes) in enumerate(zip(ours["duration_minutes"], minutes, strict=True)):
        # From the time axis the platform's minutes carry its float rounding (< 1e-8 min); one sample is 1/(60 fs).
        assert actual_minutes == pytest.approx(expected_minutes, rel=0, abs=1e-6), f"{label}.duration_minutes[{row}]"


def test_wrist_pipeline_numbers_equal_plain_skdh(
    tmp_path: Path, wrist_recording: Path, executor: LocalExecutor
) -> None:
    import skdh

    _, tables = run_platform(
        executor,
        tmp_path,
        study="wrist",
        files={wrist_recording.name: wrist_recording},
        metadata=f"subject,height_m,tz_name\nP01,1.7,{WRIST_TZ}\n",
    )
    reference = plain_skdh(
        wrist_recording,
        skdh.io.ReadBin(),
        [
            skdh.preprocessing.CalibrateAccelerometer(min_hours=24),
            skdh.preprocessing.GetDayWindowIndices(bases=(0, 12), periods=(24, 24)),
            skdh.preprocessing.AccelThresholdWearDetection(),
            skdh.sleep.Sleep(day_window=(12, 24)),
            skdh.activity.ActivityLevelClassification(cutpoints="migueles_wrist_adult"),
        ],
        height=1.7,
        tz_name=WRIST_TZ,
    )
    assert set(tables) == {
        *("calibrate_accelerometer", "wear", "sleep", "activity"),  # SKDH's, compared below
        *("quality", "quality_days", "events", "inclusion"),  # ours: the report, the timeline, who is in
    }
    # The quality report counts the same wear as the wear table, day by day.
    wear_minutes = float(tables["wear"]["duration_minutes"].sum())
    assert float(tables["quality_days"]["wear_hours"].sum()) * 60 == pytest.approx(wear_minutes, rel=1e-9)
    assert int(tables["quality"]["samples"].iloc[0]) == len(reference["ReadBin"]["time"])
    for key in ("offset", "scale", "temperature scale"):
        # SKDH gives the temperature scale as shape (1, 3): one value per axis, like the others.
        per_axis = np.asarray(reference["CalibrateAccelerometer"][key]).reshape(-1)
        assert_same(tables["calibrate_accelerometer"][key], per_axis, key)
    for key, values in reference["Sleep"].items():
        assert_same(tables["sleep"][key], values, f"sleep.{key}")
    for key, values in reference["ActivityLevelClassification"].items():
        assert_same(tables["activity"][key], values, f"activity.{key}")
    # The wear table in full: SKDH's bouts on the reader's own time axis, in the subject's time zone.
    read = reference["ReadBin"]
    assert_wear_table(
        tables["wear"], reference["AccelThresholdWearDetection"]["wear"], read["time"], read["fs"], WRIST_TZ, "wear"
    )
    # Every table row says where it came from.
    assert set(tables["sleep"]["subject"]) == {"P01"}
    assert set(tables["sleep"]["file"]) == {wrist_recording.name}


def test_gait_on_real_device_files_equals_plain_skdh(tmp_path: Path, samples: Path, executor: LocalExecutor) -> None:
    import skdh

    files = {"ax3_sample.cwa": samples / "ax3_sample.cwa", "ax6_sample.cwa": samples / "ax6_sample.cwa"}
    _, tables = run_platform(
        executor,
        tmp_path,
        study="gait",
        files=files,
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m\nax3,1.75\nax6,1.62\n",
    )
    gait = tables["gait"]
    for subject, height in (("ax3", 1.75), ("ax6", 1.62)):
        reference = plain_skdh(
            samples / f"{subject}_sample.cwa", skdh.io.ReadCwa(), [skdh.gait.GaitLumbar()], height=height
        )
        ours = gait[gait["subject"] == subject].reset_index(drop=True)
        assert len(ours) == len(reference["GaitLumbar"]["Bout N"]) > 0
        for key, values in reference["GaitLumbar"].items():
            assert_same(ours[key], values, f"gait[{subject}].{key}")


@pytest.mark.parametrize("height", [1.5, 1.9])
def test_subject_height_reaches_gait(tmp_path: Path, samples: Path, height: float, executor: LocalExecutor) -> None:
    """Height from the metadata CSV changes SKDH's step length: it reached the pipeline."""
    import skdh

    _, tables = run_platform(
        executor,
        tmp_path,
        study="gait",
        files={"ax6_sample.cwa": samples / "ax6_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata=f"subject,height_m\nax6,{height}\n",
    )
    reference = plain_skdh(samples / "ax6_sample.cwa", skdh.io.ReadCwa(), [skdh.gait.GaitLumbar()], height=height)
    assert_same(tables["gait"]["step length"], reference["GaitLumbar"]["step length"], "step length")


def test_subject_time_zone_reaches_the_reader(tmp_path: Path, samples: Path, executor: LocalExecutor) -> None:
    """tz_name from the metadata CSV makes SKDH localise the device's naive clock."""
    import skdh

    _, tables = run_platform(
        executor,
        tmp_path,
        study="gait",
        files={"ax6_sample.cwa": samples / "ax6_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height_m,tz_name\nax6,1.7,America/New_York\n",
    )
    cwa = samples / "ax6_sample.cwa"
    zoned = plain_skdh(cwa, skdh.io.ReadCwa(), [skdh.gait.GaitLumbar()], height=1.7, tz_name="America/New_York")
    naive = plain_skdh(cwa, skdh.io.ReadCwa(), [skdh.gait.GaitLumbar()], height=1.7)
    assert_same(tables["gait"]["Bout Starts"], zoned["GaitLumbar"]["Bout Starts"], "Bout Starts")
    shift = np.asarray(zoned["GaitLumbar"]["Bout Starts"]) - np.asarray(naive["GaitLumbar"]["Bout Starts"])
    assert set(np.round(shift).tolist()) in ({4 * 3600.0}, {5 * 3600.0})  # EDT or EST, as the date says
