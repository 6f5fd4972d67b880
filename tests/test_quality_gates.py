"""Quality gates (`requirements.quality`): a processed file outside a limit is EXCLUDED with
the gates it fails, keeps its quality report, and leaves the study's other tables; the
inclusion table lists every subject with valid days and why anyone is out; changing a gate
decides again from the stored measures, moving only the affected files, recomputing nothing."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from biomarkerflow.catalog.manager import Catalog
from biomarkerflow.config.validate import validate_source
from biomarkerflow.engine.executor import LocalExecutor
from biomarkerflow.stages.discovery import scan
from biomarkerflow.stages.processing import process
from biomarkerflow.stages.quality_gates import NOT_MEASURED, exclusion_reason
from tests.conftest import scanned_study

# ---- the decision ------------------------------------------------------------------------------


def test_a_file_inside_every_gate_is_not_excluded() -> None:
    gates = {"min_valid_days": 4, "max_clipping_fraction": 0.01}
    assert exclusion_reason(gates, {"valid_days": 4, "clipping_fraction": 0.01}) is None
    assert exclusion_reason({}, None) is None  # no gates: nothing is measured against


def test_every_failed_gate_is_named_with_the_measured_value_and_the_limit() -> None:
    gates = {"min_valid_days": 4, "max_clipping_fraction": 0.01, "max_gaps": 3}
    reason = exclusion_reason(gates, {"valid_days": 2, "clipping_fraction": 0.0312, "gaps": 3})
    assert reason == (
        "excluded by quality gates: valid_days 2 is below min_valid_days 4; "
        "clipping_fraction 0.0312 is above max_clipping_fraction 0.01"
    )


def test_a_gate_on_a_measure_the_run_lacks_excludes_and_says_so() -> None:
    reason = exclusion_reason({"min_valid_days": 1}, {"valid_days": None})
    assert reason is not None and "valid_days was not measured for this file (min_valid_days 1)" in reason
    assert exclusion_reason({"min_valid_days": 1}, None) == f"excluded by quality gates: {NOT_MEASURED}"


# ---- the config --------------------------------------------------------------------------------


def _validate(tmp_path: Path, quality: str) -> list[str]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    config = tmp_path / "study.yaml"
    config.write_text(
        "study: gates\n"
        "data: {location: data}\n"
        f"requirements:\n  quality: {quality}\n"
        "pipeline:\n  package: scikit-digital-health==0.17.18\n  steps:\n    - AccelThresholdWearDetection: {}\n"
    )
    _, problems = validate_source(str(config), config.read_bytes(), expect_data=False)
    return [str(p) for p in problems]


def test_a_gate_on_an_unknown_measure_is_a_config_problem_listing_the_known_ones(tmp_path: Path) -> None:
    problems = _validate(tmp_path, "{min_valid_dayz: 4}")
    [problem] = [p for p in problems if "valid_dayz" in p]
    assert "study.yaml:4:" in problem and "requirements.quality.min_valid_dayz" in problem
    assert "no quality measure 'valid_dayz'" in problem and "measures valid_days, days, nonwear_fraction" in problem


def test_a_gate_name_without_min_or_max_is_refused(tmp_path: Path) -> None:
    problems = _validate(tmp_path, "{valid_days: 4}")
    assert any("must be min_<measure> or max_<measure>" in p for p in problems), problems


# ---- end to end --------------------------------------------------------------------------------

VALID_DAY_HOURS = 16
WEAR_STEPS = "- AccelThresholdWearDetection: {}\n"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 2-day recordings from midnight: P01 off the wrist for 10 h on day 2 (14 h worn: one
    valid day at 16 h), P02 worn throughout (two valid days)."""
    from biomarkerflow.demo.synthetic import RecordingSpec, write_geneactiv_bin

    folder = tmp_path_factory.mktemp("gated")
    start = datetime(2026, 3, 2, 0, 0)
    specs = {
        "P01_wrist.bin": RecordingSpec(subject="P01", days=2.0, fs=25.0, start=start, seed=3, nonwear_gaps=((30, 10),)),
        "P02_wrist.bin": RecordingSpec(subject="P02", days=2.0, fs=25.0, start=start, seed=4, nonwear_gaps=()),
    }
    for name, spec in specs.items():
        write_geneactiv_bin(folder / name, spec)
    return {name: folder / name for name in specs}


def _set_gates(configs: Path, quality: str) -> None:
    config = configs / "gates.yaml"
    text = re.sub(r"requirements:\n(  .*\n)+", f"requirements:\n  quality: {quality}\n", config.read_text())
    config.write_text(text)


def _rescan(catalog: Catalog, configs: Path):  # type: ignore[no-untyped-def]
    info = scan(catalog, str(configs))
    assert info.ok, info
    [study] = info.studies
    return study


