"""The web dashboard (issue 16, point 4): server-rendered pages in the API's FastAPI app.

`mount(app)` adds the signed session cookie, the static files (our CSS and JS, and the
vendored htmx, Vega, Vega-Lite and vega-embed: nothing is loaded from the internet) and
the pages. Templates are Jinja2 with autoescape on; htmx refreshes the live parts; charts
are Vega-Lite specs drawn by vega-embed. Pages call the application layer's paged and
aggregated use cases only (the same ones the API calls); see session.py for sign-in and CSRF.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

SESSION_COOKIE = "bmf_session"
SESSION_MAX_AGE = 12 * 3600  # seconds: sign in again after a working day
STATIC = Path(__file__).resolve().parent / "static"

__all__ = ["SESSION_COOKIE", "mount"]


def mount(app: FastAPI, *, https_only: bool = False) -> None:
    """Add the dashboard to `app` (made by api.create_app): sessions signed with
    `app.state.session_secret`, /static, and the pages. `https_only` marks the cookie Secure
    (behind a TLS proxy)."""
    from biomarkerflow.web import pages_catalog, pages_costs, pages_results, session

    app.add_middleware(
        SessionMiddleware,
        secret_key=app.state.session_secret,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE,
        same_site="strict",
        https_only=https_only,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (session, pages_catalog, pages_results, pages_costs):
        app.include_router(module.router, include_in_schema=False)
    app.add_exception_handler(HTTPException, _no_such_page)
    # Browsers ask for it on every page: no icon, and no 404 in their console either.
    app.add_api_route("/favicon.ico", lambda: Response(status_code=204), include_in_schema=False)


async def _no_such_page(request: Request, error: Exception) -> Response:
    """An address that is no page gets the error page; the API and static files keep FastAPI's
    JSON answer."""
    from biomarkerflow.web.render import Problem, error_page

    assert isinstance(error, HTTPException)
    if error.status_code == 404 and not request.url.path.startswith(("/api/", "/static/")):
        hint = "The pages are in the menu at the top; the API is under /api/v1 (see /api/docs)."
        return error_page(request, Problem(f"no page at {request.url.path}", hint, 404))
    return await http_exception_handler(request, error)
