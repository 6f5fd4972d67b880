"""Study configs: loading with exact locations, and complete validation.

Every test writes its YAML inline, so the line and column a problem must point at
can be read off the test itself (line 1 is the first line after the opening quotes).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from biomarkerflow.config.loader import LoadedConfig, load_study_config, parse_study_config
from biomarkerflow.config.validate import validate_paths, validate_source
from biomarkerflow.errors import ConfigError, ConfigProblem

SOURCE = "/studies/configs/demo.yaml"

CONTRACT = """\
study: demo-wrist
description: Free-living wrist study
data:
  location: data/raw                 # relative to the config file, absolute, or a URL
  include: ["**/*.cwa", "**/*.bin"]
  subject: '(?P<subject>[A-Za-z0-9]+)_'   # regex on the file name; named group 'subject'
  reader: auto                       # by extension, or e.g. ReadCwa / {ReadCSV: {...}}
metadata:
  - location: data/subjects.csv      # one row per subject, column 'subject'
requirements:
  metadata: [height_m]               # fields each subject needs before its files run
  min_files_per_subject: 1
  stable_seconds: 0
pipeline:
  package: scikit-digital-health==0.17.18
  steps:
    - CalibrateAccelerometer: {min_hours: 24}
    - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
    - AccelThresholdWearDetection: {}
    - Sleep: {day_window: [12, 24]}
    - ActivityLevelClassification: {cutpoints: migueles_wrist_adult}
output:
  location: results
"""


def problems(yaml_text: str, source: str = SOURCE) -> list[ConfigProblem]:
    """Every problem of a config written inline (dedented)."""
    _, found = validate_source(source, textwrap.dedent(yaml_text))
    return found


def where(found: list[ConfigProblem]) -> list[tuple[int | None, int | None, str]]:
    return [(p.line, p.column, p.field) for p in found]


def only(found: list[ConfigProblem]) -> ConfigProblem:
    assert len(found) == 1, "\n".join(str(p) for p in found)
    return found[0]


# --- the contract ----------------------------------------------------------------------


def test_contract_example_is_valid() -> None:
    loaded, found = validate_source(SOURCE, CONTRACT)
    assert found == []
    assert loaded is not None
    config = loaded.config
    assert config.study == "demo-wrist"
    assert config.data.reader_name == "auto"
    assert [next(iter(s)) for s in config.pipeline.steps][-1] == "ActivityLevelClassification"
    assert loaded.source == SOURCE
    assert loaded.text == CONTRACT
    assert loaded.locations["pipeline.steps[3].Sleep"] == (20, 7)
    assert loaded.locations["pipeline.steps[3].Sleep.day_window"] == (20, 15)
    assert loaded.locations["data.include[1]"] == (5, 25)
    assert loaded.locations["metadata[0].location"] == (9, 5)


def test_load_reads_the_file_and_makes_the_source_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "demo.yaml").write_text(CONTRACT, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    loaded = load_study_config("demo.yaml")
    assert loaded.source == str(tmp_path / "demo.yaml")
    assert loaded.resolve("data/raw") == str(tmp_path / "data" / "raw")


# --- YAML-level problems -----------------------------------------------------------------


def test_yaml_syntax_error_points_at_the_problem_mark() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          include: ["**/*.cwa"
        pipeline:
          steps: [Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (5, 1, "")
    assert problem.message.startswith("invalid YAML: expected ',' or ']'")
    assert problem.file == SOURCE


def test_tab_indentation_is_explained() -> None:
    problem = only(problems("study: s1\ndata:\n\tlocation: x\n"))
    assert (problem.line, problem.column) == (3, 1)
    assert "indent with spaces, not tabs" in problem.message


def test_top_level_must_be_a_mapping() -> None:
    problem = only(
        problems(
            """\
            # a list is not a study
            - study: s1
            - study: s2
            """
        )
    )
    assert (problem.line, problem.column, problem.field) == (2, 1, "")
    assert "must be a mapping" in problem.message and "not a list" in problem.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    problem = only(problems(text))
    assert (problem.line, problem.column, problem.field) == (1, 1, "")
    assert "empty" in problem.message


def test_duplicate_key_points_at_the_second_one() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          reader: ReadCwa
          reader: ReadBin
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (5, 3, "data.reader")
    assert "duplicate key 'reader'" in problem.message and "line 4" in problem.message


def test_python_tags_are_refused() -> None:
    problem = only(problems("study: !!python/object/apply:os.system [echo hi]\n"))
    assert (problem.line, problem.column) == (1, 8)
    assert "unsupported YAML" in problem.message


def test_more_than_one_document() -> None:
    problem = only(problems("study: a\n---\nstudy: b\n"))
    assert (problem.line, problem.column) == (2, 1)
    assert "one study per file" in problem.message


# --- schema problems ----------------------------------------------------------------------


def test_unknown_key_points_at_the_key() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          subjects: '(?P<subject>\\w+)'
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (4, 3, "data.subjects")
    assert problem.message == "unknown field 'subjects'; did you mean 'subject'?"


def test_missing_required_field_points_at_the_parent_key() -> None:
    found = problems(
        """\
        study: s1
        data:
          include: ["**/*.cwa"]
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (2, 1, "data.location")
    assert problem.message == "missing required field 'location'"


