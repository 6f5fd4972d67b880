"""Pages as HTML: the Jinja2 templates (autoescaped: file names, errors and ids are user
text), their filters, the error page, and the route class that turns a failure on a page
into that page instead of the API's JSON."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from biomarkerflow.errors import BiomarkerflowError, http_status
from biomarkerflow.units import format_bytes

HERE = Path(__file__).resolve().parent

# Pages may run Vega (its expressions compile with Function: 'unsafe-eval'), set widths in
# style attributes, and are never framed (the operate buttons cannot be clickjacked).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInNeeded(Exception):
    """The request has no session, or its token is no longer valid: go to /login."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("sign in first")
        self.expired = expired


# ---- filters ------------------------------------------------------------------------------------


def segment(value: object) -> str:
    """A value as one URL path segment (a '/' in a study id stays inside its segment)."""
    return quote(str(value), safe="")


def money(value: float | None, currency: str | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    unit = currency or "USD"
    return f"{value:,.2f} {unit}" if abs(value) >= 1 else f"{value:.4f} {unit}"


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    for limit, divisor, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h")):
        if abs(value) < limit:
            return f"{value / divisor:.1f} {unit}"
    return f"{value / 86400:.1f} d"


def size(value: float | None) -> str:
    return "–" if value is None else format_bytes(value)


def when(value: str | datetime | None) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' (the catalog's times are UTC)."""
    if value is None:
        return "–"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text[:16].replace("T", " ")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def number(value: Any) -> str:
    """A table cell: floats to 4 significant digits, times to the second (or millisecond)."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "–"
    if isinstance(value, datetime):  # pandas' Timestamp too, which would print nanoseconds
        precise = value.microsecond or getattr(value, "nanosecond", 0)
        return value.isoformat(sep=" ", timespec="milliseconds" if precise else "seconds")
    return "–" if value is None else str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template: anything from outside is text, never markup
        undefined=jinja2.ChainableUndefined,  # older provenance lacks fields: shown empty, not a 500
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(seg=segment, money=money, seconds=seconds, size=size, when=when, percent=percent, number=number)
    return env


TEMPLATES = _environment()


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page: `template` with `context`, the signed-in viewer (for the nav) and the path."""
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    context.setdefault("path", request.url.path)
    html = TEMPLATES.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


@dataclass(frozen=True)
class Problem:
    """What the error page shows."""

    message: str
    hint: str | None
    status: int


def error_page(request: Request, problem: Problem) -> HTMLResponse:
    return render(request, "error.html", problem.status, problem=problem)


def to_login(request: Request, expired: bool) -> Response:
    """303 to /login (back here after); htmx requests get HX-Redirect instead of the login page."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        here = "/"  # a form posted without a session is not sent again after signing in
    target = f"/login?next={quote(here, safe='')}" + ("&expired=1" if expired else "")
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


class PageRoute(APIRoute):
    """A dashboard route: its failures become pages (an error page with the message, the hint
    and the status; a redirect to /login), never the API's JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInNeeded as exc:
                return to_login(request, exc.expired)
            except BiomarkerflowError as exc:
                return error_page(request, Problem(exc.message, exc.hint, http_status(exc)))
            except RequestValidationError as exc:
                wrong = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
                    for e in exc.errors()
                )
                return error_page(request, Problem(f"this address is not valid: {wrong}", None, 400))

        return page
