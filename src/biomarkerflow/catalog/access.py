"""Who may use the REST API and dashboard, what they changed, and the work they asked for.

Tokens are kept as SHA-256 hashes only (a token is 32 random bytes, so a plain hash is
enough: there is nothing to guess). Work requests are the API's way to ask a running
`watch` service to scan, process or retrain: one service takes each request, once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from biomarkerflow.catalog.connection import Database, utcnow
from biomarkerflow.catalog.models import ApiToken, AuditEntry, WorkRequest
from biomarkerflow.catalog.records import AuditRecord, TokenRecord, WorkRequestRecord
from biomarkerflow.errors import ConflictError, NotFoundError

# `last_used_at` is written at most this often per token: reads must not all become writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _token_record(row: ApiToken) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        name=row.name,
        scope=row.scope,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _audit_record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        details=row.details,
    )


def _request_record(row: WorkRequest) -> WorkRequestRecord:
    return WorkRequestRecord(
        id=row.id,
        kind=row.kind,
        study_id=row.study_id,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        state=row.state,
        taken_by=row.taken_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=row.result,
        error=row.error,
    )


class Tokens:
    """API tokens: create (hash given), find by hash, list, revoke."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, name: str, scope: str, token_sha256: str, prefix: str) -> TokenRecord:
        with self._db.session() as session:
            if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
                raise ConflictError(
                    f"a token named '{name}' exists already",
                    hint="Pick another name (names stay taken after a revoke, so the audit log stays unambiguous).",
                )
            row = ApiToken(
                name=name,
                scope=scope,
                token_sha256=token_sha256,
                prefix=prefix,
                created_at=utcnow(),
                last_used_at=None,
                revoked_at=None,
            )
            session.add(row)
            session.flush()
            return _token_record(row)

    def find(self, token_sha256: str) -> TokenRecord | None:
        """The live (not revoked) token with this hash; notes when it was last used."""
        now = utcnow()
        with self._db.session() as session:
            row = session.scalar(
                select(ApiToken).where(ApiToken.token_sha256 == token_sha256, ApiToken.revoked_at.is_(None))
            )
            if row is None:
                return None
            if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
                row.last_used_at = now
            return _token_record(row)

    def all(self) -> list[TokenRecord]:
        with self._db.session() as session:
            return [_token_record(row) for row in session.scalars(select(ApiToken).order_by(ApiToken.id))]

    def revoke(self, name: str) -> TokenRecord:
        with self._db.session() as session:
            row = session.scalar(select(ApiToken).where(ApiToken.name == name))
            if row is None:
                raise NotFoundError(f"no token named '{name}'", hint="See the names with: biomarkerflow tokens list")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _token_record(row)


class Audit:
    """The audit log: append and read, newest first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self, actor: str, action: str, target: str | None, outcome: str, details: dict[str, Any] | None = None
    ) -> None:
        with self._db.session() as session:
            session.add(
                AuditEntry(at=utcnow(), actor=actor, action=action, target=target, outcome=outcome, details=details)
            )

    def entries(self, limit: int = 100, offset: int = 0) -> list[AuditRecord]:
        with self._db.session() as session:
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).offset(offset).limit(limit)
            return [_audit_record(row) for row in session.scalars(query)]


class WorkRequests:
    """Scan / process / retrain asked for over HTTP, taken once by a `watch` service."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, kind: str, study_id: str | None, requested_by: str) -> WorkRequestRecord:
        with self._db.session() as session:
            row = WorkRequest(
                kind=kind,
                study_id=study_id,
                requested_by=requested_by,
                requested_at=utcnow(),
                state="pending",
            )
            session.add(row)
            session.flush()
            return _request_record(row)

    def take(self, taker: str) -> WorkRequestRecord | None:
        """The oldest pending request, now running under `taker`; None when there is none.

        The conditional UPDATE makes sure two services never take the same request.
        """
        with self._db.session() as session:
            for request_id in session.scalars(
                select(WorkRequest.id).where(WorkRequest.state == "pending").order_by(WorkRequest.id).limit(5)
            ):
                taken = session.execute(
                    update(WorkRequest)
                    .where(WorkRequest.id == request_id, WorkRequest.state == "pending")
                    .values(state="running", taken_by=taker, started_at=utcnow())
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    row = session.get(WorkRequest, request_id)
                    assert row is not None
                    session.refresh(row)
                    return _request_record(row)
            return None

    def finish(self, request_id: int, *, result: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self._db.session() as session:
            row = session.get(WorkRequest, request_id)
            if row is None:
                return
            row.state = "failed" if error is not None else "done"
            row.finished_at = utcnow()
            row.result = result
            row.error = error

    def get(self, request_id: int) -> WorkRequestRecord | None:
        with self._db.session() as session:
            row = session.get(WorkRequest, request_id)
            return None if row is None else _request_record(row)

    def recent(self, limit: int = 50, since: datetime | None = None) -> list[WorkRequestRecord]:
        with self._db.session() as session:
            query = select(WorkRequest).order_by(WorkRequest.id.desc()).limit(limit)
            if since is not None:
                query = query.where(WorkRequest.requested_at >= since)
            return [_request_record(row) for row in session.scalars(query)]
