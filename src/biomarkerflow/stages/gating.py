"""Stage 2's first half: metadata in, and each file's requirements checked (the gate).

`refresh_gates` ingests a study's metadata and moves DISCOVERED/WAITING/STALE files to
READY or WAITING with the reason, re-checking only what changed since the study's last
check (its gate mark, catalog/gates.py); `plan` says what `process` would do, changing
nothing. The decisions themselves are pure (`requirements.evaluate`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pandas as pd

from biomarkerflow.catalog.browse import FileFilter
from biomarkerflow.catalog.gates import GateFile, GateMark, GateVerdict
from biomarkerflow.catalog.manager import Catalog, FileRecord, RegisterInfo, StudyRecord, utcnow
from biomarkerflow.catalog.models import FileState
from biomarkerflow.config import preflight
from biomarkerflow.config.schema import StudyConfig
from biomarkerflow.errors import StorageError
from biomarkerflow.stages import discovery, requirements, types
from biomarkerflow.storage import store

# Raise when the decisions or their words change: every waiting file is then checked again.
GATE_VERSION = 1


@dataclass
class GateInfo:
    study_id: str
    ready: int = 0  # files this check moved (or kept) READY
    waiting: int = 0  # the study's WAITING files after it
    checked: int = 0  # files it read: only those something changed for (all at the first check)
    metadata_subjects_changed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _clean(value: Any) -> Any:
    """CSV cell -> JSON value; missing cells become None."""
    if hasattr(value, "item"):  # numpy scalar -> Python
        value = value.item()
    return None if requirements.is_missing(value) else value


def read_metadata(location: str, subject_column: str) -> dict[str, dict[str, Any]]:
    """Subject -> fields from one metadata CSV; raises StorageError naming file and line."""
    return parse_metadata(location, store.read_bytes(location), subject_column)


def parse_metadata(location: str, raw: bytes, subject_column: str) -> dict[str, dict[str, Any]]:
    """Subject -> fields from the bytes of one metadata CSV; raises StorageError naming file and line."""
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


def _read_sources(study: StudyRecord) -> tuple[list[tuple[dict[str, Any], bytes]], list[str]]:
    """Each metadata source of a study with its bytes, and what could not be read."""
    found: list[tuple[dict[str, Any], bytes]] = []
    problems: list[str] = []
    for source in study.config.get("metadata", []):
        try:
            if not store.exists(source["location"]):
                problems.append(f"metadata file {source['location']} does not exist (yet)")
                continue
            found.append((source, store.read_bytes(source["location"])))
        except StorageError as exc:
            problems.append(exc.message)
    return found, problems


def _merged(sources: list[tuple[dict[str, Any], bytes]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    merged: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for source, raw in sources:
        try:
            for subject, fields in parse_metadata(source["location"], raw, source["subject_column"]).items():
                merged.setdefault(subject, {}).update(fields)
        except StorageError as exc:
            problems.append(exc.message)
    return merged, problems


def read_study_metadata(study: StudyRecord) -> tuple[dict[str, dict[str, Any]] | None, list[str]]:
    """Every metadata source of a study, merged per subject; None when any source failed."""
    sources, problems = _read_sources(study)
    if not study.config.get("metadata") or problems:
        # All or nothing: a partial read would replace good fields with fewer.
        return None, problems
    merged, problems = _merged(sources)
    return (None if problems else merged), problems


def _sources_sha256(sources: list[tuple[dict[str, Any], bytes]]) -> str:
    digest = hashlib.sha256()
    for source, raw in sources:
        digest.update(json.dumps(source, sort_keys=True).encode() + b"\0" + hashlib.sha256(raw).digest())
    return digest.hexdigest()


def ingest_metadata(
    catalog: Catalog, study: StudyRecord, known_sha256: str | None = None
) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
    """Load every metadata source of a study into the catalog: (changed subject -> fields
    before, problems). Files whose bytes hash to `known_sha256` (as last ingested) are not parsed."""
    sources, problems = _read_sources(study)
    if not study.config.get("metadata") or problems:
        return {}, problems
    sha256 = _sources_sha256(sources)
    if sha256 == known_sha256:
        return {}, []
    merged, problems = _merged(sources)
    if problems:
        return {}, problems
    names = ", ".join(s["location"] for s in study.config.get("metadata", []))
    return catalog.ingest_metadata(study.id, merged, names, sha256), problems


def subject_inputs(config: StudyConfig, fields: dict[str, Any] | None) -> dict[str, Any]:
    """A subject's metadata as its jobs' inputs, as the study's workflow type maps them."""
    return types.workflow_type(config).subject_inputs(config, fields)


