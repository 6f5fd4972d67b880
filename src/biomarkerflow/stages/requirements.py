"""Whether a file may run yet: a pure decision from facts, tested without a database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from biomarkerflow.config.schema import RequirementsConfig


@dataclass(frozen=True)
class FileFacts:
    """What the gate needs to know about one file and its subject."""

    relative_path: str
    subject: str | None
    fingerprint_seen_at: datetime
    subject_metadata: dict[str, Any] | None
    subject_file_count: int


@dataclass(frozen=True)
class GateDecision:
    ready: bool
    reason: str | None = None  # why it waits; None when ready


def is_missing(value: Any) -> bool:
    """None, NaN (an empty CSV cell) or blank text."""
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN from an empty CSV cell
        return True
    return isinstance(value, str) and not value.strip()


def evaluate(requirements: RequirementsConfig, facts: FileFacts, now: datetime, subject_pattern: str) -> GateDecision:
    """Ready, or waiting with every unmet requirement named (so one fix is not followed by another surprise)."""
    if facts.subject is None:
        return GateDecision(
            False, f"no subject id in file name '{facts.relative_path}' (data.subject pattern {subject_pattern!r})"
        )
    reasons: list[str] = []
    if requirements.metadata:
        if facts.subject_metadata is None:
            reasons.append(f"no metadata row for subject '{facts.subject}'")
        else:
            missing = [f for f in requirements.metadata if is_missing(facts.subject_metadata.get(f))]
            if missing:
                reasons.append(f"metadata missing for subject '{facts.subject}': {', '.join(missing)}")
    if facts.subject_file_count < requirements.min_files_per_subject:
        reasons.append(
            f"subject '{facts.subject}' has {facts.subject_file_count} of "
            f"{requirements.min_files_per_subject} expected files"
        )
    age = (now - facts.fingerprint_seen_at).total_seconds()
    if age < requirements.stable_seconds:
        reasons.append(f"file changed {age:.0f} s ago; waits until unchanged for {requirements.stable_seconds:g} s")
    if reasons:
        return GateDecision(False, "; ".join(reasons))
    return GateDecision(True)


def absent_columns(required: Sequence[str], columns_by_file: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Required columns that no metadata file has at all -> why every file waits for them.

    `columns_by_file` maps each metadata file to the columns of its header. Such a column
    is a mistake of the study, not of one subject: saying "metadata missing for subject
    S01" would send the user looking at the wrong row.
    """
    if not columns_by_file:
        return {}
    present = {column for columns in columns_by_file.values() for column in columns}
    files = " or ".join(PurePosixPath(location).name for location in columns_by_file)
    return {
        column: f"column {column} is not in {files}; add it there, or change requirements.metadata in the study config"
        for column in required
        if column not in present
    }


def with_reasons(decision: GateDecision, reasons: Sequence[str]) -> GateDecision:
    """The decision with reasons found outside `evaluate` first (e.g. `absent_columns`)."""
    if not reasons:
        return decision
    return GateDecision(False, "; ".join([*reasons, *([decision.reason] if decision.reason else [])]))
