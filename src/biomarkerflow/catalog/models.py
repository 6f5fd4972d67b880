"""Catalog tables (SQLAlchemy 2). Only `biomarkerflow.catalog` reads or writes them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class FileState(enum.StrEnum):
    """A data file's life; see DESIGN.md. Stored as its value."""

    DISCOVERED = "DISCOVERED"
    WAITING = "WAITING"
    READY = "READY"
    CLAIMED = "CLAIMED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    EXCLUDED = "EXCLUDED"  # processed, but outside a quality gate: kept out of the study's tables
    FAILED = "FAILED"
    STALE = "STALE"
    REMOVED = "REMOVED"  # gone from the data location: out of the study's tables, its runs kept


class Base(DeclarativeBase):
    # Times are naive UTC everywhere: SQLite drops time zones on the way back.
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime()}


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    config_source: Mapped[str] = mapped_column(Text)
    config_sha256: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    output_location: Mapped[str] = mapped_column(Text)
    data_location: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    registered_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DataFile(Base):
    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("study_id", "url"),
        Index("ix_files_state", "state", "study_id", "id"),
        Index("ix_files_recheck", "study_id", "recheck_at"),
        Index("ix_files_subject", "study_id", "subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"))
    url: Mapped[str] = mapped_column(Text)
    relative_path: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float | None] = mapped_column(Float)
    fingerprint: Mapped[str] = mapped_column(Text)
    # When the current fingerprint was first seen: the clock for `stable_seconds`.
    fingerprint_seen_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=FileState.DISCOVERED.value)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    current_run_id: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    discovered_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # When a WAITING file must be checked again though nothing changed: its `stable_seconds`
    # wait ends (migration 0010). NULL: only a change (metadata, files, config) re-checks it.
    recheck_at: Mapped[datetime | None]


class StudyGate(Base):
    """What a study's last requirement check saw, so the next one re-checks only what changed
    (stages/gating.py; migration 0010)."""

    __tablename__ = "study_gates"

    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    # SHA-256 of the metadata files' bytes as last ingested (written with the rows they gave).
    metadata_sha256: Mapped[str | None] = mapped_column(String(64))
    # SHA-256 of what every file's check depends on: the config, columns absent from the metadata files.
    signature: Mapped[str | None] = mapped_column(String(64))
    # Subject -> what its files' checks depended on at the last check (requirements.subject_key).
    subjects: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    gated_at: Mapped[datetime | None]


class SubjectMetadata(Base):
    __tablename__ = "subject_metadata"

    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_file", "file_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(String(200))
    config_sha256: Mapped[str] = mapped_column(String(64))
    package_version: Mapped[str | None] = mapped_column(String(64))
    lock_hash: Mapped[str | None] = mapped_column(String(64))  # the runtime's package set
    input_fingerprint: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    bytes_read: Mapped[int | None] = mapped_column(BigInteger)
    bytes_written: Mapped[int | None] = mapped_column(BigInteger)
    # What the workflow type learned about the input (e.g. recording_seconds, sample_rate_hz):
    # its own JSON facts, since only the type knows which it has (migration 0006).
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # NULL, not JSON null
    result_location: Mapped[str | None] = mapped_column(Text)
    # The pipeline: what cost models learn per (workflow type + steps + pinned version; migration 0007).
    pipeline: Mapped[str | None] = mapped_column(String(200))
    # What the run cost, under which price table and capacity type, from which billed figures.
    cost: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(8))
    price_table: Mapped[str | None] = mapped_column(String(100))
    capacity: Mapped[str | None] = mapped_column(String(16))
    billed_seconds: Mapped[float | None] = mapped_column(Float)
    vcpus: Mapped[float | None] = mapped_column(Float)
    memory_gb: Mapped[float | None] = mapped_column(Float)
    # Why a failed run failed, beyond `error` (issue 14): the pipeline step that raised
    # and the formatted traceback; and for any run, SKDH's result-changing warnings in words.
    failed_step: Mapped[str | None] = mapped_column(String(200))
    traceback: Mapped[str | None] = mapped_column(Text)
    notices: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))  # NULL, not JSON null
    # The worker machine: cores, memory_bytes, cpu (migration 0011), a cost feature.
    machine: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


