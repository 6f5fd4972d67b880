"""Runs: starting one on a claimed file, recording how it ended, and reading runs back.

`_store_metrics` and `run_record` are the one place where a run's metrics
(`metrics.RunMetrics`) meet the `runs` table's columns, in each direction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from biomarkerflow.catalog import coststore
from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.files import file_record, log_event, move
from biomarkerflow.catalog.models import DataFile, FileState, Run
from biomarkerflow.catalog.records import FileRecord, RunRecord
from biomarkerflow.errors import CatalogError
from biomarkerflow.metrics import Capacity, Charge, RunMetrics


def _store_metrics(run: Run, metrics: RunMetrics) -> None:
    """Write what a finished run reports onto its row (the columns stay as the schema has them)."""
    run.outcome = metrics.outcome
    run.error = metrics.error
    run.wall_seconds = metrics.wall_seconds
    run.cpu_seconds = metrics.cpu_seconds
    run.peak_rss_bytes = metrics.peak_rss_bytes
    run.bytes_read = metrics.bytes_read
    run.bytes_written = metrics.bytes_written
    run.facts = dict(metrics.facts) or None
    run.result_location = metrics.result_location
    run.failed_step = metrics.failed_step
    run.traceback = metrics.traceback
    run.notices = list(metrics.notices) or None
    # Known when the run started; the job's own word (where it really ran, with what) wins.
    if metrics.package_version:
        run.package_version = metrics.package_version
    if metrics.host:
        run.host = metrics.host
    if metrics.machine:
        run.machine = dict(metrics.machine)
    if metrics.charge is not None:
        run.cost = metrics.charge.amount
        run.currency = metrics.charge.currency
        run.price_table = metrics.charge.table
        run.capacity = metrics.charge.capacity
        run.billed_seconds = metrics.charge.billed_seconds
        run.vcpus = metrics.charge.vcpus
        run.memory_gb = metrics.charge.memory_gb


def _stored_charge(row: Run) -> Charge | None:
    """The run's charge as its cost columns hold it; None for runs from before costs were recorded."""
    if row.cost is None:
        return None
    return Charge(
        amount=row.cost,
        currency=row.currency or "",
        table=row.price_table or "",
        capacity=cast(Capacity, row.capacity),
        billed_seconds=row.billed_seconds or 0.0,
        vcpus=row.vcpus or 0.0,
        memory_gb=row.memory_gb or 0.0,
    )


def run_record(row: Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        file_id=row.file_id,
        study_id=row.study_id,
        attempt=row.attempt,
        started_at=row.started_at,
        finished_at=row.finished_at,
        config_sha256=row.config_sha256,
        lock_hash=row.lock_hash,
        worker=row.worker,
        pipeline=row.pipeline,
        outcome=row.outcome,
        error=row.error,
        wall_seconds=row.wall_seconds,
        cpu_seconds=row.cpu_seconds,
        peak_rss_bytes=row.peak_rss_bytes,
        bytes_read=row.bytes_read,
        bytes_written=row.bytes_written,
        facts=dict(row.facts or {}),
        result_location=row.result_location,
        package_version=row.package_version,
        host=row.host,
        failed_step=row.failed_step,
        traceback=row.traceback,
        notices=tuple(row.notices or ()),
        charge=_stored_charge(row),
    )


# Files whose current run's results exist: SUCCEEDED ones, and EXCLUDED ones (outside a
# quality gate, their quality report still current).
FINISHED_WITH_RESULTS = (FileState.SUCCEEDED.value, FileState.EXCLUDED.value)


def _settle(
    session: Session,
    run: Run,
    file: DataFile,
    metrics: RunMetrics,
    max_attempts: int,
    retry_at: datetime | None,
    excluded: str | None,
) -> str:
    """Move a RUNNING file on after its run ended; returns its new state.

    `retry_at` is the retry policy's decision (engine.retry) for a failure: when to run
    again, or None for FAILED for good. `excluded` is why a succeeded run's file is outside
    the study's quality gates (stages.quality_gates), None when it is inside.
    """
    values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
    reason: str | None
    if run.input_fingerprint != file.fingerprint:
        # Whatever the outcome, it was about bytes that are no longer there.
        to_state, reason = FileState.DISCOVERED.value, "file changed while it ran"
        values["attempts"] = 0
    elif metrics.succeeded:
        coststore.pair_with_estimate(session, run)
        to_state = FileState.SUCCEEDED.value if excluded is None else FileState.EXCLUDED.value
        reason = excluded
        values.update(current_run_id=run.id, last_error=None, not_before=None)
    elif retry_at is not None:
        to_state = FileState.READY.value
        when = f"{retry_at:%H:%M:%S} UTC"
        reason = f"attempt {file.attempts} of {max_attempts} failed, retrying after {when}: {metrics.error}"
        values.update(last_error=metrics.error, not_before=retry_at)
    else:
        to_state, reason = FileState.FAILED.value, metrics.error
        values["last_error"] = metrics.error
    move(session, file.id, [file.state], to_state, reason, **values)
    return to_state


