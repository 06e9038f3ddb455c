"""Reading a change (a POST): body bounded, then the CSRF and Origin checks, then the form's bounds."""
from __future__ import annotations

from starlette.requests import Request

from web.forms import MAX_BODY_BYTES, Form, FormError, parse_form
from web.security import CsrfError, check_change
from web.session import NotSignedIn, current_session


async def bounded_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused past `limit` bytes whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise FormError(f"the form is larger than {limit // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormError(f"the form is larger than {limit // 1024} KiB")
    return bytes(body)


async def change_form(request: Request) -> Form:
    """The form of a signed-in person's change, once its origin and CSRF token are checked."""
    session = current_session(request)
    if session is None:
        raise NotSignedIn()
    request.state.web_session = session
    form = parse_form(await bounded_body(request), request.headers.get("content-type"))
    check_change(session.csrf_token, form.get("csrf_token"), request.headers.get("origin"),
                 request.app.state.settings.origin)
    return form


__all__ = ["CsrfError", "FormError", "bounded_body", "change_form"]
