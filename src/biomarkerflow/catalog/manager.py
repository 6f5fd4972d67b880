"""The catalog: the only code that changes study, file and run state.

Every state change of a file is one compare-and-set UPDATE (`... WHERE state = :expected`),
so two schedulers or workers can never both move the same file, whatever database
is underneath. Values handed out are frozen records, never live ORM objects.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, delete, event, func, make_url, select, text, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from biomarkerflow.catalog import schema
from biomarkerflow.catalog.models import (
    CostEstimate,
    CostModel,
    DataFile,
    FileEvent,
    FileState,
    ImportedRun,
    Run,
    Study,
    SubjectMetadata,
    Worker,
)
from biomarkerflow.cost.history import Observation
from biomarkerflow.cost.reports import CostRow
from biomarkerflow.errors import CatalogError
from biomarkerflow.metrics import Charge, RunMetrics

T = TypeVar("T")
C = TypeVar("C")

ACTIVE_STATES = (FileState.CLAIMED.value, FileState.RUNNING.value)
_CLAIM_LOCK_ID = zlib.crc32(b"biomarkerflow.catalog.claim")
CLAIM_ROUNDS = 5


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class StudyRecord:
    id: str
    config_source: str
    config_sha256: str
    config: dict[str, Any]
    output_location: str
    data_location: str
    priority: int


@dataclass(frozen=True)
class FileRecord:
    id: int
    study_id: str
    url: str
    relative_path: str
    subject: str | None
    size: int
    fingerprint: str
    fingerprint_seen_at: datetime
    state: str
    reason: str | None
    attempts: int
    current_run_id: str | None
    last_error: str | None


@dataclass(frozen=True)
class RegisterInfo:
    new: int = 0
    changed: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class RunRecord:
    id: str
    file_id: int
    study_id: str
    attempt: int
    outcome: str
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    wall_seconds: float | None
    cpu_seconds: float | None
    peak_rss_bytes: int | None
    bytes_read: int | None
    bytes_written: int | None
    result_location: str | None
    package_version: str | None
    config_sha256: str
    lock_hash: str | None = None
    host: str | None = None
    worker: str | None = None
    workflow: str | None = None
    recording_seconds: float | None = None
    sample_rate_hz: float | None = None
    cost: float | None = None
    currency: str | None = None
    price_table: str | None = None
    capacity: str | None = None
    billed_seconds: float | None = None
    vcpus: float | None = None
    memory_gb: float | None = None
    failed_step: str | None = None
    traceback: str | None = None
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class CostModelRecord:
    id: int
    workflow: str
    version: int
    status: str  # champion | retired | rejected
    path: str
    created_at: datetime
    trained_from: datetime
    trained_to: datetime
    train_runs: int
    test_runs: int
    metrics: dict[str, Any]
    note: str | None


@dataclass(frozen=True)
class EstimateRecord:
    id: int
    at: datetime
    workflow: str
    model_id: int | None
    file_id: int | None
    inputs: dict[str, Any]
    predicted: dict[str, Any]
    run_id: str | None
    actual: dict[str, Any] | None


@dataclass(frozen=True)
class WorkerRecord:
    id: str
    host: str
    pid: int
    kind: str
    executor: str
    capacity: int
    state: str
    running_jobs: int
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class FailureDetail:
    """Why a FAILED file's last run failed, beyond its one-line error."""

    step: str | None  # the pipeline step that raised (the reader counts as one); None: not a step
    traceback: str | None  # the formatted traceback; None when no exception was caught (lost worker)
    run_id: str | None  # the run it comes from; None when the file has no run


@dataclass(frozen=True)
class StudyStatus:
    study_id: str
    counts: dict[str, int]
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, error)
    # relative path -> step, traceback and run id of its last run, for every FAILED file
    failure_details: dict[str, FailureDetail] = field(default_factory=dict)
    # (relative path, notice) for every SUCCEEDED file whose current run has notices
    notices: list[tuple[str, str]] = field(default_factory=list)


def _file_record(row: DataFile) -> FileRecord:
    return FileRecord(
        id=row.id,
        study_id=row.study_id,
        url=row.url,
        relative_path=row.relative_path,
        subject=row.subject,
        size=row.size,
        fingerprint=row.fingerprint,
        fingerprint_seen_at=row.fingerprint_seen_at,
        state=row.state,
        reason=row.reason,
        attempts=row.attempts,
        current_run_id=row.current_run_id,
        last_error=row.last_error,
    )


def _study_record(row: Study) -> StudyRecord:
    return StudyRecord(
        id=row.id,
        config_source=row.config_source,
        config_sha256=row.config_sha256,
        config=dict(row.config),
        output_location=row.output_location,
        data_location=row.data_location,
        priority=row.priority,
    )


def _observation(run: Run, size: int, relative_path: str) -> Observation:
    suffix = PurePosixPath(relative_path).suffix.lower().lstrip(".")
    return Observation(
        workflow=run.workflow or "",
        started_at=run.started_at,
        input_bytes=size,
        output_bytes=run.bytes_written or 0,
        wall_seconds=run.wall_seconds or 0.0,
        cpu_seconds=run.cpu_seconds or 0.0,
        peak_rss_bytes=run.peak_rss_bytes or 0,
        recording_seconds=run.recording_seconds,
        sample_rate_hz=run.sample_rate_hz,
        device=suffix or None,
        cost=run.cost,
        machine=run.host,
    )


