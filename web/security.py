"""The console's browser-facing defences, as pure functions and one middleware.

- Headers on every answer: a strict Content-Security-Policy (no inline script or style,
  nothing from elsewhere, no framing, forms post only here), nosniff, a same-origin referrer, HSTS.
- A change is a POST carrying the session's CSRF token (compared in constant time) from a
  page of this origin (the Origin header, which browsers send on every POST; a POST
  without one is refused too).
"""
from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form posts,
    # which the Origin check must refuse; nothing leaves for other sites either way.
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "strict-transport-security": "max-age=31536000",
    "cross-origin-opener-policy": "same-origin",
}


class CsrfError(Exception):
    """A change refused before it reaches the API: the message is what the person reads."""


def check_change(expected_token: str, sent_token: str, origin: str | None, allowed_origin: str) -> None:
    """Raise CsrfError unless the POST comes from this console's pages with the session's token."""
    if origin is None or origin.lower() != allowed_origin:
        raise CsrfError("refused: the form was not sent from this console (Origin header missing or foreign)")
    if not expected_token or not sent_token or not hmac.compare_digest(expected_token.encode(), sent_token.encode()):
        raise CsrfError("refused: the form's security token is missing or stale; reload the page and try again")


class SecurityHeaders:
    """ASGI middleware adding HEADERS to every HTTP answer (pages, redirects, errors, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


__all__ = ["CSP", "HEADERS", "CsrfError", "SecurityHeaders", "check_change"]
