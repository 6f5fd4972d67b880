"""Issue 18, point 3: a failure caused by the recording itself says what is wrong with it, with the
number that matters and what to do, never SKDH's raw exception text alone; the exception stays
chained (`__cause__`) and its traceback stays with the run.

Every defect is made from SKDH's real sample files (or written as a device writes them) and run
through real SKDH; the numbers each message must name are computed from the file, not typed in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins.skdh import explain
from biomarkerflow.plugins.skdh import workflow as skdh_workflow
from biomarkerflow.plugins.skdh.headers import CWA_BLOCK_BYTES, CWA_HEADER_BYTES
from biomarkerflow.plugins.skdh.workflow import JobPlan, StepFailed, StepPlan
from biomarkerflow.results.lineage import lineage
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study

# The example CSV (no header): unix seconds, then acceleration in g (3 columns), then gyroscope.
CSV_READER = StepPlan(
    "ReadCSV",
    {
        "time_col_name": 0,
        "column_names": {"accel": [1, 2, 3]},
        "read_csv_kwargs": {"header": None},
        "to_datetime_kwargs": {"unit": "s"},
    },
)
GAIT = StepPlan("GaitLumbar", {})
EXCLUDE = "exclude the file (data.exclude)"


def failed(
    path: Path,
    steps: tuple[StepPlan, ...] = (),
    reader: StepPlan | None = None,
    inputs: dict[str, object] | None = None,
) -> StepFailed:
    """The StepFailed a job on `path` raises, checked for what every readable failure keeps."""
    with pytest.raises(StepFailed) as raised:
        skdh_workflow.run(path, JobPlan(reader=reader, steps=steps), dict(inputs or {}), subject="P01")
    error = raised.value
    cause = error.__cause__
    assert cause is not None, "the original exception must stay chained"
    # Never SKDH's (or numpy's, pandas') words alone: the sentence starts with the step's name.
    assert error.message.startswith(f"{error.step}: "), error.message
    assert error.message != str(cause) and not error.message.startswith(str(cause))
    return error


@pytest.fixture(scope="module")
def example(samples: Path) -> pd.DataFrame:
    return pd.read_csv(samples / "example_data_2min.csv", header=None)


def write_csv(folder: Path, name: str, table: pd.DataFrame, *, header: list[str] | None = None) -> Path:
    path = folder / name
    table.to_csv(path, header=header if header is not None else False, index=False)
    return path


def backwards(time: np.ndarray) -> tuple[int, int]:
    """(first sample whose time is before the one before it, counting from 1; how many such)."""
    back = np.flatnonzero(np.diff(time) < 0)
    return int(back[0]) + 2, len(back)


# ---- too short ----------------------------------------------------------------------------------------


def test_a_recording_shorter_than_even_the_shortest_wear_window_says_to_exclude_it(samples: Path) -> None:
    path = samples / "gnactv_sample.bin"  # 18 s of GENEActiv samples
    seconds = skdh_workflow.run(path, JobPlan(None, ()), {}).recording["seconds"]
    error = failed(path, (StepPlan("AccelThresholdWearDetection", {"window_length": 2}),))
    assert error.step == "AccelThresholdWearDetection"
    assert error.message == (
        f"AccelThresholdWearDetection: the recording is {explain.duration(seconds)} long; this step needs at least "
        f"2 min (window_length 2 minutes), and even its shortest window (1 minute) is longer than the recording: "
        f"{EXCLUDE}, or use a longer recording"
    )
    assert "set window_length to 1" not in error.message  # the old advice: it would only fail again
    assert str(error.__cause__) == "Cannot have a window length larger than the computation axis."


# ---- what the recording lacks -------------------------------------------------------------------------


@pytest.mark.parametrize("wear", ["CtaWearDetection", "DETACH"])
def test_wear_detection_that_needs_temperature_on_a_recording_without_it(samples: Path, wear: str) -> None:
    error = failed(samples / "example_data_2min.csv", (StepPlan(wear, {}),), CSV_READER)
    assert error.step == wear
    assert error.message.startswith(
        f"{wear}: the recording has no temperature (it has accel only), and this wear detection needs it: "
        "use AccelThresholdWearDetection instead"
    )
    # CtaWearDetection says so itself; DETACH stumbles over the missing array in numpy.
    cause = {"CtaWearDetection": "Temperature is required for this wear algorithm.", "DETACH": "out of bounds"}
    assert cause[wear] in str(error.__cause__)


def test_a_step_given_no_acceleration_says_the_reader_found_none(
    samples: Path, example: pd.DataFrame, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, "P01_no_z.csv", example[[0, 1, 2]])  # the z column is not in the file
    error = failed(path, (GAIT,), CSV_READER, {"height": 1.7})
    assert error.step == "GaitLumbar"
    assert error.message.startswith("GaitLumbar: the recording has no acceleration, so this step cannot run")
    assert "column_names: accel" in error.message and EXCLUDE in error.message
    assert str(error.__cause__) == "'NoneType' object has no attribute 'shape'"
    # The reader's warning that left the stream out is a notice of the same run.
    assert any(n.startswith("ReadCSV left out accel") for n in error.notices), error.notices


# ---- time that is not a time, out of order, broken ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words", "cause"),
    [
        ("oops", "a value that is not a time in data row {row}: 'oops'", "unable to parse"),
        # pandas reads n/a as empty; SKDH turns the empty time into 1677 and fails on the disorder
        ("n/a", "no time in data row {row}", "could not broadcast input array"),
    ],
)
def test_a_time_that_is_not_a_time_is_named_with_its_row(
    example: pd.DataFrame, tmp_path: Path, value: str, words: str, cause: str
) -> None:
    table = example.astype(object)
    row = len(table) // 3
    table.iloc[row, 0] = value
    error = failed(write_csv(tmp_path, "P01_text.csv", table), (GAIT,), CSV_READER)
    assert error.step == "ReadCSV"
    assert error.message == (
        f"ReadCSV: the time column (0) holds {words.format(row=f'{row + 1:,}')}; correct or remove that row, "
        f"or {EXCLUDE}"
    )
    assert cause in str(error.__cause__)


def test_rows_out_of_time_order_are_named_where_the_time_goes_back(example: pd.DataFrame, tmp_path: Path) -> None:
    table = example.copy()
    table.iloc[3000:3100] = table.iloc[3000:3100].iloc[::-1].to_numpy()  # 100 rows in reverse
    at, count = backwards(table[0].to_numpy())
    error = failed(write_csv(tmp_path, "P01_reversed.csv", table), (GAIT,), CSV_READER)
    assert error.step == "ReadCSV"
    assert error.message.startswith(
        f"ReadCSV: the recording's time goes backwards at sample {at:,} of {len(table):,} by "
    )
    assert f"({count:,} times in all): its samples are not in time order" in error.message
    assert error.message.endswith(f"sort the samples by time, or {EXCLUDE}")
    assert str(error.__cause__).startswith("could not broadcast input array")


def test_shuffled_rows_are_not_mistaken_for_a_low_sample_rate(example: pd.DataFrame, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "P01_shuffled.csv", example.sample(frac=1, random_state=1))
    error = failed(path, (GAIT,), CSV_READER, {"height": 1.7})
    assert error.step == "GaitLumbar"
    assert str(error.__cause__).endswith("is too low (<20Hz).")  # what SKDH concluded from the disorder
    assert "goes backwards at sample 2 of" in error.message and "not in time order" in error.message
    assert "Hz" not in error.message


def test_a_gap_the_reader_cannot_fill_is_named_with_its_length_and_place(example: pd.DataFrame, tmp_path: Path) -> None:
    table = example.copy()
    after, gap_seconds = 5000, 600.0
    table.loc[after:, 0] += gap_seconds  # the device stopped for 10 minutes after sample 5,000
    path = write_csv(tmp_path, "P01_gap.csv", table)
    time = table[0].to_numpy()
    step = np.diff(time)
    start_rate = round(float(np.median(1 / step[:2500])), 6)  # SKDH's estimate of the rate
    steady = step[step <= 1.5 / start_rate]
    gap = f"1 gap in time (the longest {explain.duration(step.max())}, after sample {after:,} of {len(table):,})"

    error = failed(path, (GAIT,), CSV_READER)
    assert error.message.startswith(f"ReadCSV: the recording has {gap}, which the reader could not fill")
    assert f"(this one's is {start_rate:.4g} Hz at the start, {1 / steady.mean():.4g} Hz overall)" in error.message
    assert str(error.__cause__).startswith("could not broadcast input array")

    strict = StepPlan("ReadCSV", {**CSV_READER.params, "fill_gaps": False})
    error = failed(path, (GAIT,), strict)
    assert error.message == (
        f"ReadCSV: the recording has {gap}, and the reader refuses gaps (fill_gaps: false, gaps_error: raise): "
        f"set fill_gaps: true to fill them, gaps_error: warn to keep them, or {EXCLUDE}"
    )
    assert str(error.__cause__).startswith("There are data gaps")


def test_unix_seconds_read_as_nanoseconds(samples: Path, example: pd.DataFrame) -> None:
    reader = StepPlan("ReadCSV", {k: v for k, v in CSV_READER.params.items() if k != "to_datetime_kwargs"})
    distinct = pd.to_datetime(example[0]).nunique()  # pandas reads a number as nanoseconds
    error = failed(samples / "example_data_2min.csv", (GAIT,), reader)
    assert error.message.startswith(
        f"ReadCSV: the file's times repeat in blocks of unequal size (its {len(example):,} samples have "
        f"{distinct:,} different times)"
    )
    assert "set to_datetime_kwargs: {unit: s}" in error.message
    assert str(error.__cause__).startswith("Blocks of non-unique timestamps are not all equal size")


def test_a_geneactiv_file_without_a_data_page_fails_in_the_reader(samples: Path, tmp_path: Path) -> None:
    raw = (samples / "gnactv_sample.bin").read_bytes()
    path = tmp_path / "P01_header.bin"
    path.write_bytes(raw[: raw.index(b"Recorded Data")])  # the header, no data page
    error = failed(path, (StepPlan("AccelThresholdWearDetection", {}),))
    assert error.step == "ReadBin"
    assert error.message.startswith(
        f"ReadBin: the file holds its header but no data page ({path.stat().st_size:,} bytes, no 'Recorded Data')"
    )


def test_a_recording_whose_samples_are_all_dated_1970() -> None:
    """Only reached by steps given such arrays directly: the reader's path refuses the file first."""
    failure = explain.Failure(
        step="AccelThresholdWearDetection",
        kind="AccelThresholdWearDetection",
        error_types=("ValueError", "Exception"),
        message="Cannot have a window length larger than the computation axis.",
        recording=explain.Recording(samples=300, before_1971=300),
    )
    text = explain.explain(failure)
    assert text.startswith("AccelThresholdWearDetection: the recording has no valid time: all 300 of its samples")