def test_missing_top_level_field_points_at_the_document() -> None:
    found = problems(
        """\
        # demo
        study: s1
        data:
          location: data/raw
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (2, 1, "pipeline")
    assert problem.message == "missing required field 'pipeline'"


def test_missing_field_in_a_list_item_points_at_the_item() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        metadata:
          - subject_column: id
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    assert where(found) == [(5, 5, "metadata[0].location")]


def test_wrong_type_points_at_the_value_and_quotes_it() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        requirements:
          min_files_per_subject: many
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (5, 26, "requirements.min_files_per_subject")
    assert problem.message == "expected a whole number, got 'many'"


def test_number_where_text_is_expected_suggests_quotes() -> None:
    found = problems(
        """\
        study: 2024
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (1, 8, "study")
    assert problem.message == "expected text, got 2024; put it in quotes: '2024'"


def test_wrong_type_of_step_parameters_maps_the_dict_key_loc() -> None:
    # pydantic reports ('pipeline', 'steps', 1, 'Sleep'): a list index, then a dict key.
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - Sleep: 12
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (8, 14, "pipeline.steps[1].Sleep")
    assert problem.message == "expected a mapping (name: value), got 12"


def test_wrong_type_of_a_union_field_is_one_problem() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          reader: 5
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (4, 11, "data.reader")
    assert problem.message == "expected text or a mapping, got 5"


def test_empty_value_points_at_its_key() -> None:
    found = problems(
        """\
        study: s1
        data:
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (2, 1, "data")
    assert problem.message == "expected a mapping (name: value), but the value is empty"


def test_step_naming_two_steps_points_at_the_step() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - {Sleep: {}, ActivityLevelClassification: {}}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (8, 7, "pipeline.steps[1]")
    assert "this one names: Sleep, ActivityLevelClassification" in problem.message


def test_invalid_regex_points_at_the_value() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          subject: '(?P<subject[A-Z]+)_'
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (4, 12, "data.subject")
    assert problem.message.startswith("invalid regular expression")
    assert "(?P<subject[A-Z]+)_" in problem.message


def test_regex_without_subject_group() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          subject: '([A-Z]+)_'
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (4, 12, "data.subject")
    assert "named group 'subject'" in problem.message


# --- SKDH checks -------------------------------------------------------------------------


def test_package_must_be_skdh() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: ggir==3.0
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (5, 3, "pipeline.package")
    assert "scikit-digital-health, not 'ggir'" in problem.message


def test_in_process_checks_compare_the_pin_with_the_installed_version() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.16.15
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (5, 3, "pipeline.package")
    assert "0.16.15 is pinned but this runtime holds 0.17.18" in problem.message


@pytest.mark.parametrize(
    "package", ["scikit-digital-health>=0.17", "scikit-digital-health", "'scikit-digital-health==0.17.*'"]
)
def test_version_must_be_pinned_exactly(package: str) -> None:
    found = problems(
        f"""\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: {package}
          steps: [GetDayWindowIndices: {{bases: [0, 12], periods: [24, 24]}}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (5, 3, "pipeline.package")
    assert "pin an exact version, e.g. scikit-digital-health==0.17.18" in problem.message


def test_missing_package_is_reported_at_the_pipeline() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    assert where(found) == [(4, 1, "pipeline.package")]


def test_unknown_reader() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          reader: ReadActigraph
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (4, 3, "data.reader")
    assert "unknown reader 'ReadActigraph'" in problem.message and "ReadCwa" in problem.message
    assert "ReadGt3x" in problem.message  # ours, listed with SKDH's


def test_reader_parameters_are_checked() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          include: ["*.csv"]
          reader:
            ReadCSV: {time_col_name: t, column_names: {accel: [x, y, z]}, colour: red}
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (6, 67, "data.reader.ReadCSV.colour")
    assert "ReadCSV has no parameter 'colour'" in problem.message


def test_reader_missing_required_parameters() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          include: ["*.csv"]
          reader: ReadCSV
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (5, 3, "data.reader")
    assert "ReadCSV needs the parameter(s) time_col_name, column_names" in problem.message


def test_auto_reader_needs_a_default_for_every_pattern() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          include:
            - "**/*.cwa"
            - "**/*.dat"
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (6, 7, "data.include[1]")
    assert "'**/*.dat'" in problem.message and "set data.reader" in problem.message


def test_unknown_step_points_at_its_name() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - Slep: {}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (8, 7, "pipeline.steps[1].Slep")
    assert "unknown pipeline step 'Slep'" in problem.message and "did you mean Sleep" in problem.message


def test_unknown_step_parameter_points_at_the_parameter() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - Sleep:
                day_window: [12, 24]
                min_rest: 5
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (10, 9, "pipeline.steps[1].Sleep.min_rest")
    assert "Sleep has no parameter 'min_rest'" in problem.message


def test_step_parameter_value_rejected_by_skdh() -> None:
    # SKDH only warns about unknown cutpoints and silently uses its default: a problem.
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - Sleep: {}
            - ActivityLevelClassification: {cutpoints: hildebrand}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (9, 7, "pipeline.steps[2].ActivityLevelClassification")
    assert "cutpoints not found" in problem.message


def test_step_constructor_error_is_reported() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 30]}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (7, 7, "pipeline.steps[0].GetDayWindowIndices")
    assert "GetDayWindowIndices rejects these parameters" in problem.message


def test_reader_as_a_step() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - ReadCwa
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - Sleep
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (7, 7, "pipeline.steps[0].ReadCwa")
    assert "ReadCwa is a reader: set it under data.reader" in problem.message


def test_sleep_after_activity() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - ActivityLevelClassification: {}
            - Sleep: {}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (9, 7, "pipeline.steps[2].Sleep")
    assert "Sleep must come before ActivityLevelClassification (pipeline.steps[1])" in problem.message


def test_sleep_without_day_windows() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - AccelThresholdWearDetection: {}
            - Sleep: {}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (8, 7, "pipeline.steps[1].Sleep")
    assert "Sleep needs GetDayWindowIndices before it, with bases including 12" in problem.message


def test_sleep_with_day_windows_lacking_base_12() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0], periods: [24]}
            - Sleep: {}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (8, 7, "pipeline.steps[1].Sleep")
    assert "add 12 to its bases" in problem.message


