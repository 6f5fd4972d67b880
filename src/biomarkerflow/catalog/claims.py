"""Who holds a file: claiming READY files, leases and heartbeats, giving files back.

A claim is a compare-and-set (`files.move`) from READY to CLAIMED with a lease; a worker
that stops heartbeating loses its lease and its files go back to READY, so nothing is lost
and nothing runs twice.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.files import ACTIVE_STATES, file_record, move
from biomarkerflow.catalog.models import DataFile, FileState, Run, Study, Worker
from biomarkerflow.catalog.records import FileRecord

_CLAIM_LOCK_ID = zlib.crc32(b"biomarkerflow.catalog.claim")
# How often a claimer that lost every candidate to a concurrent one looks again.
CLAIM_ROUNDS = 5


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


class Claims:
    """Claims and leases on files: what a worker holds, for how long, and what happens when it stops."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
        with self._db.session() as session:
            if group_limits and session.get_bind().dialect.name == "postgresql":
                # Group counts must not be read by two claimers at once, or both fill the last slot.
                session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CLAIM_LOCK_ID})
            active = _active_per_group(session, group_limits)
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
                    if move(
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
                        claimed.append(file_record(row))
                        if group is not None:
                            active[group[0]] = active.get(group[0], 0) + 1
                if len(claimed) >= limit:
                    break
        return claimed

    def renew(self, worker: str, lease_seconds: float) -> int:
        """Heartbeat: push out the lease of every file this worker holds."""
        with self._db.session() as session:
            result = session.execute(
                update(DataFile)
                .where(DataFile.lease_owner == worker, DataFile.state.in_(ACTIVE_STATES))
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

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

    def recover(self, host: str, alive: Callable[[int, datetime], bool]) -> int:
        """Take back at once the files of every claimer on `host` whose process is gone (killed,
        crashed, its machine restarted): `alive(pid, registered_at)` says. Their runner rows go
        too. Claimers on other hosts are left to their leases. Files taken back."""
        with self._db.session() as session:
            runners = session.execute(select(Worker.id, Worker.pid, Worker.started_at).where(Worker.host == host)).all()
        count = 0
        for runner, pid, registered_at in runners:
            if alive(pid, registered_at):
                continue
            count += self._requeue(
                [DataFile.lease_owner == runner, DataFile.state.in_(ACTIVE_STATES)],
                reason=f"its command (pid {pid} on {host}) is gone; retrying at once",
                run_outcome="lost",
            )
            with self._db.session() as session:
                session.execute(delete(Worker).where(Worker.id == runner))
        return count

    def expire(self) -> int:
        """Files whose worker stopped heartbeating go back to READY (their run is marked lost)."""
        return self._requeue(
            [DataFile.state.in_(ACTIVE_STATES), DataFile.lease_expires_at < utcnow()],
            reason="the worker stopped heartbeating (lease expired); retrying",
            run_outcome="lost",
        )

    def _requeue(self, conditions: list[Any], *, reason: str, run_outcome: str, count_attempt: bool = True) -> int:
        """Back to READY, or FAILED when the file has used up its study's max_attempts.

        An interrupted attempt (`count_attempt=False`) is given back: it did not fail.
        """
        now = utcnow()
        count = 0
        with self._db.session() as session:
            for row, config in session.execute(
                select(DataFile, Study.config).join(Study, Study.id == DataFile.study_id).where(*conditions)
            ).all():
                give_up = count_attempt and row.attempts >= int(config.get("max_attempts", 3))
                to_state = FileState.FAILED.value if give_up else FileState.READY.value
                why = f"{reason}; gave up after {row.attempts} attempt(s)" if give_up else reason
                extra: dict[str, Any] = {"last_error": why} if give_up else {}
                if not count_attempt and row.state == FileState.RUNNING.value:
                    extra["attempts"] = max(0, row.attempts - 1)
                if move(session, row.id, [row.state], to_state, why, lease_owner=None, lease_expires_at=None, **extra):
                    session.execute(
                        update(Run)
                        .where(Run.file_id == row.id, Run.outcome == "running")
                        .values(outcome=run_outcome, finished_at=now, error=reason)
                    )
                    count += 1
        return count
