"""Issue 14: every failure names the step and says in words what is wrong; SKDH's result-changing
warnings become notices; tracebacks, failed steps and notices are kept with the run.

Each failure kind is reproduced with real SKDH on a real or synthetic recording, so the
explanations are tested on the texts SKDH really raises.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

from biomarkerflow.catalog import schema
from biomarkerflow.catalog.manager import Catalog, RunMetrics, sqlalchemy_url
from biomarkerflow.config.validate import run_workflow_checks, validate_source
from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.plugins.skdh import explain
from biomarkerflow.plugins.skdh import workflow as skdh_workflow
from biomarkerflow.plugins.skdh.workflow import JobPlan, StepFailed, StepPlan
from biomarkerflow.results.lineage import lineage, render
from biomarkerflow.runtimes.entrypoint import format_traceback
from biomarkerflow.stages.discovery import scan
from biomarkerflow.stages.processing import process
from tests.conftest import scanned_study, write_study
from tests.databases import BACKENDS, catalog_url
from tests.test_catalog import _add_study, make_ready, register, run_one

WRIST = (
    StepPlan("CalibrateAccelerometer", {"min_hours": 24}),
    StepPlan("GetDayWindowIndices", {"bases": [0, 12], "periods": [24, 24]}),
    StepPlan("AccelThresholdWearDetection", {}),
    StepPlan("Sleep", {"day_window": [12, 24]}),
    StepPlan("ActivityLevelClassification", {"cutpoints": "migueles_wrist_adult"}),
)
WINDOW_TEXT = "Cannot have a window length larger than the computation axis."
HEIGHT_NOTICE = (
    "no height for subject ax3: gait speed, step and stride length are not computed (NaN); "
    "add height (metres) to the metadata"
)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An 18-minute wrist recording at 25 Hz, the same at 12.5 Hz, and a copy whose first data
    page is cut short in the middle of the file (a cut at the end is repaired: test_repairs.py)."""
    folder = tmp_path_factory.mktemp("short")
    short = folder / "P01_short.bin"
    write_geneactiv_bin(short, RecordingSpec(subject="P01", days=18 / 1440, fs=25.0, seed=3))
    slow = folder / "P01_slow.bin"
    write_geneactiv_bin(slow, RecordingSpec(subject="P01", days=18 / 1440, fs=12.5, seed=3))
    truncated = folder / "P01_cut.bin"
    raw = short.read_bytes()
    samples = raw.index(b"Recorded Data")
    for _ in range(9):  # a page's samples are its tenth line
        samples = raw.index(b"\n", samples) + 1
    truncated.write_bytes(raw[: samples + 1800] + raw[samples + 3600 :])  # half the first page's samples
    return {"short": short, "slow": slow, "truncated": truncated}


def failed(path: Path, steps: tuple[StepPlan, ...], inputs: dict[str, object] | None = None) -> StepFailed:
    """The StepFailed a job on `path` raises, reader chosen by extension as with `reader: auto`."""
    with pytest.raises(StepFailed) as raised:
        skdh_workflow.run(path, JobPlan(reader=None, steps=steps), dict(inputs or {}), subject="P01")
    return raised.value


# ---- each failure kind, with real SKDH --------------------------------------------------------------


def test_recording_shorter_than_the_wear_window_says_so_in_minutes(recordings: dict[str, Path]) -> None:
    error = failed(recordings["short"], WRIST)
    assert error.step == "AccelThresholdWearDetection"
    assert error.message == (
        "AccelThresholdWearDetection: the recording (18 min) is shorter than the step's 60-minute window "
        "(window_length): recording too short; use a recording of at least 60 min, or set window_length to 17 "
        "or less (minutes; results then differ from the default)"
    )
    assert not error.retryable
    assert isinstance(error.__cause__, ValueError) and str(error.__cause__) == WINDOW_TEXT  # SKDH's, chained
    # The warning before it that changed what ran: calibration was skipped.
    assert any(n.startswith("calibration skipped: the recording (18 min)") for n in error.notices), error.notices


def test_a_repeated_step_is_named_as_in_the_pipeline(recordings: dict[str, Path]) -> None:
    steps = (StepPlan("AccelThresholdWearDetection", {"window_length": 5}), StepPlan("AccelThresholdWearDetection", {}))
    error = failed(recordings["short"], steps)
    assert error.step == "AccelThresholdWearDetection_1"  # the first one ran; SKDH's name for the second
    assert error.message.startswith("AccelThresholdWearDetection_1: the recording (18 min) is shorter")


