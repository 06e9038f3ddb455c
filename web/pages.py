"""Rendering pages: one Jinja environment (autoescape on), the base layout, flashes, refusals.

Every value a template prints passes `shown()` (the environment's `finalize`): terminal
controls, bidi and invisible characters become visible escapes (`jitgate.text.visible`,
the rule the CLI follows), then autoescape makes `<`, `&`, quotes literal. So no user
string reaches the page as markup or as a hidden character, whichever template prints it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from jitgate.text import visible
from web import formats
from web.session import WebSession, current_session

TEMPLATES = Path(__file__).resolve().parent / "templates"

# gRPC status -> the HTTP status of the page that shows the refusal
HTTP_OF = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def shown(value: Any) -> Any:
    """What a template prints: markup we built stays; anything else is made visible text."""
    if isinstance(value, Markup) or value is None or isinstance(value, (int, float, bool)):
        return "" if value is None else value
    return visible(value, keep_newlines=True)


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                      finalize=shown, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(formats.FILTERS)
    return env


_ENV = environment()  # templates are read once; the environment holds no per-request state


def flash(request: Request, kind: str, text: str) -> None:
    """A message shown on the next page this browser renders (kind: ok, error, info)."""
    session = getattr(request.state, "web_session", None) or current_session(request)
    if session is not None and len(session.flashes) < 8:
        session.flashes.append((kind, text))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """`web/templates/<template>` inside base.html, with the person, the CSRF token and the flashes."""
    session: WebSession | None = getattr(request.state, "web_session", None) or current_session(request)
    flashes: list[tuple[str, str]] = []
    if session is not None:
        flashes, session.flashes = session.flashes, []
    page = _ENV.get_template(template).render(
        request=request, person=session.person if session else None,
        csrf_token=session.csrf_token if session else "", flashes=flashes, path=request.url.path, **context)
    return HTMLResponse(page, status_code=status_code, headers={"cache-control": "no-store"})


def refused(request: Request, exc: grpc.RpcError, what: str = "The control plane refused this") -> HTMLResponse:
    """A readable refusal: the status, the detail and the stable code, never a traceback."""
    from web.signin import rpc_text

    code = exc.code() if hasattr(exc, "code") else None
    return render(request, "refused.html", status_code=HTTP_OF.get(code, 502) if code else 502,
                  what=what, message=rpc_text(exc), back=back_of(request.url.path))


def problem(request: Request, message: str, status_code: int = 400, what: str = "Refused") -> HTMLResponse:
    """A plain message page (bad form input, CSRF refusal, sign-in failure)."""
    return render(request, "refused.html", status_code=status_code, what=what, message=message,
                  back=back_of(request.url.path))


def back_of(path: str) -> str:
    """The screen a refused action came from: `/approve/ID` -> `/approve` (sign-in pages -> `/`)."""
    first = path.strip("/").split("/", 1)[0]
    return "/" if first in ("", "auth", "static") else f"/{first}"


__all__ = ["flash", "problem", "refused", "render", "shown"]