class ImportedRun(Base):
    """A past run from elsewhere (`models import-history`): history for the cost models."""

    __tablename__ = "imported_runs"
    __table_args__ = (Index("ix_imported_runs_pipeline", "pipeline", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime]
    input_bytes: Mapped[int] = mapped_column(BigInteger)
    output_bytes: Mapped[int] = mapped_column(BigInteger)
    wall_seconds: Mapped[float] = mapped_column(Float)
    cpu_seconds: Mapped[float] = mapped_column(Float)
    peak_rss_bytes: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[float | None] = mapped_column(Float)
    machine: Mapped[str | None] = mapped_column(String(200))
    recording_seconds: Mapped[float | None] = mapped_column(Float)
    # Optional cost features (migration 0011): the file, the machine, what the pipeline is.
    sample_rate_hz: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(50))
    machine_cores: Mapped[float | None] = mapped_column(Float)
    machine_memory_bytes: Mapped[float | None] = mapped_column(Float)
    machine_cpu: Mapped[str | None] = mapped_column(String(200))
    workflow_type: Mapped[str | None] = mapped_column(String(200))
    steps: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    package: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)  # file:line it came from
    imported_at: Mapped[datetime]


class CostModel(Base):
    """One trained cost model of a pipeline: its file, training window, held-out metrics, status."""

    __tablename__ = "cost_models"
    __table_args__ = (UniqueConstraint("pipeline", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # champion | rejected | retired
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    trained_from: Mapped[datetime]
    trained_to: Mapped[datetime]
    train_runs: Mapped[int] = mapped_column(Integer)
    test_runs: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)


class CostEstimate(Base):
    """An estimate as given, and once its run finished, what really happened."""

    __tablename__ = "cost_estimates"
    __table_args__ = (Index("ix_cost_estimates_run", "run_id"), Index("ix_cost_estimates_file", "file_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    pipeline: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[int | None] = mapped_column(Integer)
    file_id: Mapped[int | None] = mapped_column(Integer)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    predicted: Mapped[dict[str, Any]] = mapped_column(JSON)  # {quantity: [low, point, high]}
    run_id: Mapped[str | None] = mapped_column(String(64))
    actual: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class FileEvent(Base):
    """Every state change of a file, with why: the audit trail behind `status`."""

    __tablename__ = "file_events"
    __table_args__ = (Index("ix_events_file", "file_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    at: Mapped[datetime]
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)


class Worker(Base):
    """A live `process` or `watch` command: who holds claims, and whether it is still beating."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the lease owner name
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # process | watch
    executor: Mapped[str] = mapped_column(String(200))
    capacity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # running | stopping
    running_jobs: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class ApiToken(Base):
    """A bearer token of the REST API and dashboard: only its SHA-256 is kept (issue 16)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    scope: Mapped[str] = mapped_column(String(16))  # read | operate | admin
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell tokens apart
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Every request that changed something, through the API or the dashboard: who, what, when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))  # the token's name
    action: Mapped[str] = mapped_column(String(100))  # e.g. "POST /api/v1/studies/x/process"
    target: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))  # the HTTP status, as text
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


class WorkRequest(Base):
    """Work asked for over HTTP (scan, process, retrain), done by a running `watch` service."""

    __tablename__ = "work_requests"
    __table_args__ = (Index("ix_work_requests_state", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # scan | process | retrain
    study_id: Mapped[str | None] = mapped_column(String(200))
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))  # pending | running | done | failed
    taken_by: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    error: Mapped[str | None] = mapped_column(Text)