def test_parameter_of_the_wrong_type_is_named_with_its_value(samples: Path) -> None:
    error = failed(samples / "ax3_sample.cwa", (StepPlan("GaitLumbar", {"min_bout_time": "five"}),))
    assert error.step == "GaitLumbar"
    assert error.message == (
        "GaitLumbar: wrong type: parameter min_bout_time is 'five' (text), but it must be a number "
        "(SKDH's default is 8.0); fix min_bout_time in the study config"
    )
    assert isinstance(error.__cause__, TypeError) and type(error.__cause__).__name__ == "UFuncTypeError"


def test_subject_metadata_of_the_wrong_type_is_named(samples: Path) -> None:
    error = failed(samples / "ax3_sample.cwa", (StepPlan("GaitLumbar", {}),), {"height": "1.8m"})
    assert error.message == (
        "GaitLumbar: wrong type: subject P01's height is '1.8m' (text), but it must be a number in metres; "
        "fix it in the metadata"
    )
    assert str(error.__cause__) == "can't multiply sequence by non-int of type 'float'"


def test_truncated_geneactiv_file_fails_in_the_reader(recordings: dict[str, Path]) -> None:
    error = failed(recordings["truncated"], WRIST)
    assert error.step == "ReadBin"
    assert error.message.startswith("ReadBin: the file is truncated or damaged: a data page has fewer than the 3600")
    assert "copy the file again" in error.message
    assert str(error.__cause__) == "Data length is shorter than 3600"


def test_axivity_file_with_corrupt_blocks_fails_in_the_reader(samples: Path, tmp_path: Path) -> None:
    raw = bytearray((samples / "ax6_sample.cwa").read_bytes())
    raw[1024 + 30] ^= 0x55  # one byte of the first data block (after the 1 kB header)
    corrupt = tmp_path / "P01_ax6.cwa"
    corrupt.write_bytes(bytes(raw))
    error = failed(corrupt, ())
    assert error.step == "ReadCwa"
    blocks = (len(raw) - 1024) // 512
    assert error.message == (
        f"ReadCwa: block 1 of {blocks} is corrupt (checksum), and the Axivity .cwa reader cannot read the file "
        "around it: a data block's timestamps do not match its samples (SKDH: Bad block of timestamps not equal "
        "to data block sample size.); copy it again from the device, or leave it out of the study (data.exclude)"
    )
    assert error.notices == (explain.notice("Bad data blocks present"),)  # SKDH warned before it raised


def test_sleep_without_day_windows_says_which_step_to_add(recordings: dict[str, Path]) -> None:
    error = failed(recordings["short"], (StepPlan("Sleep", {}),))
    assert error.step == "Sleep"
    assert str(error.__cause__) == "Day indices for (12, 24) (base, period) not found."
    assert error.message == (
        "Sleep: no day windows starting at 12 h and lasting 24 h were computed before it (its day_window is "
        "(12, 24)): add GetDayWindowIndices before it with base 12 and period 24, e.g. GetDayWindowIndices: "
        "{bases: [0, 12], periods: [24, 24]}, or set its day_window to a window that step computes"
    )


def test_gait_on_a_recording_sampled_too_slowly(recordings: dict[str, Path]) -> None:
    error = failed(recordings["slow"], (StepPlan("GaitLumbar", {}),), {"height": 1.7})
    assert error.step == "GaitLumbar"
    assert str(error.__cause__) == "Frequency (12.50Hz) is too low (<20Hz)."
    assert error.message.startswith("GaitLumbar: the recording is sampled at 12.50 Hz, below the 20 Hz this step needs")


def test_a_parameter_the_step_does_not_have(samples: Path) -> None:
    error = failed(samples / "ax6_sample.cwa", (StepPlan("AccelThresholdWearDetection", {"window_size": 3}),))
    assert error.step == "AccelThresholdWearDetection"  # raised while building the step
    assert error.message.startswith("AccelThresholdWearDetection: it has no parameter window_size in this SKDH version")


def test_other_failures_name_the_step_and_keep_skdh_words() -> None:
    failure = explain.Failure(
        step="Sit2Stand", kind="Sit2Stand", error_types=("KeyError", "LookupError"), message="'x'"
    )
    assert explain.explain(failure) == (
        "Sit2Stand could not process this recording: SKDH raised KeyError: 'x'; the full traceback is in "
        "`biomarkerflow status --verbose` or the run's lineage"
    )


