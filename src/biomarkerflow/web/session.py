"""Signing in to the dashboard: a token checked once, then kept in the signed session cookie
(the same session the API's `bearer_token` reads), and a CSRF token per session that every
form changing something carries.

The session cookie (`bmf_session`) is signed, HttpOnly and SameSite=Strict. Each page asks
the catalog again who the token is, so a revoked token ends its sessions at once.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from biomarkerflow.errors import AccessError
from biomarkerflow.service import Platform
from biomarkerflow.service.access import allows
from biomarkerflow.web.render import PageRoute, SignInNeeded, render

# The session key the API's bearer_token() reads (api/auth.py SESSION_TOKEN_KEY).
TOKEN_KEY = "token"
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@dataclass(frozen=True)
class Viewer:
    """Who is signed in: the token's name and scope, and the session's CSRF token."""

    name: str
    scope: str
    csrf: str

    @property
    def may_operate(self) -> bool:
        return allows(self.scope, "operate")


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get(CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = session[CSRF_KEY] = secrets.token_urlsafe(32)
    return token


def verify_csrf(request: Request, sent: str | None) -> None:
    """AccessError (403) unless `sent` (the form's hidden field or the X-CSRF-Token header)
    is this session's CSRF token."""
    sent = sent or request.headers.get(CSRF_HEADER)
    expected = request.session.get(CSRF_KEY)
    if not sent or not isinstance(expected, str) or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise AccessError(
            "the form's CSRF token is missing or wrong, so nothing was changed",
            hint="Reload the page and submit the form again (a form from another site, "
            "or from before you signed in, is refused).",
            authenticated=True,
        )


def signed_in(request: Request) -> Viewer:
    """The signed-in viewer (read scope); SignInNeeded without a valid session."""
    token = request.session.get(TOKEN_KEY)
    if not isinstance(token, str) or not token:
        raise SignInNeeded()
    platform = platform_of(request)
    try:
        record = platform.identify(token)
    except AccessError:
        request.session.clear()  # revoked since signing in
        raise SignInNeeded(expired=True) from None
    request.state.actor = record.name  # the audit log names who did it
    request.state.token_record = record
    platform.authorize(record, "read")
    viewer = Viewer(record.name, record.scope, csrf_token(request.session))
    request.state.viewer = viewer
    return viewer


def operator(request: Request, viewer: Viewer, csrf: str | None) -> Viewer:
    """`viewer`, when the form's CSRF token is right and the token has operate scope (else 403)."""
    verify_csrf(request, csrf)
    platform_of(request).authorize(request.state.token_record, "operate")
    return viewer


SignedIn = Annotated[Viewer, Depends(signed_in)]
CsrfField = Annotated[str | None, Form(alias=CSRF_FIELD)]


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never //host or a URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login")
def login_form(request: Request, next: str | None = None, expired: bool = False) -> Response:
    notice = "The token of your session is unknown or was revoked: sign in again." if expired else None
    return render(
        request,
        "login.html",
        viewer=None,
        csrf=csrf_token(request.session),
        next=_safe_next(next),
        error=None,
        notice=notice,
    )


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=500)] = "",
    csrf: CsrfField = None,
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    verify_csrf(request, csrf)
    try:
        record = platform_of(request).identify(token.strip())
    except AccessError as exc:
        return render(
            request,
            "login.html",
            401,
            viewer=None,
            csrf=csrf_token(request.session),
            next=_safe_next(next),
            error=exc.message,
            notice=None,
        )
    request.state.actor = record.name
    request.session.clear()  # a new session on sign-in: nothing from before it carries over
    request.session[TOKEN_KEY] = token.strip()
    csrf_token(request.session)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: CsrfField = None) -> Response:
    token = request.session.get(TOKEN_KEY)
    if isinstance(token, str) and token:
        verify_csrf(request, csrf)
        with contextlib.suppress(AccessError):  # revoked meanwhile: signing out still ends the session
            request.state.actor = platform_of(request).identify(token).name
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