def _imported_observation(row: ImportedRun) -> Observation:
    return Observation(
        workflow=row.workflow,
        started_at=row.started_at,
        input_bytes=row.input_bytes,
        output_bytes=row.output_bytes,
        wall_seconds=row.wall_seconds,
        cpu_seconds=row.cpu_seconds,
        peak_rss_bytes=row.peak_rss_bytes,
        recording_seconds=row.recording_seconds,
        cost=row.cost,
        machine=row.machine,
    )


def _cost_model_record(row: CostModel) -> CostModelRecord:
    return CostModelRecord(
        id=row.id,
        workflow=row.workflow,
        version=row.version,
        status=row.status,
        path=row.path,
        created_at=row.created_at,
        trained_from=row.trained_from,
        trained_to=row.trained_to,
        train_runs=row.train_runs,
        test_runs=row.test_runs,
        metrics=row.metrics,
        note=row.note,
    )


def _estimate_record(row: CostEstimate) -> EstimateRecord:
    return EstimateRecord(
        id=row.id,
        at=row.at,
        workflow=row.workflow,
        model_id=row.model_id,
        file_id=row.file_id,
        inputs=row.inputs,
        predicted=row.predicted,
        run_id=row.run_id,
        actual=row.actual,
    )


def _pair_with_estimate(session: Session, run: Run) -> None:
    """A succeeded run answers the newest open estimate of its file: keep the pair."""
    estimate = session.scalars(
        select(CostEstimate)
        .where(CostEstimate.file_id == run.file_id, CostEstimate.run_id.is_(None))
        .order_by(CostEstimate.id.desc())
    ).first()
    if estimate is None:
        return
    estimate.run_id = run.id
    estimate.actual = {
        "wall_seconds": run.wall_seconds,
        "cpu_seconds": run.cpu_seconds,
        "peak_rss_bytes": run.peak_rss_bytes,
        "cost": run.cost,
        "price_table": run.price_table,
    }


def _record_charge(run: Run, charge: Charge) -> None:
    run.cost = charge.amount
    run.currency = charge.currency
    run.price_table = charge.table
    run.capacity = charge.capacity
    run.billed_seconds = charge.billed_seconds
    run.vcpus = charge.vcpus
    run.memory_gb = charge.memory_gb


