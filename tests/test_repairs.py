"""Damaged recordings, made from SKDH's real AX3 sample the way copies and devices damage
them: each is repaired and says so (with results equal to SKDH's on the same data repaired
by hand), or fails with a message naming the defect; `quality.repairs: none` fails instead
of repairing; in a study, the other files finish."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins.skdh.quality import QualitySettings
from biomarkerflow.plugins.skdh.repairs import Unrepairable, trim_invalid_time
from biomarkerflow.plugins.skdh.workflow import JobPlan, StepFailed, StepPlan, run
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study

HEIGHT = 1.8
BLOCK = 512
HEADER = 1024
GAIT = JobPlan(None, (StepPlan("GaitLumbar", {}),))
KINDS = ("cut", "corrupt", "reset-clock", "header")


def damaged(samples: Path, folder: Path, kind: str) -> Path:
    """A copy of ax3_sample.cwa with one defect: cut mid-block, a corrupt block, a clock that
    resets for the last 100 blocks, or a damaged header."""
    data = bytearray((samples / "ax3_sample.cwa").read_bytes())
    if kind == "cut":
        data = data[:40_000]
    elif kind == "corrupt":
        data[HEADER + BLOCK * 11 + 100 : HEADER + BLOCK * 11 + 300] = b"\xff" * 200
    elif kind == "reset-clock":
        blocks = (len(data) - HEADER) // BLOCK
        for block in range(blocks - 100, blocks):
            start = HEADER + BLOCK * block
            data[start + 14 : start + 18] = bytes(4)  # the block's timestamp: the device's epoch
            words = np.frombuffer(bytes(data[start : start + BLOCK - 2]), "<u2")
            data[start + BLOCK - 2 : start + BLOCK] = int(-int(words.sum()) & 0xFFFF).to_bytes(2, "little")
    elif kind == "header":
        data[:64] = bytes(64)
    path = folder / f"ax3_{kind}.cwa"
    path.write_bytes(bytes(data))
    return path


def read(path: Path) -> dict[str, Any]:
    import skdh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(skdh.io.ReadCwa().predict(file=str(path)))


def skdh_gait(data: dict[str, Any]) -> dict[str, Any]:
    import skdh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(
            skdh.gait.GaitLumbar().predict(time=data["time"], accel=data["accel"], fs=data["fs"], height=HEIGHT)
        )


def assert_gait_equals(ours: pd.DataFrame, theirs: dict[str, Any]) -> None:
    numbers = [key for key in theirs if key in ours.columns and np.asarray(theirs[key]).dtype.kind in "iuf"]
    assert len(numbers) >= 10, numbers
    assert len(ours) == len(theirs[numbers[0]]) > 0
    for key in numbers:
        np.testing.assert_array_equal(ours[key].to_numpy(dtype=float), np.asarray(theirs[key], dtype=float), key)


def rows_kept(data: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    n = len(data["time"])
    return {k: v[keep] if isinstance(v, np.ndarray) and v.ndim and len(v) == n else v for k, v in data.items()}


def test_a_corrupt_block_is_left_out_and_the_rest_equals_skdh(samples: Path, tmp_path: Path) -> None:
    path = damaged(samples, tmp_path, "corrupt")
    output = run(path, GAIT, {"height": HEIGHT})
    [quality] = output.tables["quality"].to_dict("records")
    assert quality["repairs"] == "block 12 of 490 is corrupt (checksum): its samples are left out"
    assert output.notices[0].startswith("repaired: block 12 of 490 is corrupt")
    assert output.recording["repairs"] == [quality["repairs"]]  # in the run's provenance
    # By hand: SKDH's reader gives the corrupt block's 120 samples as 0 g; without them:
    data = read(path)
    zeros = ~np.any(data["accel"], axis=1)
    assert np.flatnonzero(zeros).tolist() == list(range(11 * 120, 12 * 120))
    assert quality["samples"] == len(data["time"]) - 120 and quality["gaps"] == 1
    assert_gait_equals(output.tables["gait"], skdh_gait(rows_kept(data, ~zeros)))


def test_a_clock_that_resets_is_trimmed_and_the_rest_equals_skdh(samples: Path, tmp_path: Path) -> None:
    path = damaged(samples, tmp_path, "reset-clock")
    output = run(path, GAIT, {"height": HEIGHT})
    [quality] = output.tables["quality"].to_dict("records")
    assert "samples have timestamps before the recording's start (a clock that reset): trimmed" in quality["repairs"]
    data = read(path)
    keep = np.ones(len(data["time"]), bool)
    keep[int(np.flatnonzero(data["time"] < data["time"][0])[0]) :] = False  # from the first step back in time
    assert quality["samples"] == int(keep.sum()) and quality["timestamps_backwards"] == 0
    assert_gait_equals(output.tables["gait"], skdh_gait(rows_kept(data, keep)))


def test_a_file_cut_mid_block_says_so(samples: Path, tmp_path: Path) -> None:
    output = run(damaged(samples, tmp_path, "cut"), GAIT, {"height": HEIGHT})
    [quality] = output.tables["quality"].to_dict("records")
    assert quality["repairs"] == (
        "the file ends mid-block at byte 40,000 (incomplete copy?): the last 64 bytes, part of block 77, are left out"
    )
    assert quality["samples"] == 76 * 120


def test_a_damaged_header_fails_with_what_is_wrong(samples: Path, tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as failed:
        run(damaged(samples, tmp_path, "header"), GAIT, {"height": HEIGHT})
    assert failed.value.step == "ReadCwa"
    assert "header (its first 1,024 bytes) is damaged" in str(failed.value) and "'MD'" in str(failed.value)


@pytest.mark.parametrize("keep", [1024, 1024 + 300])
def test_a_cwa_without_a_complete_data_block_fails_with_why(samples: Path, tmp_path: Path, keep: int) -> None:
    """SKDH's reader would stop the whole worker process on these (a Fortran end-of-file error)."""
    cut = tmp_path / "P01_ax6.cwa"
    cut.write_bytes((samples / "ax6_sample.cwa").read_bytes()[:keep])
    with pytest.raises(StepFailed) as failed:
        run(cut, GAIT, {"height": HEIGHT})
    assert failed.value.step == "ReadCwa"
    assert f"holds its header but no complete data block ({keep:,} bytes" in str(failed.value)


