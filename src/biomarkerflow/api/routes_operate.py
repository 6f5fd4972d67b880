"""Work asked for over HTTP (operate scope), tokens and the audit log (admin), runtimes (read)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from biomarkerflow.api.auth import Admin, Operator, PathId, PlatformDep, Reader
from biomarkerflow.errors import NotFoundError
from biomarkerflow.service.access import audit_json, token_json, work_request_json

router = APIRouter()


class WorkBody(BaseModel):
    kind: Literal["scan", "process", "retrain"]
    study: str | None = Field(default=None, max_length=200, description="process: only this study")


class TokenBody(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: Literal["read", "operate", "admin"] = "read"


@router.post("/work", status_code=202, tags=["operate"])
def request_work(platform: PlatformDep, token: Operator, body: WorkBody, request: Request) -> dict[str, Any]:
    """Ask for a scan, process or retrain. A running `watch` service (or `serve --watch`) does it;
    follow it at /api/v1/work/{id}."""
    record = platform.request_work(body.kind, body.study, token.name)
    watching = bool(getattr(request.app.state, "watching", False))
    return {**work_request_json(record), "watched_here": watching}


@router.get("/work", tags=["operate"])
def work_requests(
    platform: PlatformDep, _: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    return [work_request_json(r) for r in platform.work_requests(limit)]


@router.get("/work/{request_id}", tags=["operate"])
def work_request(platform: PlatformDep, _: Reader, request_id: PathId) -> dict[str, Any]:
    record = platform.work_request(request_id)
    if record is None:
        raise NotFoundError(f"no work request {request_id}")
    return work_request_json(record)


@router.get("/runtimes", tags=["runtimes"])
def runtimes(platform: PlatformDep, _: Reader) -> list[dict[str, Any]]:
    """The cached runtimes (pinned package versions) and the studies using each."""
    return platform.list_runtimes().as_json()


@router.get("/tokens", tags=["admin"])
def tokens(platform: PlatformDep, _: Admin) -> list[dict[str, Any]]:
    """Every token's name, scope and prefix (never the token)."""
    return [token_json(t) for t in platform.tokens()]


@router.post("/tokens", status_code=201, tags=["admin"])
def create_token(platform: PlatformDep, _: Admin, body: TokenBody) -> dict[str, Any]:
    """A new token, shown once in this answer."""
    return platform.create_token(body.name, body.scope).as_json()


@router.delete("/tokens/{name}", tags=["admin"])
def revoke_token(platform: PlatformDep, _: Admin, name: str) -> dict[str, Any]:
    return token_json(platform.revoke_token(name))


@router.get("/audit", tags=["admin"])
def audit(
    platform: PlatformDep,
    _: Admin,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Requests that changed something, newest first."""
    return [audit_json(entry) for entry in platform.audit_log(limit, offset)]