class Runs:
    """Runs of files: the attempt a worker starts, how it ended, and the run history."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def start(
        self,
        file_id: int,
        *,
        run_id: str,
        worker: str,
        host: str,
        config_sha256: str,
        package_version: str | None,
        lock_hash: str | None = None,
        pipeline: str | None = None,
    ) -> bool:
        """CLAIMED -> RUNNING and a new run row; False if the claim was lost."""
        with self._db.session() as session:
            row = session.get(DataFile, file_id)
            if row is None or row.state != FileState.CLAIMED.value or row.lease_owner != worker:
                return False
            attempt = row.attempts + 1
            reason = f"attempt {attempt} on {worker}"
            if not move(session, file_id, [FileState.CLAIMED.value], FileState.RUNNING.value, reason, attempts=attempt):
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
                    pipeline=pipeline,
                    input_fingerprint=row.fingerprint,
                    started_at=utcnow(),
                    outcome="running",
                )
            )
            return True

    def finish(
        self,
        run_id: str,
        metrics: RunMetrics,
        *,
        max_attempts: int,
        retry_at: datetime | None,
        excluded: str | None = None,
    ) -> str:
        """Record a run's outcome and move its file on; returns the file's new state.

        `retry_at` is the retry policy's decision for a failure: when to run again, or
        None for FAILED for good; `max_attempts` only words the reason. `excluded`: why a
        succeeded file fails a quality gate (it becomes EXCLUDED), None when it passes.
        """
        with self._db.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise CatalogError(f"unknown run {run_id}")
            run.finished_at = utcnow()
            _store_metrics(run, metrics)
            file = session.get(DataFile, run.file_id)
            assert file is not None
            if file.state != FileState.RUNNING.value:
                # The lease expired and someone else took over: keep the run, leave the file alone.
                return file.state
            return _settle(session, run, file, metrics, max_attempts, retry_at, excluded)

    def find(self, study_id: str | None = None, file_id: int | None = None) -> list[RunRecord]:
        with self._db.session() as session:
            query = select(Run).order_by(Run.started_at)
            if study_id is not None:
                query = query.where(Run.study_id == study_id)
            if file_id is not None:
                query = query.where(Run.file_id == file_id)
            return [run_record(r) for r in session.scalars(query)]

    def get(self, run_id: str) -> RunRecord | None:
        with self._db.session() as session:
            row = session.get(Run, run_id)
            return None if row is None else run_record(row)

    def current_run_ids(self, study_id: str, state: str = FileState.SUCCEEDED.value) -> list[str]:
        """The run ids `current_results` would pair for files in `state`, sorted; read as one
        column (70k in ~0.1 s)."""
        with self._db.session() as session:
            return sorted(
                session.scalars(
                    select(DataFile.current_run_id).where(
                        DataFile.study_id == study_id,
                        DataFile.state == state,
                        DataFile.current_run_id.is_not(None),
                    )
                )
            )

    def current_results(self, study_id: str, *, excluded: bool = False) -> list[tuple[FileRecord, RunRecord]]:
        """Each SUCCEEDED file (and EXCLUDED one, with `excluded`) with the run whose results are current."""
        states = FINISHED_WITH_RESULTS if excluded else (FileState.SUCCEEDED.value,)
        with self._db.session() as session:
            rows = session.execute(
                select(DataFile, Run)
                .join(Run, Run.id == DataFile.current_run_id)
                .where(DataFile.study_id == study_id, DataFile.state.in_(states))
                .order_by(DataFile.relative_path)
            ).all()
            return [(file_record(f), run_record(r)) for f, r in rows]

    def set_exclusion(self, file_id: int, excluded: str | None) -> bool:
        """A finished file's quality verdict after its study's gates changed: EXCLUDED with why,
        or SUCCEEDED; its results are not recomputed. False when nothing changed."""
        to_state = FileState.SUCCEEDED.value if excluded is None else FileState.EXCLUDED.value
        with self._db.session() as session:
            row = session.get(DataFile, file_id)
            if row is None or row.state not in FINISHED_WITH_RESULTS:
                return False
            if row.state == to_state and row.reason == excluded:
                return False
            if row.state == to_state:  # still excluded, for another reason
                row.reason = excluded
                row.updated_at = utcnow()
                log_event(session, file_id, row.state, to_state, excluded)
                return True
            reason = excluded or "inside the study's quality gates again"
            return move(session, file_id, [row.state], to_state, reason)