# ---- the file's columns and size ------------------------------------------------------------------------


def test_a_column_the_file_does_not_have_is_named_with_the_file_s_columns(
    example: pd.DataFrame, tmp_path: Path
) -> None:
    columns = ["t", "ax", "ay", "az", "gx", "gy", "gz"]
    path = write_csv(tmp_path, "P01_named.csv", example, header=columns)
    reader = StepPlan("ReadCSV", {"time_col_name": "time", "column_names": {"accel": ["ax", "ay", "az"]}})
    error = failed(path, (), reader)
    assert error.message == (
        f"ReadCSV: the file has no column 'time' (its 7 columns are {', '.join(columns)}): set time_col_name in "
        f"the reader's parameters to the file's column, or {EXCLUDE}"
    )
    assert isinstance(error.__cause__, KeyError)


def test_a_file_without_a_header_row_is_said_to_have_none(samples: Path, example: pd.DataFrame) -> None:
    reader = StepPlan("ReadCSV", {"time_col_name": "time", "column_names": {"accel": ["x", "y", "z"]}})
    error = failed(samples / "example_data_2min.csv", (), reader)
    first = (samples / "example_data_2min.csv").read_text().splitlines()[0].replace(",", ", ")
    assert error.message.startswith(
        f"ReadCSV: the file has no column 'time': it has no header row (its first row is {first})"
    )
    assert "read_csv_kwargs: {header: null}" in error.message


