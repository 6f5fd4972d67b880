"""Runner rows: each live `process` or `watch` command (a runner) announces itself and heartbeats.

These rows are what `status` shows as running commands; the leases on files (claims.py)
are what actually keeps two commands from running the same file.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy import delete, select, update

from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.models import Worker
from biomarkerflow.catalog.records import RunnerRecord


def _runner_record(row: Worker) -> RunnerRecord:
    return RunnerRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        kind=row.kind,
        executor=row.executor,
        capacity=row.capacity,
        state=row.state,
        running_jobs=row.running_jobs,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
    )


class Runners:
    """The commands processing files right now, as their heartbeats say."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(self, worker: str, *, kind: str, executor: str, capacity: int) -> None:
        """A `process` or `watch` command announces itself (shown by `status` while it beats)."""
        now = utcnow()
        with self._db.session() as session:
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
        with self._db.session() as session:
            session.execute(
                update(Worker)
                .where(Worker.id == worker)
                .values(heartbeat_at=utcnow(), running_jobs=running_jobs, state=state)
                .execution_options(synchronize_session=False)
            )

    def unregister(self, worker: str) -> None:
        with self._db.session() as session:
            session.execute(delete(Worker).where(Worker.id == worker))

    def live(self, within_seconds: float) -> list[RunnerRecord]:
        """Runners whose last heartbeat is recent; older rows belong to commands that died."""
        since = utcnow() - timedelta(seconds=within_seconds)
        with self._db.session() as session:
            rows = session.scalars(select(Worker).where(Worker.heartbeat_at >= since).order_by(Worker.started_at))
            return [_runner_record(r) for r in rows]