def _states(catalog: Catalog) -> dict[str, str]:
    return {f.subject or "": f.state for f in catalog.files("gates")}


def test_gates_exclude_keep_the_quality_report_and_change_without_recomputing(
    tmp_path: Path, recordings: dict[str, Path], executor: LocalExecutor
) -> None:
    from biomarkerflow.results.lineage import lineage
    from biomarkerflow.service import Platform

    catalog, configs = scanned_study(
        tmp_path,
        study="gates",
        files=recordings,
        steps=WEAR_STEPS,
        metadata=None,
        requirements="quality: {min_valid_days: 2}",
        extra=f"quality:\n  valid_day_hours: {VALID_DAY_HOURS}\n",
    )
    info = process(catalog, executor)
    assert info.succeeded == 1 and info.excluded == 1 and info.failed == 0
    assert _states(catalog) == {"P01": "EXCLUDED", "P02": "SUCCEEDED"}
    [p01] = [f for f in catalog.files("gates") if f.subject == "P01"]
    assert p01.reason == "excluded by quality gates: valid_days 1 is below min_valid_days 2"

    platform = Platform(home=tmp_path / "home")
    days = platform.query("gates", "SELECT subject, sum(valid::INT) AS valid FROM quality_days GROUP BY subject")
    assert dict(zip(days["subject"], days["valid"], strict=True)) == {"P01": 1, "P02": 2}
    # The excluded file keeps its quality report; its other results leave the study's tables.
    quality = platform.query("gates", "SELECT subject FROM quality ORDER BY subject")
    assert list(quality["subject"]) == ["P01", "P02"]
    assert set(platform.query("gates", "SELECT DISTINCT subject FROM wear")["subject"]) == {"P02"}
    inclusion = platform.query("gates", "SELECT * FROM inclusion ORDER BY subject").to_dict("records")
    assert [(r["subject"], r["in_analysis"], r["valid_days"], r["excluded"]) for r in inclusion] == [
        ("P01", False, 1.0, 1),
        ("P02", True, 2.0, 0),
    ]
    assert inclusion[0]["why_out"] == f"P01_wrist.bin: {p01.reason}" and pd.isna(inclusion[1]["why_out"])
    # status and lineage say why.
    [status] = catalog.status("gates")
    assert status.excluded == [("P01_wrist.bin", p01.reason)]
    run = catalog.get_run(p01.current_run_id or "")
    assert run is not None and run.result_location
    view = lineage(run.result_location, catalog)["catalog"]
    assert (view["status"], view["why"]) == ("excluded", p01.reason)

    # A looser gate: P01 comes back, decided from its stored measures; P02 is not touched.
    runs_before = len(catalog.runs("gates"))
    [p02] = [f for f in catalog.files("gates") if f.subject == "P02"]
    p02_events = len(catalog.events(p02.id))
    _set_gates(configs, "{min_valid_days: 1}")
    study = _rescan(catalog, configs)
    assert (study.regated.included, study.regated.excluded, study.stale) == (1, 0, 0)
    assert _states(catalog) == {"P01": "SUCCEEDED", "P02": "SUCCEEDED"}
    assert len(catalog.events(p02.id)) == p02_events
    again = process(catalog, executor)
    assert again.outcomes == [] and len(catalog.runs("gates")) == runs_before  # nothing recomputed
    assert set(platform.query("gates", "SELECT DISTINCT subject FROM wear")["subject"]) == {"P01", "P02"}
    assert platform.query("gates", "SELECT bool_and(in_analysis) AS all_in FROM inclusion")["all_in"][0]

    # A gate every file fails: both out, each with its own numbers.
    _set_gates(configs, "{max_nonwear_fraction: 0.0}")
    assert _rescan(catalog, configs).regated.excluded == 2
    reasons = {f.subject: f.reason or "" for f in catalog.files("gates")}
    assert all(re.search(r"nonwear_fraction [\d.e-]+ is above max_nonwear_fraction 0$", r) for r in reasons.values()), (
        reasons
    )
    process(catalog, executor)
    assert platform.query("gates", "SELECT count(*) AS n FROM inclusion WHERE NOT in_analysis")["n"][0] == 2
    assert len(platform.query("gates", "SELECT * FROM quality")) == 2
    platform.close()

    # What decides the numbers changed (valid_day_hours is part of the quality report): recomputed.
    config = configs / "gates.yaml"
    config.write_text(config.read_text().replace(f"valid_day_hours: {VALID_DAY_HOURS}", "valid_day_hours: 12"))
    assert _rescan(catalog, configs).stale == 2
    assert set(_states(catalog).values()) == {"STALE"}