def test_a_file_under_one_kilobyte_says_its_size(example: pd.DataFrame, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "P01_tiny.csv", example.iloc[:3])
    error = failed(path, (), CSV_READER)
    assert error.message.startswith(
        f"ReadCSV: the file is smaller than 1 kB ({path.stat().st_size:,} bytes), so it holds no recording"
    )
    assert str(error.__cause__) == "File is less than 1kb, nothing to read."


# ---- damaged device files --------------------------------------------------------------------------------


def test_an_axivity_file_too_damaged_to_read_around_says_how_many_blocks(samples: Path, tmp_path: Path) -> None:
    data = bytearray((samples / "ax3_sample.cwa").read_bytes())
    blocks = (len(data) - CWA_HEADER_BYTES) // CWA_BLOCK_BYTES
    damaged = range(0, blocks, 2)  # every other block overwritten in its samples and timestamps
    for block in damaged:
        start = CWA_HEADER_BYTES + CWA_BLOCK_BYTES * block
        data[start + 100 : start + 300] = b"\xff" * 200
    path = tmp_path / "P01_damaged.cwa"
    path.write_bytes(bytes(data))
    error = failed(path, (GAIT,))
    assert error.step == "ReadCwa"
    assert error.message.startswith(
        f"ReadCwa: {len(damaged):,} of its {blocks:,} data blocks are corrupt (checksum, the first is block "
        f"{damaged[0] + 1}), and the Axivity .cwa reader cannot read the file around them"
    )
    assert "leave it out of the study (data.exclude)" in error.message
    assert isinstance(error.__cause__, RuntimeError)