def _run_record(row: Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        file_id=row.file_id,
        study_id=row.study_id,
        attempt=row.attempt,
        outcome=row.outcome,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        wall_seconds=row.wall_seconds,
        cpu_seconds=row.cpu_seconds,
        peak_rss_bytes=row.peak_rss_bytes,
        bytes_read=row.bytes_read,
        bytes_written=row.bytes_written,
        result_location=row.result_location,
        package_version=row.package_version,
        lock_hash=row.lock_hash,
        host=row.host,
        worker=row.worker,
        config_sha256=row.config_sha256,
        workflow=row.workflow,
        recording_seconds=row.recording_seconds,
        sample_rate_hz=row.sample_rate_hz,
        cost=row.cost,
        currency=row.currency,
        price_table=row.price_table,
        capacity=row.capacity,
        billed_seconds=row.billed_seconds,
        vcpus=row.vcpus,
        memory_gb=row.memory_gb,
        failed_step=row.failed_step,
        traceback=row.traceback,
        notices=tuple(row.notices or ()),
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (status, query) work while a process run writes;
    # busy_timeout makes concurrent writers wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class _ConnectionLost(Exception):
    """The database connection broke during a transaction (which was therefore not committed)."""


def _connection_lost(exc: SQLAlchemyError) -> bool:
    return isinstance(exc, OperationalError | InterfaceError) or bool(getattr(exc, "connection_invalidated", False))


# Waits between attempts when the catalog's connection is lost: about a minute in all.
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


def _reconnecting(method: Callable[..., T]) -> Callable[..., T]:
    """Re-run a catalog method whose transaction broke on a lost connection.

    Each public method is one transaction, so one that did not commit can run again; a
    database that stays away past RECONNECT_DELAYS is a CatalogError like any other.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        for delay in RECONNECT_DELAYS:
            try:
                return method(*args, **kwargs)
            except _ConnectionLost:
                time.sleep(delay)
        try:
            return method(*args, **kwargs)
        except _ConnectionLost as exc:
            raise CatalogError(
                f"lost the connection to the catalog and could not reconnect: {exc}",
                hint="Check the database server is up and reachable; nothing was lost, run the command again.",
            ) from exc

    return wrapper


def _reconnect_on_lost_connections(cls: type[C]) -> type[C]:
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member) and name != "close":
            setattr(cls, name, _reconnecting(member))
    return cls


def sqlalchemy_url(url: str) -> str:
    """postgresql://... means the psycopg (v3) driver, the one biomarkerflow installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@_reconnect_on_lost_connections
class Catalog:
    """Open with `Catalog(url)` or `Catalog.for_home(path)`; the schema is created if missing."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._engine: Engine = create_engine(sqlalchemy_url(url), future=True, pool_pre_ping=True)
            if url.startswith("sqlite"):
                event.listen(self._engine, "connect", _sqlite_pragmas)
            schema.upgrade(self._engine)
        except SQLAlchemyError as exc:
            shown = make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
            hint = (
                "Check --home / BIOMARKERFLOW_HOME points at a writable folder."
                if url.startswith("sqlite")
                else "Check the server is running and the URL is right, e.g. postgresql://user@host:5432/database."
            )
            raise CatalogError(f"cannot open the catalog at {shown}: {exc}", hint=hint) from exc
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @classmethod
    def for_home(cls, home: Path) -> Catalog:
        home.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{home.resolve() / 'catalog.db'}")

    def close(self) -> None:
        self._engine.dispose()

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            with contextlib.suppress(SQLAlchemyError):
                session.rollback()
            if _connection_lost(exc):
                raise _ConnectionLost(str(exc)) from exc
            raise CatalogError(f"catalog operation failed: {exc}") from exc
        except BaseException:
            with contextlib.suppress(SQLAlchemyError):
                session.rollback()
            raise
        finally:
            session.close()

    @staticmethod
    def _log(session: Session, file_id: int, from_state: str | None, to_state: str, reason: str | None) -> None:
        session.add(FileEvent(file_id=file_id, at=utcnow(), from_state=from_state, to_state=to_state, reason=reason))

    def _cas(
        self,
        session: Session,
        file_id: int,
        expected: Iterable[str],
        to_state: str,
        reason: str | None,
        **values: Any,
    ) -> bool:
        """Move one file from one of `expected` states to `to_state`; False if someone else moved it first."""
        expected = list(expected)
        current = session.scalar(select(DataFile.state).where(DataFile.id == file_id))
        if current not in expected:
            return False
        result = session.execute(
            update(DataFile)
            .where(DataFile.id == file_id, DataFile.state == current)
            .values(state=to_state, reason=reason, updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self._log(session, file_id, current, to_state, reason)
        return True

    # ---- studies -------------------------------------------------------------------------

    def get_study(self, study_id: str) -> StudyRecord | None:
        with self._session() as session:
            row = session.get(Study, study_id)
            return _study_record(row) if row else None

    def studies(self) -> list[StudyRecord]:
        with self._session() as session:
            rows = session.scalars(select(Study).order_by(Study.priority.desc(), Study.id))
            return [_study_record(r) for r in rows]

    def upsert_study(
        self,
        study_id: str,
        *,
        config_source: str,
        config_sha256: str,
        config: dict[str, Any],
        output_location: str,
        data_location: str,
        priority: int,
    ) -> str:
        """Register or update a study; returns 'new', 'changed' or 'unchanged'."""
        now = utcnow()
        with self._session() as session:
            row = session.get(Study, study_id)
            if row is None:
                session.add(
                    Study(
                        id=study_id,
                        config_source=config_source,
                        config_sha256=config_sha256,
                        config=config,
                        output_location=output_location,
                        data_location=data_location,
                        priority=priority,
                        registered_at=now,
                        updated_at=now,
                    )
                )
                return "new"
            if row.config_sha256 == config_sha256 and row.config_source == config_source:
                return "unchanged"
            if row.config_source != config_source:
                raise CatalogError(
                    f"study id '{study_id}' in {config_source} is already used by {row.config_source}",
                    hint="Each study needs its own id: change `study:` in one of the two configs.",
                )
            row.config_sha256 = config_sha256
            row.config = config
            row.output_location = output_location
            row.data_location = data_location
            row.priority = priority
            row.updated_at = now
            return "changed"

    def mark_stale(self, study_id: str, reason: str, subjects: Iterable[str] | None = None) -> int:
        """Finished files whose results no longer match the study's pipeline: SUCCEEDED/FAILED -> STALE.

        Their earlier results stay on disk, addressable by run id; the next process run
        recomputes them (attempts start again from zero).
        """
        finished = [FileState.SUCCEEDED.value, FileState.FAILED.value]
        count = 0
        with self._session() as session:
            query = select(DataFile.id).where(DataFile.study_id == study_id, DataFile.state.in_(finished))
            if subjects is not None:
                query = query.where(DataFile.subject.in_(list(subjects)))
            ids = session.scalars(query).all()
            for file_id in ids:
                count += self._cas(session, file_id, finished, FileState.STALE.value, reason, attempts=0)
        return count

    def known_config_sha(self, config_source: str) -> str | None:
        with self._session() as session:
            return session.scalar(select(Study.config_sha256).where(Study.config_source == config_source))

    # ---- files ---------------------------------------------------------------------------

    def register_files(
        self, study_id: str, entries: Iterable[tuple[str, str, str | None, int, float | None, str]]
    ) -> RegisterInfo:
        """Add new files as DISCOVERED; a file whose fingerprint changed starts over.

        Each entry is (url, relative_path, subject, size, mtime, fingerprint).
        """
        now = utcnow()
        new = changed = unchanged = 0
        added: list[DataFile] = []
        with self._session() as session:
            known = {row.url: row for row in session.scalars(select(DataFile).where(DataFile.study_id == study_id))}
            for url, relative_path, subject, size, mtime, fingerprint in entries:
                row = known.get(url)
                if row is None:
                    file = DataFile(
                        study_id=study_id,
                        url=url,
                        relative_path=relative_path,
                        subject=subject,
                        size=size,
                        mtime=mtime,
                        fingerprint=fingerprint,
                        fingerprint_seen_at=now,
                        state=FileState.DISCOVERED.value,
                        reason="new file",
                        attempts=0,
                        discovered_at=now,
                        updated_at=now,
                    )
                    added.append(file)
                    new += 1
                elif row.fingerprint != fingerprint:
                    row.size, row.mtime, row.fingerprint, row.fingerprint_seen_at = size, mtime, fingerprint, now
                    row.subject = subject
                    # A running job notices the new fingerprint when it finishes (see finish_run).
                    if row.state not in ACTIVE_STATES:
                        self._cas(
                            session, row.id, [row.state], FileState.DISCOVERED.value, "file content changed", attempts=0
                        )
                    changed += 1
                else:
                    if row.subject != subject:
                        row.subject = subject
                    unchanged += 1
            # One batched INSERT for all new files (a first scan of 100k objects), then their events.
            session.add_all(added)
            session.flush()
            for file in added:
                self._log(session, file.id, None, FileState.DISCOVERED.value, "new file")
        return RegisterInfo(new=new, changed=changed, unchanged=unchanged)

    def files(self, study_id: str | None = None, states: Iterable[str] | None = None) -> list[FileRecord]:
        with self._session() as session:
            query = select(DataFile).order_by(DataFile.study_id, DataFile.relative_path)
            if study_id is not None:
                query = query.where(DataFile.study_id == study_id)
            if states is not None:
                query = query.where(DataFile.state.in_(list(states)))
            return [_file_record(r) for r in session.scalars(query)]

    def next_retry_at(self, study_ids: list[str]) -> datetime | None:
        """The earliest time a READY file held back by a retry backoff may run."""
        with self._session() as session:
            return session.scalar(
                select(func.min(DataFile.not_before)).where(
                    DataFile.state == FileState.READY.value,
                    DataFile.not_before > utcnow(),
                    DataFile.study_id.in_(study_ids),
                )
            )

    def subject_file_counts(self, study_id: str) -> dict[str, int]:
        with self._session() as session:
            rows = session.execute(
                select(DataFile.subject, func.count())
                .where(DataFile.study_id == study_id, DataFile.subject.is_not(None))
                .group_by(DataFile.subject)
            )
            return {str(subject): int(count) for subject, count in rows}

    def set_gate(self, file_id: int, expected_state: str, ready: bool, reason: str | None) -> bool:
        """Record a requirement check: READY, or WAITING with why. No-op when nothing changed."""
        to_state = FileState.READY.value if ready else FileState.WAITING.value
        with self._session() as session:
            row = session.get(DataFile, file_id)
            if row is None or row.state != expected_state:
                return False
            if row.state == to_state and row.reason == reason:
                return False
            if row.state == to_state:  # same state, new reason: update without a CAS race on state
                row.reason = reason
                row.updated_at = utcnow()
                self._log(session, file_id, row.state, to_state, reason)
                return True
            return self._cas(session, file_id, [expected_state], to_state, reason)

    # ---- metadata ------------------------------------------------------------------------

    def upsert_metadata(self, study_id: str, rows: dict[str, dict[str, Any]], source: str) -> list[str]:
        """Store subject metadata; returns the subjects whose fields changed."""
        changed: list[str] = []
        now = utcnow()
        with self._session() as session:
            known = {
                r.subject: r
                for r in session.scalars(select(SubjectMetadata).where(SubjectMetadata.study_id == study_id))
            }
            for subject, fields in rows.items():
                row = known.get(subject)
                if row is None:
                    session.add(
                        SubjectMetadata(
                            study_id=study_id, subject=subject, fields=fields, source=source, updated_at=now
                        )
                    )
                    changed.append(subject)
                elif row.fields != fields:
                    row.fields, row.source, row.updated_at = fields, source, now
                    changed.append(subject)
        return changed

    def metadata(self, study_id: str) -> dict[str, dict[str, Any]]:
        with self._session() as session:
            rows = session.scalars(select(SubjectMetadata).where(SubjectMetadata.study_id == study_id))
            return {r.subject: dict(r.fields) for r in rows}

    # ---- claims and runs -----------------------------------------------------------------

    def claim(
        self,
        worker: str,
        limit: int,
        lease_seconds: float,
        study_ids: list[str] | None = None,
        group_limits: dict[str, tuple[str, int]] | None = None,
    ) -> list[FileRecord]:
        """Take up to `limit` READY files for `worker`, highest study priority first.

        `group_limits` maps a study to its run group and the most jobs that group may
        have claimed or running at once, counted over every worker sharing the catalog.
        """
        now = utcnow()
        claimed: list[FileRecord] = []
        group_limits = group_limits or {}
        with self._session() as session:
            if group_limits and session.get_bind().dialect.name == "postgresql":
                # Group counts must not be read by two claimers at once, or both fill the last slot.
                session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CLAIM_LOCK_ID})
            active = self._active_per_group(session, group_limits)
            query = (
                select(DataFile.id, DataFile.study_id)
                .join(Study, Study.id == DataFile.study_id)
                .where(DataFile.state == FileState.READY.value)
                .where((DataFile.not_before.is_(None)) | (DataFile.not_before <= now))
                # Within a priority, largest files first: long jobs start early and the
                # workers finish together (longest-processing-time-first scheduling).
                .order_by(Study.priority.desc(), DataFile.size.desc(), DataFile.id)
                .limit(limit * 2)
                # PostgreSQL: rows another claimer holds are skipped, not waited for (SQLite
                # has one writer at a time and ignores this; the CAS below decides there).
                .with_for_update(skip_locked=True, of=DataFile)
            )
            if study_ids:
                query = query.where(DataFile.study_id.in_(study_ids))
            tried: set[int] = set()
            # A claimer that lost every candidate to a concurrent one (SQLite, where all
            # see the same rows) looks again rather than reporting no work.
            for _ in range(CLAIM_ROUNDS):
                candidates = session.execute(query.where(DataFile.id.not_in(tried)) if tried else query).all()
                if not candidates:
                    break
                for file_id, study_id in candidates:
                    tried.add(file_id)
                    if len(claimed) >= limit:
                        break
                    group = group_limits.get(study_id)
                    if group is not None and active.get(group[0], 0) >= group[1]:
                        continue  # the study's run group is at its limit
                    if self._cas(
                        session,
                        file_id,
                        [FileState.READY.value],
                        FileState.CLAIMED.value,
                        f"claimed by {worker}",
                        lease_owner=worker,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                    ):
                        row = session.get(DataFile, file_id)
                        assert row is not None
                        claimed.append(_file_record(row))
                        if group is not None:
                            active[group[0]] = active.get(group[0], 0) + 1
                if len(claimed) >= limit:
                    break
        return claimed

    @staticmethod
    def _active_per_group(session: Session, group_limits: dict[str, tuple[str, int]]) -> dict[str, int]:
        """Claimed or running files per run group, over all workers."""
        if not group_limits:
            return {}
        rows = session.execute(
            select(DataFile.study_id, func.count())
            .where(DataFile.state.in_(ACTIVE_STATES), DataFile.study_id.in_(list(group_limits)))
            .group_by(DataFile.study_id)
        ).all()
        active: dict[str, int] = {}
        for study_id, count in rows:
            group = group_limits[study_id][0]
            active[group] = active.get(group, 0) + int(count)
        return active

    def start_run(
        self,
        file_id: int,
        *,
        run_id: str,
        worker: str,
        host: str,
        config_sha256: str,
        package_version: str | None,
        lock_hash: str | None = None,
        workflow: str | None = None,
    ) -> bool:
        """CLAIMED -> RUNNING and a new run row; False if the claim was lost."""
        now = utcnow()
        with self._session() as session:
            row = session.get(DataFile, file_id)
            if row is None or row.state != FileState.CLAIMED.value or row.lease_owner != worker:
                return False
            attempt = row.attempts + 1
            if not self._cas(
                session,
                file_id,
                [FileState.CLAIMED.value],
                FileState.RUNNING.value,
                f"attempt {attempt} on {worker}",
                attempts=attempt,
            ):
                return False
            session.add(
                Run(
                    id=run_id,
                    file_id=file_id,
                    study_id=row.study_id,
                    attempt=attempt,
                    worker=worker,
                    host=host,
                    config_sha256=config_sha256,
                    package_version=package_version,
                    lock_hash=lock_hash,
                    workflow=workflow,
                    input_fingerprint=row.fingerprint,
                    started_at=now,
                    outcome="running",
                )
            )
            return True

    def renew_leases(self, worker: str, lease_seconds: float) -> int:
        """Heartbeat: push out the lease of every file this worker holds."""
        with self._session() as session:
            result = session.execute(
                update(DataFile)
                .where(DataFile.lease_owner == worker, DataFile.state.in_(ACTIVE_STATES))
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def register_worker(self, worker: str, *, kind: str, executor: str, capacity: int) -> None:
        """A `process` or `watch` command announces itself (shown by `status` while it beats)."""
        now = utcnow()
        with self._session() as session:
            session.merge(
                Worker(
                    id=worker,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    kind=kind,
                    executor=executor,
                    capacity=capacity,
                    state="running",
                    running_jobs=0,
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def beat(self, worker: str, running_jobs: int, state: str = "running") -> None:
        with self._session() as session:
            session.execute(
                update(Worker)
                .where(Worker.id == worker)
                .values(heartbeat_at=utcnow(), running_jobs=running_jobs, state=state)
                .execution_options(synchronize_session=False)
            )

    def unregister_worker(self, worker: str) -> None:
        with self._session() as session:
            session.execute(delete(Worker).where(Worker.id == worker))

    def live_workers(self, within_seconds: float) -> list[WorkerRecord]:
        """Workers whose last heartbeat is recent; older rows belong to commands that died."""
        since = utcnow() - timedelta(seconds=within_seconds)
        with self._session() as session:
            rows = session.scalars(select(Worker).where(Worker.heartbeat_at >= since).order_by(Worker.started_at))
            return [
                WorkerRecord(
                    id=r.id,
                    host=r.host,
                    pid=r.pid,
                    kind=r.kind,
                    executor=r.executor,
                    capacity=r.capacity,
                    state=r.state,
                    running_jobs=r.running_jobs,
                    started_at=r.started_at,
                    heartbeat_at=r.heartbeat_at,
                )
                for r in rows
            ]

    def finish_run(self, run_id: str, metrics: RunMetrics, *, max_attempts: int, retry_at: datetime | None) -> str:
        """Record a run's outcome and move its file on; returns the file's new state.

        `retry_at` is the retry policy's decision for a failure: when to run again, or
        None for FAILED for good; `max_attempts` only words the reason.
        """
        now = utcnow()
        with self._session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise CatalogError(f"unknown run {run_id}")
            run.finished_at = now
            run.outcome = metrics.outcome
            run.error = metrics.error
            run.wall_seconds = metrics.wall_seconds
            run.cpu_seconds = metrics.cpu_seconds
            run.peak_rss_bytes = metrics.peak_rss_bytes
            run.bytes_read = metrics.bytes_read
            run.bytes_written = metrics.bytes_written
            run.recording_seconds = metrics.recording_seconds
            run.sample_rate_hz = metrics.sample_rate_hz
            run.result_location = metrics.result_location
            run.failed_step = metrics.failed_step
            run.traceback = metrics.traceback
            run.notices = list(metrics.notices) or None
            if metrics.package_version:
                run.package_version = metrics.package_version
            if metrics.host:
                run.host = metrics.host
            if metrics.charge is not None:
                _record_charge(run, metrics.charge)
            row = session.get(DataFile, run.file_id)
            assert row is not None
            if row.state != FileState.RUNNING.value:
                # The lease expired and someone else took over: keep the run, leave the file alone.
                return row.state
            release = {"lease_owner": None, "lease_expires_at": None}
            if run.input_fingerprint != row.fingerprint:
                # Whatever the outcome, it was about bytes that are no longer there.
                self._cas(
                    session,
                    row.id,
                    [row.state],
                    FileState.DISCOVERED.value,
                    "file changed while it ran",
                    attempts=0,
                    **release,
                )
                return FileState.DISCOVERED.value
            if metrics.outcome == "succeeded":
                _pair_with_estimate(session, run)
                self._cas(
                    session,
                    row.id,
                    [row.state],
                    FileState.SUCCEEDED.value,
                    None,
                    current_run_id=run_id,
                    last_error=None,
                    not_before=None,
                    **release,
                )
                return FileState.SUCCEEDED.value
            if retry_at is not None:  # the retry policy (engine.retry) said: try again then
                reason = (
                    f"attempt {row.attempts} of {max_attempts} failed, "
                    f"retrying after {retry_at:%H:%M:%S} UTC: {metrics.error}"
                )
                self._cas(
                    session,
                    row.id,
                    [row.state],
                    FileState.READY.value,
                    reason,
                    last_error=metrics.error,
                    not_before=retry_at,
                    **release,
                )
                return FileState.READY.value
            self._cas(
                session, row.id, [row.state], FileState.FAILED.value, metrics.error, last_error=metrics.error, **release
            )
            return FileState.FAILED.value

    def release(self, worker: str) -> int:
        """Give back everything `worker` holds (a clean or interrupted stop).

        Claimed files go back to READY; files it was running go back to READY too,
        their run marked "interrupted", so the next process run retries them at once
        instead of waiting for the lease to expire.
        """
        return self._requeue(
            [DataFile.lease_owner == worker, DataFile.state.in_(ACTIVE_STATES)],
            reason=f"released by {worker} (stopped before finishing)",
            run_outcome="interrupted",
            count_attempt=False,
        )

    def _requeue(self, conditions: list[Any], *, reason: str, run_outcome: str, count_attempt: bool = True) -> int:
        """Back to READY, or FAILED when the file has used up its study's max_attempts.

        An interrupted attempt (`count_attempt=False`) is given back: it did not fail.
        """
        now = utcnow()
        count = 0
        with self._session() as session:
            for row, config in session.execute(
                select(DataFile, Study.config).join(Study, Study.id == DataFile.study_id).where(*conditions)
            ).all():
                give_up = count_attempt and row.attempts >= int(config.get("max_attempts", 3))
                to_state = FileState.FAILED.value if give_up else FileState.READY.value
                why = f"{reason}; gave up after {row.attempts} attempt(s)" if give_up else reason
                extra: dict[str, Any] = {"last_error": why} if give_up else {}
                if not count_attempt and row.state == FileState.RUNNING.value:
                    extra["attempts"] = max(0, row.attempts - 1)
                if self._cas(
                    session, row.id, [row.state], to_state, why, lease_owner=None, lease_expires_at=None, **extra
                ):
                    session.execute(
                        update(Run)
                        .where(Run.file_id == row.id, Run.outcome == "running")
                        .values(outcome=run_outcome, finished_at=now, error=reason)
                    )
                    count += 1
        return count

    def expire_leases(self) -> int:
        """Files whose worker stopped heartbeating go back to READY (their run is marked lost)."""
        return self._requeue(
            [DataFile.state.in_(ACTIVE_STATES), DataFile.lease_expires_at < utcnow()],
            reason="the worker stopped heartbeating (lease expired); retrying",
            run_outcome="lost",
        )

    def runs(self, study_id: str | None = None, file_id: int | None = None) -> list[RunRecord]:
        with self._session() as session:
            query = select(Run).order_by(Run.started_at)
            if study_id is not None:
                query = query.where(Run.study_id == study_id)
            if file_id is not None:
                query = query.where(Run.file_id == file_id)
            return [_run_record(r) for r in session.scalars(query)]

    def cost_rows(self, study_ids: list[str] | None = None) -> list[CostRow]:
        """Every finished run with its cost, subject and input size, for cost reports."""
        with self._session() as session:
            query = (
                select(Run, DataFile.subject, DataFile.size)
                .join(DataFile, DataFile.id == Run.file_id)
                .where(Run.finished_at.is_not(None))
                .order_by(Run.started_at)
            )
            if study_ids is not None:
                query = query.where(Run.study_id.in_(study_ids))
            return [
                CostRow(
                    study=run.study_id,
                    workflow=run.workflow,
                    subject=subject,
                    started_at=run.started_at,
                    succeeded=run.outcome == "succeeded",
                    cost=run.cost,
                    currency=run.currency,
                    input_bytes=size,
                    recording_seconds=run.recording_seconds,
                )
                for run, subject, size in session.execute(query)
            ]

    # ---- history for the cost models ------------------------------------------------------------

    def add_imported_runs(self, rows: list[tuple[str, Observation]]) -> int:
        """Store past runs from elsewhere, each with where it came from (file:line)."""
        now = utcnow()
        with self._session() as session:
            session.add_all(
                ImportedRun(
                    workflow=o.workflow,
                    started_at=o.started_at,
                    input_bytes=o.input_bytes,
                    output_bytes=o.output_bytes,
                    wall_seconds=o.wall_seconds,
                    cpu_seconds=o.cpu_seconds,
                    peak_rss_bytes=o.peak_rss_bytes,
                    cost=o.cost,
                    machine=o.machine,
                    recording_seconds=o.recording_seconds,
                    source=source,
                    imported_at=now,
                )
                for source, o in rows
            )
        return len(rows)

    def observations(self, workflow: str | None = None, until: datetime | None = None) -> list[Observation]:
        """Every succeeded run (ours and imported) with its metering, oldest first."""
        with self._session() as session:
            ours = (
                select(Run, DataFile.size, DataFile.relative_path)
                .join(DataFile, DataFile.id == Run.file_id)
                .where(Run.outcome == "succeeded", Run.wall_seconds.is_not(None), Run.workflow.is_not(None))
            )
            imported = select(ImportedRun)
            if workflow is not None:
                ours = ours.where(Run.workflow == workflow)
                imported = imported.where(ImportedRun.workflow == workflow)
            if until is not None:
                ours = ours.where(Run.started_at <= until)
                imported = imported.where(ImportedRun.started_at <= until)
            found = [_observation(run, size, path) for run, size, path in session.execute(ours)]
            found += [_imported_observation(row) for row in session.scalars(imported)]
        return sorted(found, key=lambda o: o.started_at)

    def workflows_with_history(self) -> list[str]:
        """Every workflow with at least one succeeded run, ours or imported."""
        with self._session() as session:
            ours = session.scalars(
                select(Run.workflow).where(Run.outcome == "succeeded", Run.workflow.is_not(None)).distinct()
            )
            imported = session.scalars(select(ImportedRun.workflow).distinct())
            return sorted({w for w in ours if w} | set(imported))

    # ---- the cost model registry ----------------------------------------------------------------

    def cost_models(self, workflow: str | None = None) -> list[CostModelRecord]:
        with self._session() as session:
            query = select(CostModel).order_by(CostModel.workflow, CostModel.version)
            if workflow is not None:
                query = query.where(CostModel.workflow == workflow)
            return [_cost_model_record(row) for row in session.scalars(query)]

    def champion_model(self, workflow: str) -> CostModelRecord | None:
        with self._session() as session:
            row = session.scalars(
                select(CostModel).where(CostModel.workflow == workflow, CostModel.status == "champion")
            ).first()
            return None if row is None else _cost_model_record(row)

    def next_model_version(self, workflow: str) -> int:
        with self._session() as session:
            latest = session.scalar(select(func.max(CostModel.version)).where(CostModel.workflow == workflow))
            return int(latest or 0) + 1

    def record_cost_model(
        self,
        workflow: str,
        *,
        version: int,
        promote: bool,
        path: str,
        trained_from: datetime,
        trained_to: datetime,
        train_runs: int,
        test_runs: int,
        metrics: dict[str, Any],
        note: str | None,
    ) -> None:
        """Record a trained model; when promoted, the old champion is retired in the same transaction."""
        with self._session() as session:
            if promote:
                session.execute(
                    update(CostModel)
                    .where(CostModel.workflow == workflow, CostModel.status == "champion")
                    .values(status="retired")
                )
            session.add(
                CostModel(
                    workflow=workflow,
                    version=version,
                    status="champion" if promote else "rejected",
                    path=path,
                    created_at=utcnow(),
                    trained_from=trained_from,
                    trained_to=trained_to,
                    train_runs=train_runs,
                    test_runs=test_runs,
                    metrics=metrics,
                    note=note,
                )
            )

    def last_training_at(self) -> datetime | None:
        with self._session() as session:
            return session.scalar(select(func.max(CostModel.created_at)))

    # ---- estimates and what really happened ----------------------------------------------------

    def log_estimates(self, estimates: list[dict[str, Any]]) -> list[int]:
        """Keep estimates as given (workflow, model_id, file_id, inputs, predicted); their ids."""
        now = utcnow()
        with self._session() as session:
            rows = [CostEstimate(at=now, **estimate) for estimate in estimates]
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def estimates(self, workflow: str | None = None, with_actual: bool = False) -> list[EstimateRecord]:
        with self._session() as session:
            query = select(CostEstimate).order_by(CostEstimate.id)
            if workflow is not None:
                query = query.where(CostEstimate.workflow == workflow)
            if with_actual:
                query = query.where(CostEstimate.run_id.is_not(None))
            return [_estimate_record(row) for row in session.scalars(query)]

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._session() as session:
            row = session.get(Run, run_id)
            return None if row is None else _run_record(row)

    def get_file(self, file_id: int) -> FileRecord | None:
        with self._session() as session:
            row = session.get(DataFile, file_id)
            return None if row is None else _file_record(row)

    def files_named(self, urls: Iterable[str] = (), relative_path: str | None = None) -> list[FileRecord]:
        """Files whose URL is one of `urls`, or else whose path relative to its data location matches."""
        with self._session() as session:
            wanted = list(urls)
            rows = list(session.scalars(select(DataFile).where(DataFile.url.in_(wanted)))) if wanted else []
            if not rows and relative_path is not None:
                rows = list(session.scalars(select(DataFile).where(DataFile.relative_path == relative_path)))
            return [_file_record(r) for r in rows]

    def current_results(self, study_id: str) -> list[tuple[FileRecord, RunRecord]]:
        """Each SUCCEEDED file with the run whose results are current."""
        with self._session() as session:
            rows = session.execute(
                select(DataFile, Run)
                .join(Run, Run.id == DataFile.current_run_id)
                .where(DataFile.study_id == study_id, DataFile.state == FileState.SUCCEEDED.value)
                .order_by(DataFile.relative_path)
            ).all()
            return [(_file_record(f), _run_record(r)) for f, r in rows]

    def status(self, study_id: str | None = None) -> list[StudyStatus]:
        out: list[StudyStatus] = []
        for study in self.studies():
            if study_id is not None and study.id != study_id:
                continue
            files = self.files(study.id)
            counts = {state.value: 0 for state in FileState}
            for f in files:
                counts[f.state] += 1
            failed = [f for f in files if f.state == FileState.FAILED.value]
            out.append(
                StudyStatus(
                    study_id=study.id,
                    counts=counts,
                    waiting=[(f.relative_path, f.reason or "") for f in files if f.state == FileState.WAITING.value],
                    failed=[(f.relative_path, f.last_error or f.reason or "") for f in failed],
                    failure_details=self._failure_details(study.id, failed),
                    notices=self._current_notices(study.id),
                )
            )
        return out

    def _failure_details(self, study_id: str, failed: list[FileRecord]) -> dict[str, FailureDetail]:
        """Each FAILED file's last run: the step that raised and its traceback."""
        if not failed:
            return {}
        with self._session() as session:
            rows = session.execute(
                select(Run.file_id, Run.id, Run.failed_step, Run.traceback)
                .join(DataFile, DataFile.id == Run.file_id)
                .where(DataFile.study_id == study_id, DataFile.state == FileState.FAILED.value)
                .order_by(Run.started_at, Run.attempt)
            ).all()
        last = {file_id: FailureDetail(step, traceback, run_id) for file_id, run_id, step, traceback in rows}
        return {f.relative_path: last.get(f.id, FailureDetail(None, None, None)) for f in failed}

    def _current_notices(self, study_id: str) -> list[tuple[str, str]]:
        """(relative path, notice) of every SUCCEEDED file whose current run has notices."""
        with self._session() as session:
            rows = session.execute(
                select(DataFile.relative_path, Run.notices)
                .join(Run, Run.id == DataFile.current_run_id)
                .where(
                    DataFile.study_id == study_id,
                    DataFile.state == FileState.SUCCEEDED.value,
                    Run.notices.is_not(None),
                )
                .order_by(DataFile.relative_path)
            ).all()
        return [(path, str(notice)) for path, notices in rows for notice in notices or ()]

    def events(self, file_id: int) -> list[tuple[datetime, str | None, str, str | None]]:
        with self._session() as session:
            rows = session.scalars(select(FileEvent).where(FileEvent.file_id == file_id).order_by(FileEvent.id))
            return [(e.at, e.from_state, e.to_state, e.reason) for e in rows]