def test_activity_without_day_windows() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - ActivityLevelClassification: {}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (7, 7, "pipeline.steps[0].ActivityLevelClassification")
    assert "not split into days" in problem.message


# --- all at once, and the LoadedConfig API ---------------------------------------------------


def test_every_schema_problem_is_reported_in_line_order() -> None:
    found = problems(
        """\
        study: my study
        data:
          location: data/raw
          subject: '(['
          bogus: 1
        requirements:
          min_files_per_subject: 0
          stable_seconds: soon
        pipeline:
          steps: []
        workflow: ggir
        """
    )
    assert where(found) == [
        (1, 8, "study"),
        (4, 12, "data.subject"),
        (5, 3, "data.bogus"),
        (7, 26, "requirements.min_files_per_subject"),
        (8, 19, "requirements.stable_seconds"),
        (10, 10, "pipeline.steps"),
        (11, 11, "workflow"),
    ]
    assert found[0].message.startswith("'my study' is not a valid study id")
    assert found[3].message == "must be at least 1, got 0"
    assert found[5].message == "needs at least 1 item(s), got 0"


def test_every_check_problem_is_reported_in_line_order() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          include: ["**/*.xyz"]
        pipeline:
          package: scikit-digital-health==0.16.15
          steps:
            - ReadCwa
            - Slep
            - Sleep: {bogus: 1}
        """
    )
    assert where(found) == [
        (4, 13, "data.include[0]"),
        (6, 3, "pipeline.package"),
        (8, 7, "pipeline.steps[0].ReadCwa"),
        (9, 7, "pipeline.steps[1].Slep"),
        (10, 15, "pipeline.steps[2].Sleep.bogus"),
    ]


# --- SKDH checks of the well-formed sections when the schema fails -----------------------


def test_schema_problem_in_data_and_unknown_step_are_both_reported() -> None:
    loaded, found = validate_source(
        SOURCE,
        textwrap.dedent(
            """\
            study: x
            data:
              location: d
              subject: '(?P<subject>['
            pipeline:
              package: scikit-digital-health==0.17.18
              steps:
                - NoSuchStep: {}
            """
        ),
    )
    assert loaded is None
    assert where(found) == [(4, 12, "data.subject"), (8, 7, "pipeline.steps[0].NoSuchStep")]
    assert found[0].message.startswith("invalid regular expression")
    assert "unknown pipeline step 'NoSuchStep'" in found[1].message


def test_the_brief_example_without_a_package_also_reports_the_unpinned_package() -> None:
    found = problems(
        """\
        study: x
        data:
          location: d
          subject: '(?P<subject>['
        pipeline:
          steps:
            - NoSuchStep: {}
        """
    )
    assert where(found) == [
        (4, 12, "data.subject"),
        (5, 1, "pipeline.package"),
        (7, 7, "pipeline.steps[0].NoSuchStep"),
    ]


def test_wrong_type_in_output_and_bad_step_parameter_are_both_reported() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - Sleep: {bogus: 1}
        output:
          formats: parquet
        """
    )
    assert where(found) == [(8, 15, "pipeline.steps[1].Sleep.bogus"), (10, 12, "output.formats")]
    assert "Sleep has no parameter 'bogus'" in found[0].message
    assert found[1].message.startswith("expected a list, got 'parquet'")