def test_running_out_of_memory_stays_retryable() -> None:
    attempt = skdh_workflow._Attempt(inputs={}, subject="P01", recording_seconds=7 * 86400.0)
    attempt.building = (StepPlan("ActivityLevelClassification", {}), "ActivityLevelClassification")
    error = attempt.failed(MemoryError(), notices=())
    assert error.retryable  # the machine's limit, not the recording's fault: retried as before issue 14
    assert error.message.startswith(
        "ActivityLevelClassification: ran out of memory on this recording of 7.0 days; it is tried again"
    )
    assert not attempt.failed(ValueError("bad"), notices=()).retryable


def test_gt3x_with_reader_auto_is_read_with_pygt3x_and_equals_skdh_on_its_arrays(samples: Path) -> None:
    """ActiGraph .gt3x (SKDH dropped its reader): ReadGt3x by extension gives pygt3x's samples
    on SKDH's time axis, and the pipeline's wear bouts equal SKDH's on those arrays."""
    import skdh
    from pygt3x.reader import FileReader
    from skdh.io.base import handle_naive_timestamps

    path = samples / "gt3x_sample_from_history.gt3x"
    wear = (StepPlan("AccelThresholdWearDetection", {}),)
    out = skdh_workflow.run(path, JobPlan(reader=None, steps=wear), {"tz_name": "America/Chicago"})
    assert out.recording["reader"] == "ReadGt3x" and out.recording["sample_rate_hz"] == 30.0
    with FileReader(str(path)) as reader:
        frame = reader.to_pandas()
    time = handle_naive_timestamps(frame.index.to_numpy(), is_local=True, tz_name="America/Chicago")
    accel = frame[["X", "Y", "Z"]].to_numpy(dtype=np.float64)
    assert out.recording["samples"] == len(time) and out.recording["start_unix"] == time[0]
    expected = skdh.preprocessing.AccelThresholdWearDetection().predict(time=time, accel=accel, fs=30.0)["wear"]
    assert out.tables["wear"]["start_index"].tolist() == np.asarray(expected)[:, 0].tolist()
    assert out.tables["wear"]["end_index"].tolist() == np.asarray(expected)[:, 1].tolist()
    # The samples pygt3x filled while the device slept, counted in the quality report.
    idle = float(frame["IdleSleepMode"].mean())
    assert 0 < idle < 1 and out.tables["quality"]["idle_sleep_fraction"].iloc[0] == pytest.approx(idle)


# ---- notices: SKDH's warnings that change results ---------------------------------------------------------


def test_gait_without_height_succeeds_with_a_notice(samples: Path) -> None:
    out = skdh_workflow.run(samples / "ax3_sample.cwa", JobPlan(None, (StepPlan("GaitLumbar", {}),)), {}, subject="ax3")
    assert out.notices == (HEIGHT_NOTICE,)
    assert "UserWarning: height not provided, not computing spatial metrics" in out.warnings  # raw, as before
    assert np.isnan(out.tables["gait"]["gait speed"]).all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # skdh/io/base.py, readers whose timestamps are UTC
            "Timestamps are not localized, but no time-zone information is available. This will cause issues for "
            "day-windowing, where the day does not actually start at midnight due to UTC offset.",
            "no time zone for subject S1: the file's timestamps are UTC, so day windows are cut at UTC midnight and "
            "noon, not local ones; add tz_name (an IANA name such as Europe/London) to the metadata",
        ),
        (  # skdh/preprocessing/calibrate.py
            "Recalibration not done with 72 - 84 hours due to insufficient non-movement data available",
            "calibration not applied: the first 84 h of the recording have too few still periods to calibrate the "
            "accelerometer, so the accelerations are used uncalibrated",
        ),
        (  # skdh/sleep/sleep.py
            "[Sleep] External wear detection not provided. Assuming 100% wear time.",
            "Sleep assumed the device was worn the whole time: no wear-detection step runs before it; add one "
            "(e.g. AccelThresholdWearDetection) before Sleep",
        ),
        ("No wear periods detected.", explain.notice("No wear periods detected.")),
        # Informational, or not SKDH's: not notices.
        (
            "Timestamps are local but naive, and no time-zone information is available. This may mean that if a "
            "DST change occurs during the recording period, the times will be offset by an hour",
            None,
        ),
        ("Mean of empty slice", None),
        ("invalid value encountered in divide", None),
    ],
)
def test_notice_texts(text: str, expected: str | None) -> None:
    assert explain.notice(text, "S1") == expected


def test_skipped_gait_bouts_are_one_notice() -> None:
    texts = [f"Caught error processing bout no. {i}: index 0 is out of bounds" for i in range(5)]
    (notice,) = explain.notices(texts)
    assert notice.startswith("GaitLumbar skipped 5 gait bouts after an error in it (bout 0: index 0 is out of bounds")
    assert "and 2 more" in notice


