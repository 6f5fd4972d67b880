"""Who is asking: a bearer token (API clients) or the dashboard's signed session cookie.

Every route but /healthz depends on `require(scope)`. The token's record is the actor
the audit log names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from biomarkerflow.catalog.records import TokenRecord
from biomarkerflow.service import Platform

SESSION_TOKEN_KEY = "token"


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def bearer_token(request: Request) -> str | None:
    """The token of the request: `Authorization: Bearer ...`, else the dashboard session's."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    session = request.scope.get("session")
    if session:
        token = session.get(SESSION_TOKEN_KEY)
        return token if isinstance(token, str) else None
    return None


def require(scope: str) -> Callable[[Request], TokenRecord]:
    """A dependency: the caller's token record, when its scope covers `scope` (else 401/403)."""

    def dependency(request: Request) -> TokenRecord:
        platform = platform_of(request)
        record = platform.identify(bearer_token(request))
        request.state.actor = record.name  # the audit log names who was refused, too
        platform.authorize(record, scope)
        return record

    dependency.__name__ = f"require_{scope}"
    return dependency


Reader = Annotated[TokenRecord, Depends(require("read"))]
Operator = Annotated[TokenRecord, Depends(require("operate"))]
Admin = Annotated[TokenRecord, Depends(require("admin"))]
PlatformDep = Annotated[Platform, Depends(platform_of)]

# Catalog ids are 64-bit integers: larger numbers are a 422, not a database overflow.
MAX_ID = 2**63 - 1
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
