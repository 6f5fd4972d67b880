"""The first hour of a new user: each mistake gets a right, early answer and the README's exit code.

Every test runs the real command in a subprocess, at the 80 columns that piped output has.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_study

COMMANDS = [
    [],
    ["validate"],
    ["scan"],
    ["process"],
    ["run"],
    ["watch"],
    ["status"],
    ["query"],
    ["lineage"],
    ["costs"],
    ["estimate"],
    ["demo"],
    ["runtimes", "list"],
    ["runtimes", "build"],
    ["runtimes", "prune"],
    ["models", "train"],
    ["models", "list"],
    ["models", "show"],
    ["models", "report"],
    ["models", "import-history"],
    ["serve"],
    ["tokens", "create"],
    ["tokens", "list"],
    ["tokens", "revoke"],
]


def bmf(*args: str, cwd: Path, home: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: no BIOMARKERFLOW_HOME unless given, 80 columns, output piped."""
    environment = {k: v for k, v in os.environ.items() if k not in ("BIOMARKERFLOW_HOME", "COLUMNS")}
    environment |= {"COLUMNS": "80", **env}
    if home is not None:
        environment["BIOMARKERFLOW_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "biomarkerflow.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=600,
    )


def test_version_names_platform_and_installed_skdh(tmp_path: Path) -> None:
    import importlib.metadata

    import biomarkerflow

    result = bmf("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert f"biomarkerflow {biomarkerflow.__version__}" in result.stdout
    assert f"scikit-digital-health {importlib.metadata.version('scikit-digital-health')}" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_shows_plain_names_not_python_types(tmp_path: Path, command: list[str]) -> None:
    result = bmf(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not re.search(r"\{[A-Za-z_]+\}", result.stdout), result.stdout
    assert not re.search(r"<(str|int|float|list\[str\]|path)>", result.stdout), result.stdout


def test_home_is_found_above_the_current_folder_and_named_by_status(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".biomarkerflow").mkdir(parents=True)
    below = project / "studies" / "wrist"
    below.mkdir(parents=True)
    result = bmf("status", cwd=below)
    assert result.returncode == 0, result.stderr
    assert f"catalog: {project / '.biomarkerflow'} (found above the current folder)" in result.stdout
    assert not (below / ".biomarkerflow").exists()  # no second, empty catalog


def test_a_file_as_home_is_a_clear_error_with_exit_4(tmp_path: Path) -> None:
    (tmp_path / "home.txt").write_text("not a folder")
    result = bmf("--home", "home.txt", "status", cwd=tmp_path)
    assert result.returncode == 4
    assert f"--home {tmp_path / 'home.txt'} is a file, not a folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_configs_folder_that_does_not_exist_is_named_as_such(tmp_path: Path) -> None:
    result = bmf("scan", "--configs", "studeis", cwd=tmp_path)
    assert result.returncode == 2
    assert f"--configs studeis: no such folder or file (looked for {tmp_path / 'studeis'})" in result.stderr
    assert "data.location" not in result.stderr


def test_process_before_any_scan_says_what_to_do(tmp_path: Path) -> None:
    result = bmf("process", cwd=tmp_path)
    assert result.returncode == 0
    assert "has no studies yet" in result.stdout
    assert "biomarkerflow scan --configs DIR" in result.stdout


def test_markup_looking_text_is_printed_literally(tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(
        "study: s\ndata:\n  location: data\n  subject: '([a-z0-9]+)_[bold]x[/]'\n"
        "pipeline:\n  package: scikit-digital-health==0.17.18\n  steps: []\n"
    )
    result = bmf("validate", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "([a-z0-9]+)_[bold]x[/]" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["status", "--study", "nope"], 4, "no study 'nope' in the catalog"),
        (["query", "--study", "nope", "SELECT 1"], 4, "no study 'nope' in the catalog"),
        (["costs", "--by", "planet"], 2, "'planet' is not one of"),
        (["estimate", "--pipeline", "p-new", "--input-size", "1GB"], 4, "no estimate: only 0 past run(s)"),
        (["estimate", "--pipeline", "p-new", "--input-size", "lots"], 2, "'lots' is not an amount like 2GB"),
        (["estimate", "--workflow", "p-new", "--input-size", "1GB"], 4, "no estimate: only 0 past run(s)"),
        (["estimate", "--pipeline", "p-new", "--workflow", "p-old", "--input-size", "1GB"], 2, "disagree"),
        (["models", "show", "p-new"], 4, "no cost model of pipeline 'p-new'"),
        (["lineage", "no/such/file.parquet"], 2, "no/such/file.parquet"),
        (["validate", "no-such.yaml"], 2, "no-such.yaml"),
        (["run", "--configs", "nothere"], 2, "--configs nothere: no such folder or file"),
        (["watch", "--configs", "nothere", "--once"], 2, "--configs nothere: no such folder or file"),
        (["process", "--study", "nope"], 4, "no study 'nope' in the catalog"),
        (["process", "--dry-run", "--study", "nope"], 4, "no study 'nope' in the catalog"),
        (["costs", "--study", "nope"], 4, "no study 'nope' in the catalog"),
        (["estimate", "--study", "nope"], 4, "no study 'nope' in the catalog"),
        (["estimate"], 2, "give either --study or --pipeline"),
        (["runtimes", "build"], 2, "name study configs or --package"),
        (["runtimes", "list"], 0, ""),
        (["runtimes", "prune", "--dry-run"], 0, "runtime(s) would remove"),
        (["models", "train"], 0, "no run history yet"),
        (["models", "list"], 0, "no models yet"),
        (["models", "report"], 0, "no estimate has met its run yet"),
        (["models", "import-history", "missing.csv"], 2, "missing.csv"),
        (["demo", "--subjects", "0"], 2, "--subjects"),
        (["serve", "--watch"], 2, "--watch needs --configs"),
        (["tokens", "create", "--name", "a b"], 2, "token name 'a b' is not allowed"),
        (["tokens", "create", "--name", "ann", "--scope", "root"], 2, "unknown scope 'root'"),
        (["tokens", "revoke", "nobody"], 4, "no token named 'nobody'"),
        (["tokens", "list"], 0, "no tokens yet"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_exit_codes_follow_the_readme_table(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = bmf(*args, cwd=tmp_path)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


STUDY = "lab-gait-with-a-long-name"


@pytest.fixture(scope="module")
def queryable(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> tuple[Path, Path]:
    """A real lumbar-gait study, processed: SKDH's gait table has dozens of columns with spaces."""
    root = tmp_path_factory.mktemp("query")
    configs = write_study(
        root,
        study=STUDY,
        files={"S01_lumbar.cwa": samples / "ax3_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata="subject,height\nS01,1.75\n",
        requirements="metadata: [height]",
    )
    home = root / "home"
    result = bmf("run", "--configs", str(configs), "--workers", "1", cwd=root, home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, home


def test_wide_query_result_prints_one_record_per_block(queryable: tuple[Path, Path]) -> None:
    root, home = queryable
    result = bmf("query", "--study", STUDY, "SELECT * FROM gait LIMIT 2", cwd=root, home=home)
    assert result.returncode == 0, result.stderr
    assert "-- record 2 of 2 --" in result.stdout
    assert re.search(r"^gait speed +[0-9.]+$", result.stdout, re.MULTILINE), result.stdout
    assert "use --format csv or --format json" in result.stdout
    assert "…" not in result.stdout  # nothing cut


def test_a_table_that_fits_is_a_table(queryable: tuple[Path, Path]) -> None:
    root, home = queryable
    sql = 'SELECT subject, COUNT(*) AS strides, AVG("gait speed") AS speed FROM gait GROUP BY 1'
    result = bmf("query", "--study", STUDY, sql, cwd=root, home=home)
    assert result.returncode == 0, result.stderr
    assert re.search(r"│ S01 +│ +\d+ │", result.stdout), result.stdout
    assert "record" not in result.stdout


def test_unquoted_column_with_a_space_is_refused_with_the_quoted_form(queryable: tuple[Path, Path]) -> None:
    root, home = queryable
    result = bmf("query", "--study", STUDY, "SELECT gait speed FROM gait", cwd=root, home=home)
    assert result.returncode == 2
    assert 'column names with spaces need double quotes: "gait speed"' in result.stderr
    assert 'SELECT subject, "gait speed" FROM gait' in result.stderr


def test_query_errors_list_tables_with_quoted_columns(queryable: tuple[Path, Path]) -> None:
    root, home = queryable
    result = bmf("query", "--study", STUDY, "SELECT speed FROM gait", cwd=root, home=home)
    assert result.returncode == 2
    assert re.search(r'gait\(study, subject, file, run_id, .*"gait speed"', result.stderr), result.stderr


def test_costs_by_subject_never_cuts_identifiers(queryable: tuple[Path, Path]) -> None:
    root, home = queryable
    result = bmf("costs", "--by", "study", cwd=root, home=home)
    assert result.returncode == 0, result.stderr
    assert STUDY in result.stdout
    assert "…" not in result.stdout


def test_estimate_for_a_study_with_nothing_left_says_so(queryable: tuple[Path, Path]) -> None:
    root, home = queryable
    result = bmf("estimate", "--study", STUDY, cwd=root, home=home)
    assert result.returncode == 0, result.stderr
    assert f"{STUDY}: all 1 file(s) are processed or running; nothing left to estimate" in result.stdout
    assert "biomarkerflow estimate --pipeline skdh-0.17.18-" in result.stdout


def test_status_does_not_import_the_heavy_libraries(tmp_path: Path) -> None:
    """`status` and `--help` should start fast: SKDH, scikit-learn and pandas stay unimported,
    and so does pydantic (typer 0.29 builds a validator per option with it at every start)."""
    for args in (["status"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "biomarkerflow.cli", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "BIOMARKERFLOW_HOME"},
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        for heavy in ("skdh", "sklearn", "pandas", "scipy", "pydantic"):
            assert heavy not in imported, f"`biomarkerflow {' '.join(args)}` imports {heavy}"


@pytest.fixture(scope="module")
def partial_and_failed(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> tuple[Path, Path, str]:
    """Gait without heights (succeeds with a note) and an 18 s recording through the wrist
    pipeline (fails in a named step), taken through `run` as a user would."""
    root = tmp_path_factory.mktemp("partial")
    write_study(
        root,
        study="gait-no-height",
        files={"S01_lumbar.cwa": samples / "ax3_sample.cwa"},
        steps="- GaitLumbar: {}\n",
        metadata=None,
        requirements="metadata: []",
    )
    configs = write_study(
        root,
        study="wrist-short",
        files={"S02_wrist.bin": samples / "gnactv_sample.bin"},
        metadata=None,
        requirements="metadata: []",
        extra="max_attempts: 1\n",
    )
    home = root / "home"
    result = bmf("run", "--configs", str(configs), "--workers", "1", cwd=root, home=home)
    assert result.returncode == 1, result.stdout + result.stderr  # the short recording failed
    return root, home, result.stdout


def test_run_shows_the_note_on_partial_results_and_the_failing_step(
    partial_and_failed: tuple[Path, Path, str],
) -> None:
    _, _, output = partial_and_failed
    assert re.search(r"SUCCEEDED gait-no-height/S01_lumbar\.cwa.*\n\s+note: .*height", output), output
    assert re.search(r"FAILED +wrist-short/S02_wrist\.bin.*\n\s+\w+:", output), output


def test_status_shows_notes_and_verbose_shows_step_and_traceback(partial_and_failed: tuple[Path, Path, str]) -> None:
    root, home, _ = partial_and_failed
    plain = bmf("status", cwd=root, home=home)
    assert re.search(r"NOTE +S01_lumbar\.cwa: .*height", plain.stdout), plain.stdout
    assert "status --verbose" in plain.stdout
    assert "Traceback" not in plain.stdout
    verbose = bmf("status", "--verbose", cwd=root, home=home)
    assert re.search(r"step \w+, run [0-9a-f-]+", verbose.stdout), verbose.stdout
    assert "Traceback (most recent call last)" in verbose.stdout
    as_json = json.loads(bmf("status", "--json", cwd=root, home=home).stdout)
    failed = next(s for s in as_json["studies"] if s["study"] == "wrist-short")["failed"][0]
    assert failed["step"] and "Traceback" in failed["traceback"]
