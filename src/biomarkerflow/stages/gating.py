"""Stage 2's first half: metadata in, and each file's requirements checked (the gate).

`refresh_gates` ingests a study's metadata and moves each DISCOVERED/WAITING/STALE file
to READY or WAITING with the reason; `plan` says what `process` would do, changing
nothing. The decisions themselves are pure (`requirements.evaluate`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from biomarkerflow.catalog.manager import Catalog, FileRecord, StudyRecord, utcnow
from biomarkerflow.catalog.models import FileState
from biomarkerflow.config import preflight
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.errors import StorageError
from biomarkerflow.stages import discovery, requirements, types
from biomarkerflow.storage import store


@dataclass
class GateInfo:
    study_id: str
    ready: int = 0
    waiting: int = 0
    metadata_subjects_changed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _clean(value: Any) -> Any:
    """CSV cell -> JSON value; missing cells become None."""
    if hasattr(value, "item"):  # numpy scalar -> Python
        value = value.item()
    return None if requirements.is_missing(value) else value


def read_metadata(location: str, subject_column: str) -> dict[str, dict[str, Any]]:
    """Subject -> fields from one metadata CSV; raises StorageError naming file and line."""
    raw = store.read_bytes(location)
    try:
        frame = pd.read_csv(io.BytesIO(raw), dtype={subject_column: str})
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise StorageError(f"cannot read metadata CSV {location}: {exc}") from exc
    if subject_column not in frame.columns:
        raise StorageError(
            f"metadata CSV {location} has no column '{subject_column}' (columns: {', '.join(map(str, frame.columns))})",
            hint="Add the column, or set metadata[].subject_column in the study config.",
        )
    rows: dict[str, dict[str, Any]] = {}
    for line, record in enumerate(frame.to_dict(orient="records"), start=2):
        subject = _clean(record.pop(subject_column))
        if subject is None:
            raise StorageError(f"{location}:{line}: empty subject id in column '{subject_column}'")
        subject = str(subject)
        if subject in rows:
            raise StorageError(f"{location}:{line}: subject '{subject}' appears twice")
        rows[subject] = {str(k): _clean(v) for k, v in record.items()}
    return rows


def read_study_metadata(study: StudyRecord) -> tuple[dict[str, dict[str, Any]] | None, list[str]]:
    """Every metadata source of a study, merged per subject; None when any source failed."""
    merged: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    sources = study.config.get("metadata", [])
    for source in sources:
        try:
            if not store.exists(source["location"]):
                problems.append(f"metadata file {source['location']} does not exist (yet)")
                continue
            for subject, fields in read_metadata(source["location"], source["subject_column"]).items():
                merged.setdefault(subject, {}).update(fields)
        except StorageError as exc:
            problems.append(exc.message)
    if not sources or problems:
        # All or nothing: a partial read would replace good fields with fewer.
        return None, problems
    return merged, problems


def ingest_metadata(catalog: Catalog, study: StudyRecord) -> tuple[list[str], list[str]]:
    """Load every metadata source of a study into the catalog; (changed subjects, problems)."""
    merged, problems = read_study_metadata(study)
    if merged is None:
        return [], problems
    sources = ", ".join(s["location"] for s in study.config.get("metadata", []))
    return catalog.upsert_metadata(study.id, merged, source=sources), problems


def subject_inputs(config: StudyConfig, fields: dict[str, Any] | None) -> dict[str, Any]:
    """A subject's metadata as its jobs' inputs, as the study's workflow type maps them."""
    return types.workflow_type(config).subject_inputs(config, fields)