def test_broken_pipeline_and_unknown_reader_are_both_reported() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          reader: ReadNothing
        pipeline:
          package: scikit-digital-health==0.16.15
          steps: 5
        """
    )
    # The pipeline section fails the schema, so none of its checks (not even the
    # package's) run; the data section is fine, so its reader is checked.
    assert where(found) == [(4, 3, "data.reader"), (7, 10, "pipeline.steps")]
    assert found[0].message.startswith("unknown reader 'ReadNothing'")
    assert found[1].message == "expected a list, got 5"


def test_duplicate_keys_do_not_hide_the_skdh_checks() -> None:
    loaded, found = validate_source(
        SOURCE,
        textwrap.dedent(
            """\
            study: s1
            data:
              location: data/raw
              location: data/raw2
            pipeline:
              package: scikit-digital-health==0.17.18
              steps: [Slep]
            """
        ),
    )
    assert loaded is None
    assert where(found) == [(4, 3, "data.location"), (7, 11, "pipeline.steps[0].Slep")]


def test_no_skdh_checks_for_an_unknown_workflow_type() -> None:
    found = problems(
        """\
        study: s1
        workflow: ggir
        data:
          location: data/raw
          reader: ReadNothing
        pipeline:
          steps: [Slep]
        """
    )
    assert where(found) == [(2, 11, "workflow")]


def test_parse_study_config_returns_problems_and_positions_without_raising() -> None:
    parsed = parse_study_config(SOURCE, "study: s1\ndata: {location: 5}\npipeline: {steps: [Sleep]}\n")
    assert parsed.config is None and parsed.loaded() is None
    assert where(parsed.problems) == [(2, 18, "data.location")]
    assert parsed.data["pipeline"] == {"steps": ["Sleep"]}
    assert parsed.locate("pipeline.steps[0]") == (3, 20)
    missing = parse_study_config("/nowhere/at/all.yaml")
    assert missing.data is None and [p.message for p in missing.problems] == ["file not found"]


def test_load_raises_config_error_with_every_problem() -> None:
    text = "study: s1\nstudy: s2\ndata: {location: 5}\n"
    with pytest.raises(ConfigError) as caught:
        load_study_config(SOURCE, text)
    assert where(caught.value.problems) == [(1, 1, "pipeline"), (2, 1, "study"), (3, 18, "data.location")]
    assert f"{SOURCE}:2:1: study: duplicate key 'study'" in str(caught.value)


def test_resolve_local_locations(tmp_path: Path) -> None:
    loaded = load_study_config(tmp_path / "configs" / "demo.yaml", CONTRACT)
    assert loaded.resolve("data/raw") == str(tmp_path / "configs" / "data" / "raw")
    assert loaded.resolve("../shared/raw") == str(tmp_path / "shared" / "raw")
    assert loaded.resolve("/mnt/raw") == "/mnt/raw"
    assert loaded.resolve("s3://bucket/raw") == "s3://bucket/raw"


def test_resolve_relative_to_an_s3_config() -> None:
    loaded = load_study_config("s3://b/configs/x.yaml", CONTRACT)
    assert loaded.source == "s3://b/configs/x.yaml"
    assert loaded.resolve("data/raw") == "s3://b/configs/data/raw"
    assert loaded.resolve("../raw") == "s3://b/raw"
    assert loaded.resolve("s3://other/raw") == "s3://other/raw"
    assert loaded.resolve("https://example.org/raw") == "https://example.org/raw"
    assert loaded.resolve("/mnt/raw") == "/mnt/raw"


def test_sha256_follows_the_text() -> None:
    first = load_study_config(SOURCE, CONTRACT)
    same = load_study_config(SOURCE, CONTRACT.encode("utf-8"))
    changed = load_study_config(SOURCE, CONTRACT.replace("min_hours: 24", "min_hours: 48"))
    assert first.sha256 == same.sha256
    assert first.sha256 != changed.sha256
    assert len(first.sha256) == 64


def test_problem_falls_back_to_the_nearest_located_parent() -> None:
    loaded: LoadedConfig = load_study_config(SOURCE, CONTRACT)
    exact = loaded.problem("pipeline.steps[3].Sleep.day_window", "x")
    assert (exact.line, exact.column) == (20, 7 + len("Sleep: {"))
    fallback = loaded.problem("pipeline.steps[3].Sleep.min_rest_period", "too short")
    assert (fallback.line, fallback.column, fallback.field) == (20, 7, "pipeline.steps[3].Sleep.min_rest_period")
    defaulted = loaded.problem("output.formats[0]", "x")
    assert (defaulted.line, defaulted.column) == (22, 1)
    assert str(fallback) == f"{SOURCE}:20:7: pipeline.steps[3].Sleep.min_rest_period: too short"


def test_validate_paths(tmp_path: Path, samples: Path) -> None:
    (tmp_path / "good.yaml").write_text(CONTRACT, encoding="utf-8")
    (tmp_path / "data" / "raw").mkdir(parents=True)  # validate_paths wants the data in place
    shutil.copyfile(samples / "gnactv_sample.bin", tmp_path / "data" / "raw" / "S01_wrist.bin")
    (tmp_path / "data" / "subjects.csv").write_text("subject,height_m\nS01,1.7\n", encoding="utf-8")
    (tmp_path / "bad.yml").write_text("study: s1\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a config", encoding="utf-8")
    missing = str(tmp_path / "missing.yaml")
    results = validate_paths([missing, str(tmp_path / "good.yaml"), str(tmp_path)])
    assert results[missing] == [ConfigProblem(missing, None, None, "", "file not found")]
    assert results[str(tmp_path / "good.yaml")] == []
    bad = results[str(tmp_path / "bad.yml")]
    assert [p.message for p in bad] == ["missing required field 'data'", "missing required field 'pipeline'"]
    assert str(tmp_path / "notes.txt") not in results


def test_loading_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_study_config(tmp_path / "nope.yaml")
    assert [p.message for p in caught.value.problems] == ["file not found"]


def test_sleep_needs_a_day_window() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        pipeline:
          package: scikit-digital-health==0.17.18
          steps:
            - GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}
            - Sleep: {day_window: null}
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (8, 15, "pipeline.steps[1].Sleep.day_window")
    assert "Sleep needs day_window" in problem.message


def test_non_text_key_points_at_the_key() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
        cost_tags:
          yes: paid
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.column, problem.field) == (5, 3, "cost_tags.yes")
    assert problem.message == "names here must be text, got true; put it in quotes"


def test_auto_reader_that_needs_settings_is_a_problem() -> None:
    found = problems(
        """\
        study: s1
        data:
          location: data/raw
          include: ["*.csv"]
        pipeline:
          package: scikit-digital-health==0.17.18
          steps: [GetDayWindowIndices: {bases: [0, 12], periods: [24, 24]}, Sleep]
        """
    )
    problem = only(found)
    assert (problem.line, problem.field) == (4, "data.include[0]")
    assert "picks ReadCSV" in problem.message and "time_col_name" in problem.message