def test_only_skdh_s_own_warnings_can_become_notices() -> None:
    import skdh

    def record(message: str, filename: str) -> warnings.WarningMessage:
        return warnings.WarningMessage(UserWarning(message), UserWarning, filename, 1)

    inside = str(Path(skdh.__file__).parent / "gait" / "core.py")
    records = [
        record("height not provided, not computing spatial metrics", inside),
        record("height not provided, not computing spatial metrics", np.__file__),  # same words, not SKDH
    ]
    assert skdh_workflow._skdh_messages(records) == ["height not provided, not computing spatial metrics"]


def test_tracebacks_are_capped_at_their_end() -> None:
    try:
        raise ValueError("x" * 50_000)
    except ValueError as exc:
        text = format_traceback(exc, limit=1_000)
    assert len(text) <= 1_100 and text.startswith("[first ") and "characters cut]" in text


# ---- through the real local executor and the catalog ---------------------------------------------------


def _scan(catalog: Catalog, configs: Path) -> None:
    info = scan(catalog, str(configs), lambda url, text: validate_source(url, text, run_workflow_checks))
    assert info.ok, [(s.problems, s.error) for s in info.studies]


def test_failed_jobs_keep_step_and_traceback_and_a_wrong_reader_is_refused_before_it_runs(
    tmp_path: Path, samples: Path, recordings: dict[str, Path], executor: LocalExecutor
) -> None:
    configs = write_study(
        tmp_path,
        study="short",
        files={"P01_short.bin": recordings["short"]},
        metadata=None,
        requirements="min_files_per_subject: 1",
    )
    config = configs / "short.yaml"
    config.write_text(config.read_text().replace("  subject: ", "  reader: ReadBin\n  subject: ", 1))
    catalog = Catalog.for_home(tmp_path / "home")
    _scan(catalog, configs)
    # An Axivity file arrives after the config was validated (validate samples files; jobs check every one).
    (tmp_path / "data" / "short" / "P02_ax3.cwa").write_bytes((samples / "ax3_sample.cwa").read_bytes())
    _scan(catalog, configs)
    executor.prestart()  # the installed SKDH is the study's runtime: these workers take its jobs
    workers = executor.worker_pids()
    info = process(catalog, executor)
    states = {f.relative_path: (state, o.failed_step) for f, o, state in info.outcomes}
    assert states == {"P01_short.bin": ("FAILED", "AccelThresholdWearDetection"), "P02_ax3.cwa": ("FAILED", "ReadBin")}
    # ReadBin never ran on the .cwa file: no SIGSEGV, the same workers are alive.
    assert len(workers) == executor.capacity and executor.worker_pids() == workers
    files = {f.relative_path: f for f in catalog.files("short")}
    assert all(f.attempts == 1 for f in files.values())  # final at once, no retries
    assert sorted(r.attempt for r in catalog.runs("short")) == [1, 1]  # and not waiting to be retried
    assert files["P02_ax3.cwa"].last_error == (
        "ReadBin reads GENEActiv .bin files, but 'P02_ax3.cwa' is Axivity .cwa: use reader ReadCwa"
    )

    (status,) = catalog.status("short")
    assert dict(status.failed)["P01_short.bin"].startswith("AccelThresholdWearDetection: the recording (18 min)")
    detail = status.failure_details["P01_short.bin"]
    (run,) = catalog.runs("short", file_id=files["P01_short.bin"].id)
    assert (detail.step, detail.run_id) == ("AccelThresholdWearDetection", run.id)
    assert detail.traceback and "in moving_sd" in detail.traceback and detail.traceback.endswith(f"{WINDOW_TEXT}\n")
    assert status.failure_details["P02_ax3.cwa"].step == "ReadBin"
    assert status.notices == []  # only succeeded runs' notices are listed

    traced = lineage(str(files["P01_short.bin"].url), catalog)
    (entry,) = traced["runs"]
    assert entry["failed_step"] == "AccelThresholdWearDetection" and entry["traceback"] == detail.traceback
    assert entry["notices"] and entry["notices"][0].startswith("calibration skipped")
    text = "\n".join(render(traced))
    assert "failed in step AccelThresholdWearDetection" in text
    assert f"│ ValueError: {WINDOW_TEXT}" in text