def refresh_gates(catalog: Catalog, study: StudyRecord, now: datetime | None = None) -> GateInfo:
    """Ingest metadata and move each DISCOVERED/WAITING/STALE file to READY or WAITING (with why)."""
    info = GateInfo(study_id=study.id)
    before = catalog.metadata(study.id)
    info.metadata_subjects_changed, info.problems = ingest_metadata(catalog, study)
    config = StudyConfig.model_validate(study.config)
    metadata = catalog.metadata(study.id)
    # A corrected value that reaches the jobs (e.g. a height) makes finished results stale;
    # other columns (used only by requirements) do not.
    corrected = [
        subject
        for subject in info.metadata_subjects_changed
        if subject_inputs(config, before.get(subject)) != subject_inputs(config, metadata.get(subject))
    ]
    if corrected:
        catalog.mark_stale(study.id, "subject metadata the jobs use changed", subjects=corrected)
    config, absent = _without_absent_columns(study, config)
    if config.requirements.stable_seconds > 0:
        # "Unchanged for T seconds" must be judged on the file as it is now, not as the
        # last scan saw it: re-list the data location (a changed file starts over).
        discovery.register_study_files(catalog, study.id, study.config)
    counts = catalog.subject_file_counts(study.id)
    now = now or utcnow()
    to_check = [FileState.DISCOVERED.value, FileState.WAITING.value, FileState.STALE.value]
    for file in catalog.files(study.id, to_check):
        decision = requirements.with_reasons(_decide(config, file, metadata, counts, now), absent)
        catalog.set_gate(file.id, file.state, decision.ready, decision.reason)
        if decision.ready:
            info.ready += 1
        else:
            info.waiting += 1
    return info


def _decide(
    config: StudyConfig, file: FileRecord, metadata: dict[str, dict[str, Any]], counts: dict[str, int], now: datetime
) -> requirements.GateDecision:
    facts = requirements.FileFacts(
        relative_path=file.relative_path,
        subject=file.subject,
        fingerprint_seen_at=file.fingerprint_seen_at,
        subject_metadata=metadata.get(file.subject) if file.subject else None,
        subject_file_count=counts.get(file.subject, 0) if file.subject else 0,
    )
    return requirements.evaluate(config.requirements, facts, now, config.data.subject)


@dataclass(frozen=True)
class PlannedFile:
    study_id: str
    relative_path: str
    will_run: bool
    why: str


def _without_absent_columns(study: StudyRecord, config: StudyConfig) -> tuple[StudyConfig, list[str]]:
    """(the config without required columns no metadata file has, why files wait for them).

    Such a column is the study's mistake, not each subject's: files wait naming the
    column and the file, and the per-subject check skips it.
    """
    if not config.requirements.metadata:
        return config, []
    columns = preflight.metadata_columns([source["location"] for source in study.config.get("metadata", [])])
    absent = requirements.absent_columns(config.requirements.metadata, columns or {})
    if not absent:
        return config, []
    still = [column for column in config.requirements.metadata if column not in absent]
    kept = config.model_copy(update={"requirements": config.requirements.model_copy(update={"metadata": still})})
    return kept, list(absent.values())


def plan(catalog: Catalog, study_ids: list[str] | None = None) -> list[PlannedFile]:
    """What `process` would do now, and why, without changing anything (`process --dry-run`).

    Metadata is read from the CSV files as they are now; a STALE file names the change
    that made it stale.
    """
    planned: list[PlannedFile] = []
    now = utcnow()
    for study in catalog.studies():
        if study_ids is not None and study.id not in study_ids:
            continue
        config, absent = _without_absent_columns(study, StudyConfig.model_validate(study.config))
        merged, _ = read_study_metadata(study)
        metadata = merged if merged is not None else catalog.metadata(study.id)
        counts = catalog.subject_file_counts(study.id)
        states = [FileState.DISCOVERED.value, FileState.WAITING.value, FileState.STALE.value, FileState.READY.value]
        for file in catalog.files(study.id, states):
            decision = requirements.with_reasons(_decide(config, file, metadata, counts, now), absent)
            if not decision.ready:
                planned.append(PlannedFile(study.id, file.relative_path, False, decision.reason or ""))
                continue
            why = {
                FileState.DISCOVERED.value: f"new or changed file ({file.reason})",
                FileState.WAITING.value: "its requirements are now met",
                FileState.STALE.value: f"results are STALE: {file.reason}",
            }.get(file.state, file.reason or "ready")
            planned.append(PlannedFile(study.id, file.relative_path, True, why))
    return planned
