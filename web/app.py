"""The console's ASGI application: routes, static files, the security headers, error pages."""
from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from web import auth, recordings
from web.forms import FormError
from web.pages import problem
from web.security import HEADERS, CsrfError, SecurityHeaders
from web.session import NotSignedIn, SessionStore
from web.settings import WebSettings
from web.signin import SignInFlow
from web.views import approve, dashboard, request_access

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("jitgate.web")


def home(request: Request) -> Response:
    return RedirectResponse("/request", 303)


async def _not_signed_in(request: Request, exc: Exception) -> Response:
    if request.method == "GET":
        return RedirectResponse(auth.signin_location(request.url.path), 303)
    return problem(request, "you are not signed in (or your session ended): sign in again", 401, "Not signed in")


async def _csrf(request: Request, exc: Exception) -> Response:
    return problem(request, str(exc), 403, "Refused")


async def _form(request: Request, exc: Exception) -> Response:
    return problem(request, str(exc), 400, "The form was refused")


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    text = {404: "there is no such page", 405: "this page does not take that method"}.get(exc.status_code,
                                                                                            "the request was refused")
    return problem(request, text, exc.status_code, f"HTTP {exc.status_code}")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s", request.url.path, exc_info=exc)  # the traceback stays in the log
    response = problem(request, "the console met an unexpected error; it is in the console's log", 500, "Error")
    response.headers.update(HEADERS)  # this handler runs outside the middleware (Starlette's error layer)
    return response


def create_app(settings: WebSettings) -> Starlette:
    """The console for these settings (its sign-ins and web sessions live in the app's state)."""
    routes = [
        Route("/", home, methods=["GET"]),
        *auth.ROUTES,
        *request_access.ROUTES,
        *approve.ROUTES,
        *dashboard.ROUTES,
        *recordings.ROUTES,  # webreplay's screens, with their full paths under /recordings and /sessions/live
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)], exception_handlers={
        NotSignedIn: _not_signed_in, CsrfError: _csrf, FormError: _form, HTTPException: _http,
        Exception: _unexpected})
    app.state.settings = settings
    app.state.sessions = SessionStore(settings.idle_timeout, settings.absolute_timeout, settings.max_sessions)
    app.state.signin = SignInFlow(settings)
    return app


__all__ = ["create_app"]
