"""Who may use the REST API and dashboard: tokens, scopes, the audit log, and work asked for
over HTTP (done in-process by `serve --watch`, else by any running `watch` service)."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from biomarkerflow.catalog.records import AuditRecord, TokenRecord, WorkRequestRecord
from biomarkerflow.errors import AccessError, UsageError
from biomarkerflow.service.base import PlatformBase

# Each scope includes the ones before it.
SCOPES = ("read", "operate", "admin")
WORK_KINDS = ("scan", "process", "retrain")
TOKEN_PREFIX = "bmf_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def allows(granted: str, needed: str) -> bool:
    """Whether a token of scope `granted` may do what needs `needed` (admin > operate > read)."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


@dataclass(frozen=True)
class NewToken:
    """A token just created: the secret is shown once and never stored."""

    token: str
    record: TokenRecord

    def as_json(self) -> dict[str, Any]:
        return {"token": self.token, **token_json(self.record)}


def token_json(record: TokenRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "scope": record.scope,
        "prefix": record.prefix,
        "created_at": record.created_at.isoformat(),
        "last_used_at": record.last_used_at.isoformat() if record.last_used_at else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def work_request_json(record: WorkRequestRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind,
        "study": record.study_id,
        "requested_by": record.requested_by,
        "requested_at": record.requested_at.isoformat(),
        "state": record.state,
        "taken_by": record.taken_by,
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "result": record.result,
        "error": record.error,
    }


def audit_json(record: AuditRecord) -> dict[str, Any]:
    return {
        "at": record.at.isoformat(),
        "actor": record.actor,
        "action": record.action,
        "target": record.target,
        "outcome": record.outcome,
        "details": record.details,
    }


class AccessCases(PlatformBase):
    def create_token(self, name: str, scope: str) -> NewToken:
        """A new bearer token; its secret is in the result only (the catalog keeps its hash)."""
        if not _NAME.fullmatch(name):
            raise UsageError(
                f"token name {name!r} is not allowed",
                hint="Use letters, digits and - _ . @ (up to 100), e.g. --name dashboard-alice",
            )
        if scope not in SCOPES:
            raise UsageError(f"unknown scope {scope!r}", hint="Use one of: read, operate, admin.")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = self.catalog.create_token(name, scope, token_hash(token), token[: len(TOKEN_PREFIX) + 6])
        return NewToken(token, record)

    def tokens(self) -> list[TokenRecord]:
        return self.catalog.tokens()

    def revoke_token(self, name: str) -> TokenRecord:
        return self.catalog.revoke_token(name)

    def identify(self, token: str | None) -> TokenRecord:
        """The live token's record; AccessError (HTTP 401) when there is none or it is unknown."""
        if not token:
            raise AccessError(
                "this needs an API token",
                hint="Send 'Authorization: Bearer TOKEN'; create one with: biomarkerflow tokens create --name N",
            )
        record = self.catalog.token_by_hash(token_hash(token))
        if record is None:
            raise AccessError("the token is unknown or revoked", hint="Create a new one: biomarkerflow tokens create")
        return record

    @staticmethod
    def authorize(record: TokenRecord, needed: str) -> None:
        """AccessError (HTTP 403) when the token's scope does not cover `needed`."""
        if not allows(record.scope, needed):
            raise AccessError(
                f"the token '{record.name}' has scope {record.scope}; this needs {needed}",
                hint=f"Use a token created with --scope {needed}.",
                authenticated=True,
            )

    def audit(
        self, actor: str, action: str, target: str | None, outcome: str, details: dict[str, Any] | None = None
    ) -> None:
        self.catalog.audit(actor, action, target, outcome, details)

    def audit_log(self, limit: int = 100, offset: int = 0) -> list[AuditRecord]:
        return self.catalog.audit_entries(limit, offset)

    def request_work(self, kind: str, study: str | None, requested_by: str) -> WorkRequestRecord:
        """Ask for a scan, process or retrain; a `watch` service (or `serve --watch`) does it."""
        if kind not in WORK_KINDS:
            raise UsageError(f"unknown kind of work {kind!r}", hint="Use one of: scan, process, retrain.")
        if study is not None:
            self.require_studies([study])
        return self.catalog.request_work(kind, study, requested_by)

    def work_request(self, request_id: int) -> WorkRequestRecord | None:
        return self.catalog.work_request(request_id)

    def work_requests(self, limit: int = 50) -> list[WorkRequestRecord]:
        return self.catalog.work_requests(limit)
