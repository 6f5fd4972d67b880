"""The requirement gate and the retry policy are pure functions: tested without a database."""

from __future__ import annotations

from datetime import datetime, timedelta

from biomarkerflow.config.schema import RequirementsConfig
from biomarkerflow.engine.retry import retry_at
from biomarkerflow.stages.requirements import FileFacts, evaluate

NOW = datetime(2026, 3, 2, 12, 0, 0)
PATTERN = "(?P<subject>[A-Za-z0-9]+)_"


def facts(**overrides: object) -> FileFacts:
    values: dict[str, object] = {
        "relative_path": "S01_wrist.bin",
        "subject": "S01",
        "fingerprint_seen_at": NOW - timedelta(hours=1),
        "subject_metadata": {"height_m": 1.7},
        "subject_file_count": 1,
    }
    values.update(overrides)
    return FileFacts(**values)  # type: ignore[arg-type]


def test_all_requirements_met_is_ready() -> None:
    decision = evaluate(RequirementsConfig(metadata=["height_m"]), facts(), NOW, PATTERN)
    assert decision.ready and decision.reason is None


def test_missing_metadata_field_waits_with_the_field_named() -> None:
    decision = evaluate(
        RequirementsConfig(metadata=["height_m"]), facts(subject_metadata={"height_m": None}), NOW, PATTERN
    )
    assert not decision.ready
    assert decision.reason == "metadata missing for subject 'S01': height_m"


def test_nan_and_blank_count_as_missing() -> None:
    for value in (float("nan"), "  "):
        decision = evaluate(
            RequirementsConfig(metadata=["height_m"]), facts(subject_metadata={"height_m": value}), NOW, PATTERN
        )
        assert not decision.ready


def test_no_metadata_row_waits() -> None:
    decision = evaluate(RequirementsConfig(metadata=["height_m"]), facts(subject_metadata=None), NOW, PATTERN)
    assert decision.reason == "no metadata row for subject 'S01'"


def test_metadata_not_required_ignores_missing_row() -> None:
    assert evaluate(RequirementsConfig(), facts(subject_metadata=None), NOW, PATTERN).ready


def test_too_few_files_waits() -> None:
    decision = evaluate(RequirementsConfig(min_files_per_subject=3), facts(subject_file_count=2), NOW, PATTERN)
    assert decision.reason == "subject 'S01' has 2 of 3 expected files"


def test_recently_changed_file_waits_until_stable() -> None:
    requirements = RequirementsConfig(stable_seconds=600)
    assert not evaluate(requirements, facts(fingerprint_seen_at=NOW - timedelta(seconds=10)), NOW, PATTERN).ready
    assert evaluate(requirements, facts(fingerprint_seen_at=NOW - timedelta(seconds=601)), NOW, PATTERN).ready


def test_every_unmet_requirement_is_reported() -> None:
    requirements = RequirementsConfig(metadata=["height_m", "tz_name"], min_files_per_subject=2)
    decision = evaluate(requirements, facts(subject_metadata={"height_m": 1.8}), NOW, PATTERN)
    assert decision.reason is not None
    assert "tz_name" in decision.reason and "1 of 2 expected files" in decision.reason


def test_file_without_subject_waits_and_names_the_pattern() -> None:
    decision = evaluate(RequirementsConfig(), facts(subject=None, relative_path="notes.bin"), NOW, PATTERN)
    assert not decision.ready
    assert "notes.bin" in (decision.reason or "") and PATTERN in (decision.reason or "")


def test_retry_backoff_doubles_and_stops() -> None:
    first = retry_at(1, NOW, retryable=True, max_attempts=4)
    second = retry_at(2, NOW, retryable=True, max_attempts=4)
    assert first is not None and second is not None
    assert (second - NOW) == 2 * (first - NOW)
    assert retry_at(4, NOW, retryable=True, max_attempts=4) is None
    assert retry_at(1, NOW, retryable=False, max_attempts=4) is None
    assert retry_at(20, NOW, retryable=True, max_attempts=50) == NOW + timedelta(hours=1)