# ---- nothing explains it -----------------------------------------------------------------------------------


def test_an_unexplained_failure_still_names_the_recording_and_where_the_traceback_is() -> None:
    recording = explain.Recording(samples=58_800, sample_rate=200.0)
    failure = explain.Failure(
        step="Sit2Stand",
        kind="Sit2Stand",
        error_types=("KeyError", "LookupError"),
        message="'x'",
        recording_seconds=58_799 / 200.0,
        recording=recording,
    )
    assert explain.explain(failure) == (
        f"Sit2Stand could not process this recording ({explain.duration(58_799 / 200.0)} long, 58,800 samples at "
        "200 Hz): SKDH raised "
        "KeyError: 'x'; the full traceback is in `biomarkerflow status --verbose` or the run's lineage"
    )


def test_the_facts_never_hide_the_failure() -> None:
    """Gathering the recording's numbers must not raise over the step's own exception."""
    attempt = skdh_workflow._Attempt(inputs={}, subject="P01")
    attempt.building = (StepPlan("Sleep", {}), "Sleep")
    error = attempt.failed(ValueError("odd"), notices=())
    assert error.message.startswith("Sleep could not process this recording: SKDH raised ValueError: odd;")


# ---- through a study: the readable message in status, the traceback kept --------------------------------


def test_in_a_study_the_short_file_fails_readably_the_good_one_succeeds_and_the_traceback_is_kept(
    tmp_path: Path, samples: Path, executor: LocalExecutor
) -> None:
    catalog, _ = scanned_study(
        tmp_path,
        study="readable",
        files={"P01_lab.cwa": samples / "ax3_sample.cwa", "P02_short.bin": samples / "gnactv_sample.bin"},
        steps="- AccelThresholdWearDetection: {window_length: 2}\n",
        metadata=None,
        requirements="min_files_per_subject: 1",
    )
    executor.prestart()
    info = process(catalog, executor)
    states = {f.relative_path: state for f, _, state in info.outcomes}
    assert states == {"P01_lab.cwa": "SUCCEEDED", "P02_short.bin": "FAILED"}, [o.error for _, o, _ in info.outcomes]

    seconds = skdh_workflow.run(samples / "gnactv_sample.bin", JobPlan(None, ()), {}).recording["seconds"]
    (status,) = catalog.status("readable")
    message = dict(status.failed)["P02_short.bin"]
    assert message.startswith(
        f"AccelThresholdWearDetection: the recording is {explain.duration(seconds)} long; this step needs at "
        "least 2 min"
    )
    assert EXCLUDE in message
    detail = status.failure_details["P02_short.bin"]
    assert detail.step == "AccelThresholdWearDetection"
    skdh_text = "ValueError: Cannot have a window length larger than the computation axis."
    assert detail.traceback and "Traceback (most recent call last)" in detail.traceback
    assert detail.traceback.rstrip().endswith(skdh_text)  # SKDH's own exception, as raised
    (file,) = [f for f in catalog.files("readable") if f.relative_path == "P02_short.bin"]
    (entry,) = lineage(str(file.url), catalog)["runs"]
    assert entry["failed_step"] == "AccelThresholdWearDetection" and entry["traceback"] == detail.traceback