def refresh_gates(catalog: Catalog, study: StudyRecord, now: datetime | None = None) -> GateInfo:
    """Ingest metadata and move DISCOVERED/WAITING/STALE files to READY or WAITING (with why).

    Incremental: every DISCOVERED and STALE file is checked, but a WAITING file only when
    what its check depends on changed since the study's last check (its subject's metadata
    or file count, the config, the metadata files' columns) or its `stable_seconds` wait
    ends. A round with nothing new reads a few rows and writes nothing.
    """
    info = GateInfo(study_id=study.id)
    mark = catalog.gate_mark(study.id)
    changed, info.problems = ingest_metadata(catalog, study, mark.metadata_sha256)
    info.metadata_subjects_changed = list(changed)
    config = StudyConfig.model_validate(study.config)
    metadata = catalog.metadata(study.id)
    # A corrected value that reaches the jobs (e.g. a height) makes finished results stale;
    # other columns (used only by requirements) do not.
    corrected = [
        s for s, before in changed.items() if subject_inputs(config, before) != subject_inputs(config, metadata.get(s))
    ]
    if corrected:
        catalog.mark_stale(study.id, "subject metadata the jobs use changed", subjects=corrected)
    config, absent = _without_absent_columns(study, config)
    now = now or utcnow()
    signature = _signature(study, absent)
    check = _Check(catalog, study.id, config, metadata, mark, signature, now)
    if check.files and config.requirements.stable_seconds > 0:
        # "Unchanged for T seconds" must be judged on the file as it is now, not as the
        # last scan saw it: re-list the data location (a changed file starts over).
        listed, _ = discovery.register_study_files(catalog, study.id, study.config)
        if replace(listed, unchanged=0) != RegisterInfo():
            check = _Check(catalog, study.id, config, metadata, mark, signature, now)
    verdicts = []
    for file in check.files:
        decision = requirements.with_reasons(_decide(config, file, metadata, check.counts, now), absent)
        verdicts.append(GateVerdict(file.id, file.state, decision.ready, decision.reason, decision.recheck_at))
        info.ready += decision.ready
    info.checked = len(check.files)
    catalog.record_gates(verdicts, {f.id: f for f in check.files})
    if mark.signature != signature or mark.subjects != check.keys:
        catalog.save_gate_mark(study.id, signature, check.keys)
    info.waiting = catalog.count_files(FileFilter(study.id, (FileState.WAITING.value,)))
    return info


class _Check:
    """What one gating round must look at: each subject's key, and the files to check."""

    def __init__(
        self,
        catalog: Catalog,
        study_id: str,
        config: StudyConfig,
        metadata: dict[str, dict[str, Any]],
        mark: GateMark,
        signature: str,
        now: datetime,
    ) -> None:
        self.counts = catalog.subject_file_counts(study_id)
        rules = config.requirements
        self.keys = {s: requirements.subject_key(rules, metadata.get(s), n) for s, n in self.counts.items()}
        # Never checked, or a new config or metadata columns: every waiting file again.
        everything = mark.subjects is None or mark.signature != signature
        seen = mark.subjects or {}
        changed = [] if everything else [s for s in self.keys.keys() | seen.keys() if self.keys.get(s) != seen.get(s)]
        self.files = catalog.gate_files(study_id, subjects=changed, every_waiting=everything, now=now)


def _signature(study: StudyRecord, absent: list[str]) -> str:
    """What every file's check depends on: the gate's own version, the study config, absent columns."""
    relevant = {"gate": GATE_VERSION, "config": study.config, "absent": absent}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def _decide(
    config: StudyConfig,
    file: FileRecord | GateFile,
    metadata: dict[str, dict[str, Any]],
    counts: dict[str, int],
    now: datetime,
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
        files = catalog.gate_files(study.id, every_waiting=True, also=[FileState.READY.value])
        for file in sorted(files, key=lambda f: f.relative_path):
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
