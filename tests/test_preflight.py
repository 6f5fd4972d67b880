"""`validate` catches, before anything runs, what would otherwise fail or wait later.

Each test writes a study over real device files (SKDH's samples, copied into tmp_path)
and checks the exact problem: where (file, line, field), what is wrong, and what to do.
Line 1 is the first line of the YAML written in the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.config.validate import validate_paths, validate_source
from biomarkerflow.errors import ConfigProblem
from biomarkerflow.runtimes.environment import RUNTIMES_ENV, Runtimes
from biomarkerflow.stages import discovery, processing
from biomarkerflow.stages.checking import CACHE_FOLDER, RuntimeChecks

PIPELINE = """\
pipeline:
  package: scikit-digital-health==0.17.18
  steps:
    - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
    - Sleep: {day_window: [12, 24]}
"""

VALID = (
    """\
study: wrist
data:
  location: data/raw
  subject: '(?P<subject>[A-Za-z0-9]+)_'
metadata:
  - location: data/subjects.csv
requirements:
  metadata: [height_m]
"""
    + PIPELINE
)


@pytest.fixture
def workspace(tmp_path: Path, samples: Path) -> Path:
    """data/raw with a GENEActiv .bin and an Axivity .cwa recording, and data/subjects.csv."""
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copyfile(samples / "gnactv_sample.bin", raw / "S01_wrist.bin")
    shutil.copyfile(samples / "ax3_sample.cwa", raw / "S02_wrist.cwa")
    (tmp_path / "data" / "subjects.csv").write_text("subject,height_m\nS01,1.70\nS02,1.80\n")
    return tmp_path


def write(folder: Path, text: str, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def check(folder: Path, text: str, name: str = "study.yaml") -> list[ConfigProblem]:
    """Every problem `biomarkerflow validate` reports for this config (SKDH checks in this process)."""
    path = write(folder, text, name)
    return validate_paths([str(path)])[str(path)]


def only(found: list[ConfigProblem]) -> ConfigProblem:
    assert len(found) == 1, "\n".join(str(p) for p in found)
    return found[0]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "biomarkerflow.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400", **(env or {})},
        cwd=cwd,
        timeout=600,
    )


def test_the_workspace_itself_is_valid(workspace: Path) -> None:
    assert check(workspace, VALID) == []


# --- 1. data location and files -------------------------------------------------------------


def test_data_location_that_does_not_exist(workspace: Path) -> None:
    shutil.rmtree(workspace / "data" / "raw")
    problem = only(check(workspace, VALID))
    assert (problem.file, problem.line, problem.column, problem.field) == (
        str(workspace / "study.yaml"),
        3,
        3,
        "data.location",
    )
    assert problem.message == (
        f"folder {workspace / 'data' / 'raw'} does not exist ('data/raw' is read relative to the config "
        f"file's folder {workspace}) ({workspace / 'data'} exists, but has no 'raw'); create it and put the "
        "recordings there, or correct the path, e.g. location: data/raw"
    )


def test_data_location_without_a_matching_file_says_what_is_there(workspace: Path) -> None:
    text = VALID.replace("  location: data/raw\n", "  location: data/raw\n  include: ['**/*.bin']\n")
    (workspace / "data" / "raw" / "S01_wrist.bin").unlink()
    (workspace / "data" / "raw" / "S03_wrist.cwa").write_bytes(
        (workspace / "data" / "raw" / "S02_wrist.cwa").read_bytes()
    )
    problem = only(check(workspace, text))
    assert (problem.line, problem.field) == (4, "data.include")
    assert problem.message == (
        f"none of the 2 files in {workspace / 'data' / 'raw'} matches include ['**/*.bin'] "
        "(found extensions: .cwa (2)); add a pattern for the recordings, e.g. include: ['**/*.cwa']"
    )


def test_an_empty_data_folder_and_an_exclude_that_leaves_nothing(workspace: Path) -> None:
    excluding = VALID.replace("  location: data/raw\n", "  location: data/raw\n  exclude: ['S0*']\n")
    problem = only(check(workspace, excluding))
    assert problem.field == "data.include"
    assert "all 2 files in" in problem.message and "are left out by exclude ['S0*']" in problem.message
    for recording in (workspace / "data" / "raw").iterdir():
        recording.unlink()
    problem = only(check(workspace, VALID))
    assert problem.message.startswith(f"{workspace / 'data' / 'raw'} holds no files yet; put the recordings there")


def test_data_location_on_s3(s3_bucket: str, tmp_path: Path, samples: Path) -> None:
    """On S3 the listing and the format check (one ranged read per sampled file) go through the store."""
    import boto3

    bucket = s3_bucket.removeprefix("s3://")
    boto3.client("s3").put_object(
        Bucket=bucket, Key="raw/S01_wrist.cwa", Body=(samples / "ax3_sample.cwa").read_bytes()
    )
    (tmp_path / "subjects.csv").write_text("subject,height_m\nS01,1.7\n")
    text = VALID.replace("data/raw", f"{s3_bucket}/raw").replace("data/subjects.csv", "subjects.csv")
    assert check(tmp_path, text) == []
    problem = only(check(tmp_path, text.replace("  subject:", "  include: ['*.bin']\n  subject:")))
    assert problem.message.startswith(f"none of the 1 files in {s3_bucket}/raw matches include ['*.bin']")
    problem = only(check(tmp_path, text.replace("  subject:", "  reader: ReadBin\n  subject:")))
    assert problem.message == (
        f"ReadBin reads GENEActiv .bin files, but {s3_bucket}/raw/S01_wrist.cwa is Axivity .cwa: use reader ReadCwa"
    )
    problem = only(check(tmp_path, text.replace(f"{s3_bucket}/raw", f"{s3_bucket}/nothing-here")))
    assert problem.field == "data.location"
    assert problem.message.startswith(f"location {s3_bucket}/nothing-here does not exist (or these credentials")


# --- 2. file formats against the reader -----------------------------------------------------


def test_named_reader_that_cannot_read_the_files(workspace: Path) -> None:
    text = VALID.replace("  subject:", "  reader: ReadBin\n  subject:")
    problem = only(check(workspace, text))
    assert (problem.line, problem.column, problem.field) == (4, 3, "data.reader")
    assert problem.message == (
        "ReadBin reads GENEActiv .bin files, but data/raw/S02_wrist.cwa is Axivity .cwa: use reader ReadCwa"
    )


def test_auto_reader_and_a_file_with_the_wrong_extension(workspace: Path, samples: Path) -> None:
    raw = workspace / "data" / "raw"
    for name in ("S03_wrist.bin", "S04_wrist.bin"):
        shutil.copyfile(samples / "ax6_sample.cwa", raw / name)  # an Axivity file named .bin
    (workspace / "data" / "subjects.csv").write_text("subject,height_m\nS01,1.7\nS02,1.8\nS03,1.7\nS04,1.7\n")
    problem = only(check(workspace, VALID))
    assert problem.field == "data.reader"
    assert problem.message == (
        "reader 'auto' picks ReadBin for .bin files, and ReadBin reads GENEActiv .bin files, but "
        "data/raw/S03_wrist.bin is Axivity .cwa: use reader ReadCwa (or give the file the extension of its "
        "format) (2 of the 4 files checked are alike)"
    )


# --- 3. .gt3x ---------------------------------------------------------------------------------


def test_gt3x_files_are_read_by_readgt3x(workspace: Path, samples: Path) -> None:
    """SKDH dropped its ActiGraph reader; `reader: auto` picks ReadGt3x (pygt3x) for them."""
    shutil.copyfile(samples / "gt3x_sample_from_history.gt3x", workspace / "data" / "raw" / "S03_wrist.gt3x")
    text = VALID.replace("  subject:", "  include: ['**/*.bin', '**/*.gt3x']\n  subject:")
    assert check(workspace, text) == []


# --- 4. parameter values of the wrong type ---------------------------------------------------


def test_parameter_value_of_the_wrong_type(workspace: Path) -> None:
    text = VALID.replace(
        "    - Sleep: {day_window: [12, 24]}\n",
        "    - AccelThresholdWearDetection: {window_length: five}\n    - Sleep: {day_window: [12, 24]}\n",
    )
    problem = only(check(workspace, text))  # one problem: not also SKDH's constructor failing on it
    assert (problem.line, problem.column, problem.field) == (
        13,
        37,
        "pipeline.steps[1].AccelThresholdWearDetection.window_length",
    )
    assert problem.message == "expects a number (default 60), got 'five'; write a number, e.g. window_length: 60"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "GaitLumbar: {min_bout_time: '8'}",
            "expects a number (default 8.0), got '8'; write the number without quotes: min_bout_time: 8",
        ),
        (
            "GaitLumbar: {downsample: 1}",
            "expects true or false (default false), got 1; write true or false, e.g. downsample: false",
        ),
        (
            "ActivityLevelClassification: {bout_lens: [1, five]}",
            "expects a list of numbers (default [1, 5, 10]), got [1, 'five']: 'five' is not one; "
            "e.g. bout_lens: [1, 5, 10]",
        ),
    ],
)
def test_parameter_types_come_from_the_pinned_defaults(workspace: Path, step: str, message: str) -> None:
    text = VALID.replace(
        "    - Sleep: {day_window: [12, 24]}\n", f"    - Sleep: {{day_window: [12, 24]}}\n    - {step}\n"
    )
    assert only(check(workspace, text)).message == message


def test_documented_types_widen_and_ints_and_lists_are_accepted(workspace: Path) -> None:
    """shipping_criteria defaults to false but its docstring says {bool, int, list}; floats take ints."""
    text = VALID.replace(
        "    - Sleep: {day_window: [12, 24]}\n",
        "    - AccelThresholdWearDetection: {shipping_criteria: [12, 24], sd_crit: 1}\n"
        "    - Sleep: {day_window: [12, 24], min_day_hours: 6.5}\n"
        "    - ActivityLevelClassification: {day_window: null, cutpoints: [0.1, 0.2, 0.3]}\n",
    )
    assert [p for p in check(workspace, text) if "expects" in p.message] == []


# --- 5. metadata columns ------------------------------------------------------------------------


def test_required_metadata_column_not_in_the_metadata_file(workspace: Path) -> None:
    (workspace / "data" / "subjects.csv").write_text("subject,height,site\nS01,1.70,A\nS02,1.80,B\n")
    problem = only(check(workspace, VALID))
    assert (problem.line, problem.column, problem.field) == (8, 14, "requirements.metadata[0]")
    assert problem.message == (
        "column 'height_m' is not in data/subjects.csv (its columns: subject, height, site); add the column to "
        "data/subjects.csv, or require a column that is there, e.g. metadata: [height]"
    )


def test_subject_column_and_mapped_columns_must_be_in_the_file(workspace: Path) -> None:
    (workspace / "data" / "subjects.csv").write_text("id,height_m,stature_cm\nS01,1.70,170\n")
    text = VALID.replace(
        "  - location: data/subjects.csv\n",
        "  - location: data/subjects.csv\n    subject_column: subject_id\n    columns: {stature: height}\n",
    )
    found = check(workspace, text)
    assert [(p.line, p.field) for p in found] == [
        (7, "metadata[0].subject_column"),
        (8, "metadata[0].columns.stature"),
    ]
    assert found[0].message == (
        "column 'subject_id' is not in data/subjects.csv (its columns: id, height_m, stature_cm); set "
        "subject_column to the column that holds the subject ids, e.g. subject_column: id"
    )
    assert found[1].message == (
        "column 'stature' is not in data/subjects.csv (its columns: id, height_m, stature_cm); map a column it "
        "has, e.g. columns: {stature_cm: height}"
    )


def test_metadata_file_that_does_not_exist(workspace: Path) -> None:
    (workspace / "data" / "subjects.csv").unlink()
    problem = only(check(workspace, VALID))
    assert (problem.line, problem.field) == (6, "metadata[0].location")
    assert problem.message == (
        f"metadata file {workspace / 'data' / 'subjects.csv'} does not exist ('data/subjects.csv' is read relative "
        f"to the config file's folder {workspace}); create it (a CSV file with one row per subject, first line "
        "e.g. subject,height_m) or correct the path"
    )


def test_scan_lets_a_metadata_file_arrive_later_but_not_a_wrong_column(workspace: Path) -> None:
    """scan registers studies whose metadata has not arrived; what is there must still fit."""
    path = write(workspace, VALID)
    (workspace / "data" / "subjects.csv").unlink()
    assert validate_source(path)[1] == []
    (workspace / "data" / "subjects.csv").write_text("subject,height\nS01,1.7\n")
    (problem,) = validate_source(path)[1]
    assert problem.field == "requirements.metadata[0]"


def test_waiting_reason_names_the_absent_column_not_each_subject(workspace: Path) -> None:
    path = write(workspace, VALID)
    catalog = Catalog.for_home(workspace / "home")
    assert discovery.scan(catalog, str(path)).ok
    (workspace / "data" / "subjects.csv").write_text("subject,height\nS01,1.70\nS02,1.80\n")  # the column renamed
    (study,) = catalog.studies()
    gates = processing.refresh_gates(catalog, study)
    assert (gates.ready, gates.waiting) == (0, 2)
    reasons = {f.relative_path: f.reason for f in catalog.files("wrist")}
    expected = (
        "column height_m is not in subjects.csv; add it there, or change requirements.metadata in the study config"
    )
    assert reasons == {"S01_wrist.bin": expected, "S02_wrist.cwa": expected}


# --- 6. the subject pattern ---------------------------------------------------------------------


def test_subject_pattern_that_matches_no_file_name(workspace: Path) -> None:
    raw = workspace / "data" / "raw"
    for recording in raw.iterdir():
        recording.rename(raw / recording.name.replace("_", "-"))
    problem = only(check(workspace, VALID))
    assert (problem.line, problem.column, problem.field) == (4, 3, "data.subject")
    assert problem.message == (
        "'(?P<subject>[A-Za-z0-9]+)_' matches none of the 2 file names, e.g. 'S01-wrist.bin', 'S02-wrist.cwa': "
        "their files would wait forever for a subject id; the named group (?P<subject>...) must match part of "
        "the name, e.g. subject: '(?P<subject>[^\\-]+)\\-' finds 'S01' in 'S01-wrist.bin'"
    )


def test_subject_pattern_that_misses_some_file_names(workspace: Path, samples: Path) -> None:
    shutil.copyfile(samples / "gnactv_sample.bin", workspace / "data" / "raw" / "calibration.bin")
    problem = only(check(workspace, VALID))
    assert problem.field == "data.subject"
    assert problem.message == (
        "'(?P<subject>[A-Za-z0-9]+)_' finds no subject id in 1 of the 3 file names, e.g. 'calibration.bin': "
        "those files would wait forever; change the pattern so it matches them too, or leave them out, "
        "e.g. exclude: ['calibration.bin']"
    )


# --- 7. one study id in two configs --------------------------------------------------------------


def test_two_configs_with_one_study_id(workspace: Path) -> None:
    first, second = write(workspace, VALID, "a.yaml"), write(workspace, VALID, "b.yaml")
    results = validate_paths([str(workspace)])
    for path, other in ((first, second), (second, first)):
        problem = only(results[str(path)])
        assert (problem.line, problem.column, problem.field) == (1, 1, "study")
        assert problem.message == (
            f"study id 'wrist' is also used by {other}; each study needs its own id: change study: in one of them, "
            "e.g. study: wrist-2"
        )


def test_scan_refuses_a_second_config_for_a_registered_study(workspace: Path) -> None:
    configs = workspace / "studies"
    configs.mkdir()
    owner = write(configs, VALID.replace("data/", "../data/"), "a.yaml")
    catalog = Catalog.for_home(workspace / "home")
    assert discovery.scan(catalog, str(configs)).ok
    copy = write(configs, VALID.replace("data/", "../data/"), "b.yaml")
    info = discovery.scan(catalog, str(configs))
    assert [(s.source, s.config_change) for s in info.studies] == [(str(owner), "unchanged"), (str(copy), "invalid")]
    (problem,) = info.studies[1].problems
    assert (problem.file, problem.line, problem.field) == (str(copy), 1, "study")
    assert problem.message.startswith(f"study id 'wrist' is already registered in the catalog by {owner};")


def test_scan_refuses_new_configs_sharing_a_study_id(workspace: Path) -> None:
    configs = workspace / "studies"
    configs.mkdir()
    first = write(configs, VALID.replace("data/", "../data/"), "a.yaml")
    second = write(configs, VALID.replace("data/", "../data/"), "b.yaml")
    info = discovery.scan(Catalog.for_home(workspace / "home"), str(configs))
    assert [s.config_change for s in info.studies] == ["invalid", "invalid"]
    assert f"is also used by {second}" in info.studies[0].problems[0].message
    assert f"is also used by {first}" in info.studies[1].problems[0].message


# --- through the command line ---------------------------------------------------------------------


def test_cli_validate_reports_located_problems_and_exits_2(workspace: Path) -> None:
    (workspace / "data" / "subjects.csv").write_text("subject,height\nS01,1.70\nS02,1.80\n")
    write(workspace, VALID.replace("  subject:", "  reader: ReadBin\n  subject:"), "a.yaml")
    write(workspace, VALID, "b.yaml")
    result = cli("--home", str(workspace / "home"), "validate", str(workspace))
    assert result.returncode == 2, result.stdout + result.stderr
    a, b = workspace / "a.yaml", workspace / "b.yaml"
    assert result.stdout.splitlines() == [
        f"{a}:1:1: study: study id 'wrist' is also used by {b}; each study needs its own id: change study: in one "
        "of them, e.g. study: wrist-2",
        f"{a}:4:3: data.reader: ReadBin reads GENEActiv .bin files, but data/raw/S02_wrist.cwa is Axivity .cwa: "
        "use reader ReadCwa",
        f"{a}:9:14: requirements.metadata[0]: column 'height_m' is not in data/subjects.csv (its columns: subject, "
        "height); add the column to data/subjects.csv, or require a column that is there, e.g. metadata: [height]",
        f"{b}:1:1: study: study id 'wrist' is also used by {a}; each study needs its own id: change study: in one "
        "of them, e.g. study: wrist-2",
        f"{b}:8:14: requirements.metadata[0]: column 'height_m' is not in data/subjects.csv (its columns: subject, "
        "height); add the column to data/subjects.csv, or require a column that is there, e.g. metadata: [height]",
    ]


def test_cli_scan_of_two_configs_with_one_study_id_exits_2(workspace: Path) -> None:
    configs = workspace / "studies"
    configs.mkdir()
    write(configs, VALID.replace("data/", "../data/"), "a.yaml")
    write(configs, VALID.replace("data/", "../data/"), "b.yaml")
    result = cli("--home", str(workspace / "home"), "scan", "--configs", str(configs))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{configs / 'a.yaml'}:1:1: study: study id 'wrist' is also used by {configs / 'b.yaml'}" in result.stdout
    assert f"{configs / 'b.yaml'}:1:1: study: study id 'wrist' is also used by {configs / 'a.yaml'}" in result.stdout


# --- 8. no SKDH import when nothing needs it -------------------------------------------------------


def _imports_skdh(stderr: str) -> bool:
    """Whether `-X importtime` output (of this process and its workers) shows SKDH imported."""
    return any(line.split("|")[-1].strip() == "skdh" for line in stderr.splitlines())


def test_validating_an_unchanged_config_again_imports_no_skdh(workspace: Path) -> None:
    """The step checks' answer is cached under the runtimes folder: the second validate starts no SKDH."""
    write(workspace, VALID)
    env = {RUNTIMES_ENV: str(workspace / "runtimes"), "PYTHONPROFILEIMPORTTIME": "1"}  # workers inherit it
    first = cli("--home", str(workspace / "home"), "validate", str(workspace / "study.yaml"), env=env)
    second = cli("--home", str(workspace / "home"), "validate", str(workspace / "study.yaml"), env=env)
    assert first.returncode == second.returncode == 0, first.stdout + first.stderr
    assert first.stdout == second.stdout == f"ok  {workspace / 'study.yaml'}\n"
    assert _imports_skdh(first.stderr)  # cold: a worker of the runtime checked the steps
    assert not _imports_skdh(second.stderr)
    cached = list((workspace / "runtimes" / CACHE_FOLDER).iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".json"  # written whole: no temporary left


def test_cached_answers_follow_the_steps(workspace: Path) -> None:
    """A changed parameter is checked again; the cached answer keeps its problems."""
    path = write(workspace, VALID)
    bad = VALID.replace("{day_window: [12, 24]}", "{day_window: [12, 24], min_rest_block: thirty}")
    with RuntimeChecks(Runtimes(workspace / "runtimes")) as checks:
        assert validate_source(path, checks=checks)[1] == []
        assert validate_source(path, checks=checks)[1] == []
        assert checks.runtime_calls == 1
        path.write_text(bad)
        (problem,) = validate_source(path, checks=checks)[1]
        assert checks.runtime_calls == 2
        assert validate_source(path, checks=checks)[1] == [problem]
        assert checks.runtime_calls == 2
    assert problem.field == "pipeline.steps[1].Sleep.min_rest_block"
    assert "expects a number (default 30), got 'thirty'" in problem.message


def test_cheap_checks_import_no_skdh(workspace: Path) -> None:
    """Schema, locations, files, formats, metadata, subject pattern: all without SKDH."""
    (workspace / "data" / "subjects.csv").write_text("subject,height\nS01,1.7\n")
    write(workspace, VALID.replace("  subject:", "  reader: ReadBin\n  subject:"))
    script = textwrap.dedent(
        f"""\
        import sys
        from biomarkerflow.config.validate import run_file_checks, validate_source

        class FilesOnly:  # the workflow type's file checks, but no step checks
            def __call__(self, workflow, sections):
                return []

            def check_files(self, workflow, data, files):
                return run_file_checks(workflow, data, files)

        _, found = validate_source({str(workspace / "study.yaml")!r}, checks=FilesOnly(), expect_data=True)
        print(sorted(p.field for p in found))
        print("skdh" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines() == ["['data.reader', 'requirements.metadata[0]']", "False"], result.stderr
