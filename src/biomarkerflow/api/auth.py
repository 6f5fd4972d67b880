"""Who is asking: a bearer token (API clients) or the dashboard's signed session cookie.

Every route but /healthz depends on `require(scope)`. The token's record is the actor
the audit log names.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from biomarkerflow.catalog.records import TokenRecord
from biomarkerflow.errors import AccessError
from biomarkerflow.service import Platform

SESSION_TOKEN_KEY = "token"
SESSION_CSRF_KEY = "csrf"  # the dashboard's per-session CSRF token (web/session.py)
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def bearer_token(request: Request) -> str | None:
    """The token of the request: `Authorization: Bearer ...`, else the dashboard session's.

    A request that changes something with the session's token must also carry the session's
    CSRF token in the X-CSRF-Token header: a cookie alone, which a browser sends by itself,
    never changes anything.
    """
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    session = request.scope.get("session")
    if not session:
        return None
    token = session.get(SESSION_TOKEN_KEY)
    if not isinstance(token, str):
        return None
    if request.method not in SAFE_METHODS:
        expected = session.get(SESSION_CSRF_KEY)
        sent = request.headers.get(CSRF_HEADER, "")
        if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise AccessError(
                "a signed-in browser must send the session's CSRF token (X-CSRF-Token) to change anything",
                hint="API clients send 'Authorization: Bearer TOKEN' instead.",
                authenticated=True,
            )
    return token


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
