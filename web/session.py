"""Web sessions: who is signed in on which browser, held in this process's memory only.

A session is a random id in a cookie (`__Host-` prefix: Secure, Path=/, no Domain;
HttpOnly; SameSite=Lax so the provider's redirect back still carries the sign-in cookie)
naming a `WebSession` here: the person, their mTLS channel to the control plane (their
certificate and the private key made for it, never written anywhere), the CSRF token.
A session ends at the first of: its idle timeout, its absolute timeout, the person's
certificate's expiry, sign-out. Ending it closes the channel and drops the key, so a
restart of the console signs everyone out.
"""
from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from starlette.requests import Request

COOKIE = "__Host-jitgate-session"
SIGNIN_COOKIE = "__Host-jitgate-signin"


@dataclass
class Person:
    """Who is signed in: their name and groups as the control plane's sign-in gave them,
    and a gRPC channel authenticated as them (mTLS with their short-lived certificate)."""

    name: str
    groups: list[str]
    channel: grpc.Channel
    expires_at: datetime  # the certificate's end


@dataclass
class WebSession:
    id: str
    person: Person
    csrf_token: str
    created_at: datetime
    last_seen: datetime
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown on the next page

    def expires_at(self, idle: timedelta, absolute: timedelta) -> datetime:
        """When this session ends if nothing else happens: idle, absolute or certificate end."""
        return min(self.last_seen + idle, self.created_at + absolute, self.person.expires_at)


class NotSignedIn(Exception):
    """No live web session for this request: the app sends the browser to the sign-in page."""


class SessionStore:
    """The live web sessions, bounded in number; expired ones are dropped as they are met."""

    def __init__(self, idle: timedelta, absolute: timedelta, max_sessions: int,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.idle, self.absolute, self.max_sessions, self.clock = idle, absolute, max_sessions, clock
        self._sessions: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def create(self, person: Person) -> WebSession:
        now = self.clock()
        with self._lock:
            self._sweep(now)
            if len(self._sessions) >= self.max_sessions:
                person.channel.close()
                raise OverflowError("the console has as many people signed in as it holds; try again later")
            session = WebSession(secrets.token_urlsafe(32), person, secrets.token_urlsafe(32), now, now)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> WebSession | None:
        """The live session of this id (its idle clock restarted), or None."""
        if not session_id or len(session_id) > 128:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now >= session.expires_at(self.idle, self.absolute):
                self._end(session)
                return None
            session.last_seen = now
            return session

    def end(self, session_id: str | None) -> WebSession | None:
        with self._lock:
            session = self._sessions.get(session_id or "")
            if session is not None:
                self._end(session)
            return session

    def close_all(self) -> None:
        with self._lock:
            for session in list(self._sessions.values()):
                self._end(session)

    def __len__(self) -> int:
        return len(self._sessions)

    def _sweep(self, now: datetime) -> None:
        for session in [s for s in self._sessions.values() if now >= s.expires_at(self.idle, self.absolute)]:
            self._end(session)

    def _end(self, session: WebSession) -> None:
        self._sessions.pop(session.id, None)
        session.person.channel.close()  # the channel held the only reference to the private key


def current_session(request: Request) -> WebSession | None:
    """The request's live web session, if any (the app's SessionStore is in `app.state.sessions`)."""
    store: SessionStore = request.app.state.sessions
    return store.get(request.cookies.get(COOKIE))


def signed_in(request: Request) -> Person:
    """The person signed in on this browser; raises NotSignedIn (-> the sign-in page) otherwise."""
    session = current_session(request)
    if session is None:
        raise NotSignedIn()
    request.state.web_session = session
    return session.person


__all__ = ["COOKIE", "SIGNIN_COOKIE", "NotSignedIn", "Person", "SessionStore", "WebSession", "current_session",
           "signed_in"]