def test_gait_study_without_heights_succeeds_with_its_notice_in_status_and_lineage(
    tmp_path: Path, samples: Path, executor: LocalExecutor
) -> None:
    catalog, _ = scanned_study(
        tmp_path,
        study="gait",
        files={"ax3_lab.cwa": samples / "ax3_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata=None,
        requirements="min_files_per_subject: 1",
    )
    info = process(catalog, executor)
    assert [state for _, _, state in info.outcomes] == ["SUCCEEDED"], [o.error for _, o, _ in info.outcomes]
    (status,) = catalog.status("gait")
    assert status.notices == [("ax3_lab.cwa", HEIGHT_NOTICE)]
    assert status.failure_details == {}
    ((_, run),) = catalog.current_results("gait")
    assert run.notices == (HEIGHT_NOTICE,)
    traced = lineage(run.result_location or "", catalog)
    assert traced["notices"] == [HEIGHT_NOTICE] and traced["catalog"]["notices"] == [HEIGHT_NOTICE]
    assert f"notice   {HEIGHT_NOTICE}" in render(traced)


# ---- the catalog ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_status_shows_the_last_run_of_a_failed_file_and_current_notices(tmp_path: Path, backend: str) -> None:
    with catalog_url(backend, tmp_path / "home") as url:
        catalog = Catalog(url)
        _add_study(catalog, tmp_path)
        register(catalog, "A_1.bin", "B_1.bin")
        make_ready(catalog)
        runs = {}
        for _ in range(2):
            file_id, run_id = run_one(catalog)
            runs[file_id] = run_id
        by_path = {f.id: f.relative_path for f in catalog.files("s1")}
        for file_id, run_id in runs.items():
            if by_path[file_id] == "A_1.bin":
                metrics = RunMetrics(
                    outcome="failed", error="Sleep: no day windows", failed_step="Sleep", traceback="Traceback ..."
                )
            else:
                metrics = RunMetrics(outcome="succeeded", notices=("no height for subject B",))
            catalog.finish_run(run_id, metrics, max_attempts=3, retry_at=None)
        (status,) = catalog.status("s1")
        a_run = next(run for file_id, run in runs.items() if by_path[file_id] == "A_1.bin")
        assert status.failed == [("A_1.bin", "Sleep: no day windows")]
        detail = status.failure_details["A_1.bin"]
        assert (detail.step, detail.traceback, detail.run_id) == ("Sleep", "Traceback ...", a_run)
        assert status.notices == [("B_1.bin", "no height for subject B")]
        assert catalog.get_run(a_run).notices == ()  # type: ignore[union-attr]
        catalog.close()


def _alembic(connection: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0005_adds_the_failure_columns_and_keeps_runs(tmp_path: Path, backend: str) -> None:
    with catalog_url(backend, tmp_path / "home") as url:
        catalog = Catalog(url)
        _add_study(catalog, tmp_path)
        register(catalog, "A_1.bin")
        make_ready(catalog)
        _, run_id = run_one(catalog)
        catalog.finish_run(run_id, RunMetrics(outcome="failed", error="old"), max_attempts=3, retry_at=None)
        catalog.close()
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as connection:
            command.downgrade(_alembic(connection), "0004")  # a catalog as issue 5 left it
        with engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("runs")}
            assert {"failed_step", "traceback", "notices"}.isdisjoint(columns)
        engine.dispose()

        upgraded = Catalog(url)  # opening it upgrades
        run = upgraded.get_run(run_id)
        assert run is not None and (run.error, run.failed_step, run.traceback, run.notices) == ("old", None, None, ())
        assert upgraded.status("s1")[0].failure_details["A_1.bin"].run_id == run_id
        upgraded.close()
        engine = create_engine(sqlalchemy_url(url))
        with engine.connect() as connection:
            assert schema.current_revision(connection) == schema.head_revision()
        engine.dispose()


def test_a_study_reading_gt3x_asks_its_runtime_for_pygt3x() -> None:
    from biomarkerflow.plugins.skdh.plugin import GT3X_REQUIREMENT, WORKFLOW_TYPE

    pipeline = {"package": "scikit-digital-health==0.17.18", "steps": [{"AccelThresholdWearDetection": {}}]}
    for data, wanted in (
        ({"include": ["**/*.gt3x"]}, True),
        ({"reader": {"ReadGt3x": {}}}, True),
        ({"include": ["**/*.cwa"]}, False),
    ):
        request, problems = WORKFLOW_TYPE.runtime_request({"pipeline": pipeline, "data": data})
        assert problems == [] and request is not None
        assert (GT3X_REQUIREMENT in request.constraints) == wanted, data