def test_a_recording_whose_every_timestamp_is_before_1971_cannot_be_trimmed() -> None:
    data = {"time": np.arange(300.0), "accel": np.zeros((300, 3)), "fs": 1.0}
    with pytest.raises(Unrepairable, match="all 300 samples have timestamps before 1971"):
        trim_invalid_time(data)


@pytest.mark.parametrize("kind", ["cut", "corrupt", "reset-clock"])
def test_repairs_none_fails_instead_naming_the_defect(samples: Path, tmp_path: Path, kind: str) -> None:
    strict = JobPlan(None, GAIT.steps, QualitySettings(repairs=False))
    with pytest.raises(StepFailed) as failed:
        run(damaged(samples, tmp_path, kind), strict, {"height": HEIGHT})
    message = str(failed.value)
    assert "not repaired, as the study says (quality.repairs: none)" in message
    assert {"cut": "ends mid-block", "corrupt": "is corrupt (checksum)", "reset-clock": "a clock that reset"}[kind] in (
        message
    )


def test_invalid_timestamps_at_both_ends_are_trimmed_and_nothing_else() -> None:
    time = 1_700_000_000.0 + np.arange(100.0)
    time[:5] = np.arange(5.0)  # a clock not yet set
    time[-7:] = 1_600_000_000.0  # a clock that reset
    time[50] = time[49]  # a repeat in the middle: reported, not trimmed
    data = {"time": time, "accel": np.arange(300.0).reshape(100, 3), "fs": 1.0}
    trimmed, done = trim_invalid_time(data)
    assert [d.what for d in done] == [
        "the first 5 samples have timestamps before 1971 (a clock not yet set)",
        "the last 7 samples have timestamps before the recording's start (a clock that reset)",
    ]
    assert trimmed["time"].tolist() == time[5:93].tolist() and trimmed["accel"].tolist() == data["accel"][5:93].tolist()
    assert trimmed["fs"] == 1.0
    assert trim_invalid_time({**data, "time": 1_700_000_000.0 + np.arange(100.0)})[1] == []


def test_in_a_study_repaired_files_succeed_with_a_note_and_a_broken_one_fails_alone(
    samples: Path, tmp_path: Path, executor: LocalExecutor
) -> None:
    files = {f"S{i}_{kind}.cwa": damaged(samples, tmp_path, kind) for i, kind in enumerate(KINDS)}
    files["S9_clean.cwa"] = samples / "ax3_sample.cwa"
    heights = "".join(f"S{i},{HEIGHT}\n" for i in (*range(len(KINDS)), 9))
    catalog, _ = scanned_study(
        tmp_path, study="damaged", files=files, steps="- GaitLumbar: {}\n", metadata=f"subject,height_m\n{heights}"
    )
    process(catalog, executor)
    files_by_name = {f.relative_path: f for f in catalog.files("damaged")}
    runs = {run.file_id: run for run in catalog.runs("damaged")}
    for name in files:
        record = files_by_name[name]
        run_ = runs[record.id]
        if "header" in name:
            assert record.state == "FAILED" and "header (its first 1,024 bytes) is damaged" in (record.last_error or "")
            continue
        assert record.state == "SUCCEEDED", (name, record.last_error)
        repaired = [n for n in run_.notices or [] if n.startswith("repaired: ")]
        assert bool(repaired) == ("clean" not in name), (name, run_.notices)


def test_a_geneactiv_file_cut_mid_page_reads_its_complete_pages(samples: Path, tmp_path: Path) -> None:
    """As SKDH reads the same file cut by hand at the last complete page (it refuses the
    file as it is: a page shorter than 300 samples)."""
    import skdh

    whole = (samples / "gnactv_sample.bin").read_bytes()
    cut = tmp_path / "S1_cut.bin"
    cut.write_bytes(whole[: len(whole) // 2 + 37])
    plan = JobPlan(None, (StepPlan("CalibrateAccelerometer", {"min_hours": 0.001}),))
    output = run(cut, plan, {})
    [quality] = output.tables["quality"].to_dict("records")
    ends = len(whole) // 2 + 37
    assert quality["repairs"] == (
        f"the file ends mid-page at byte {ends:,} (incomplete copy?): the last, incomplete page is left out"
    )
    by_hand = tmp_path / "by_hand.bin"
    by_hand.write_bytes(whole[: whole.rindex(b"Recorded Data", 0, len(whole) // 2 + 37)])
    expected = skdh.io.ReadBin().predict(file=str(by_hand))
    assert quality["samples"] == len(expected["time"]) == 300
    assert quality["start_unix"] == pytest.approx(float(expected["time"][0]))
    with pytest.raises(StepFailed, match="ends mid-page"):
        run(cut, JobPlan(None, plan.steps, QualitySettings(repairs=False)), {})
