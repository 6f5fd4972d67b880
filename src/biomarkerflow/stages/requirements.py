"""Whether a file may run yet: a pure decision from facts, tested without a database.

Besides the decision itself: what a subject's files' decisions depend on (`subject_key`),
so gating re-checks only the subjects whose key changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
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
    # When the decision may change with time alone (a `stable_seconds` wait ends); None: only a change.
    recheck_at: datetime | None = None


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
    recheck_at = None
    if age < requirements.stable_seconds:
        reasons.append(f"file changed {age:.0f} s ago; waits until unchanged for {requirements.stable_seconds:g} s")
        recheck_at = facts.fingerprint_seen_at + timedelta(seconds=requirements.stable_seconds)
    if reasons:
        return GateDecision(False, "; ".join(reasons), recheck_at)
    return GateDecision(True)


def subject_key(requirements: RequirementsConfig, subject_metadata: dict[str, Any] | None, file_count: int) -> str:
    """What the decisions on a subject's files depend on besides each file's own facts.

    Two checks with the same key (and the same config) decide the same: gating re-checks a
    subject's waiting files only when its key changed (e.g. its metadata row came, or a file).
    """
    parts: list[str] = []
    if requirements.metadata:
        if subject_metadata is None:
            parts.append("no row")
        else:
            missing = [f for f in requirements.metadata if is_missing(subject_metadata.get(f))]
            parts.append("missing " + ",".join(missing))
    if requirements.min_files_per_subject > 1:
        parts.append(f"files {min(file_count, requirements.min_files_per_subject)}")
    return "; ".join(parts)


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
    return replace(decision, ready=False, reason="; ".join([*reasons, *([decision.reason] if decision.reason else [])]))
