"""The FastAPI application: routes, the error mapping and the audit log of changes."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import biomarkerflow
from biomarkerflow.errors import BiomarkerflowError, http_status
from biomarkerflow.service import Platform

CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def error_body(error: BiomarkerflowError) -> dict[str, str | None]:
    return {"error": error.message, "hint": error.hint, "category": error.category.value}


def _handle(request: Request, error: Exception) -> Response:
    assert isinstance(error, BiomarkerflowError)
    status = http_status(error)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(error), status_code=status, headers=headers)


def create_app(platform: Platform, *, session_secret: str | None = None, secure_cookies: bool = False) -> FastAPI:
    """The API (and dashboard) over `platform`; `session_secret` signs dashboard sessions
    (a random one per process when None: sessions then end when the server restarts);
    `secure_cookies` marks the session cookie Secure (served behind TLS)."""
    from biomarkerflow.api.routes_catalog import router as catalog_routes
    from biomarkerflow.api.routes_costs import router as cost_routes
    from biomarkerflow.api.routes_operate import router as operate_routes
    from biomarkerflow.api.routes_results import router as result_routes

    app = FastAPI(
        title="biomarkerflow",
        version=biomarkerflow.__version__,
        description="Studies, files, runs, results, lineage, costs and estimates of a biomarkerflow catalog. "
        "Every endpoint but /healthz needs a bearer token: biomarkerflow tokens create --name N --scope read.",
        openapi_url="/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.platform = platform
    app.state.session_secret = session_secret or secrets.token_urlsafe(32)
    app.add_exception_handler(BiomarkerflowError, _handle)
    app.add_middleware(AuditChanges)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: answers without a token and without touching the catalog."""
        return {"status": "ok", "version": biomarkerflow.__version__}

    for router in (catalog_routes, result_routes, cost_routes, operate_routes):
        app.include_router(router, prefix="/api/v1")
    from biomarkerflow.web import mount

    mount(app, https_only=secure_cookies)
    return app


class AuditChanges:
    """Every request that may change something is written down: who, what, when, outcome.

    Plain ASGI, not an `http` middleware function: reads pass straight through at no cost
    (Starlette's BaseHTTPMiddleware adds a task group and streams to every request).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGING_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500  # unless the app answers: an exception is a failed change too

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            await self._write(scope, status)

    @staticmethod
    async def _write(scope: Scope, status: int) -> None:
        actor = scope.get("state", {}).get("actor") or "anonymous"
        platform: Platform = scope["app"].state.platform
        query = scope.get("query_string", b"").decode("latin-1")
        await run_in_threadpool(
            platform.audit, actor, f"{scope['method']} {scope['path']}"[:100], query or None, str(status)
        )
