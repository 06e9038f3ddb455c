"""Signing a person in: the control plane's SignInService, the provider's code flow, a key kept here.

1. `begin`: BeginSignIn on the sign-in listener gives the issuer, scopes and a one-time
   nonce; the console sends the browser to the provider's authorization endpoint as its own
   client (`--client-id`, a web application whose redirect URI is this console's
   `/auth/callback`), with PKCE (S256), a random `state` and that nonce. What it must remember
   (verifier, state, nonce) stays here, named by a random id in a SameSite=Lax cookie.
2. `complete`: the callback's state must match the one sent from this browser; the code is
   traded for an ID token at the provider's token endpoint; a fresh P-256 key and CSR are made
   here and CompleteSignIn trades the token and CSR for the person's client certificate. The
   control plane checks the token (issuer, signature, audience, nonce, ...) exactly as for
   `jitgate login`; the console never decides who someone is.
"""
from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx

from web.session import Person
from web.settings import WebSettings

PENDING_TTL = timedelta(minutes=10)  # the control plane's nonce lives as long by default
PER_SOURCE = 20  # sign-ins under way from one address: one browser needs one, a flood gets no more
MAX_HTTP_BYTES = 256 * 1024
MAX_PARAM = 4096  # code, state, error text from the redirect


class SignInError(Exception):
    """A sign-in that cannot go on; the message is what the person reads."""


@dataclass
class PendingSignIn:
    id: str
    state: str
    nonce: str
    verifier: str
    token_endpoint: str
    created_at: datetime
    next_path: str
    source: str = ""  # the browser's address: bounds the sign-ins one address may hold open


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path of this console only (never `//host` or a URL)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 256:
        return "/"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        return "/"
    return path


def _json(resp: httpx.Response, what: str) -> dict[str, Any]:
    if len(resp.content) > MAX_HTTP_BYTES:
        raise SignInError(f"the identity provider's {what} answer is larger than {MAX_HTTP_BYTES} bytes")
    try:
        data = resp.json()
    except ValueError:
        raise SignInError(f"the identity provider's {what} answered HTTP {resp.status_code} without JSON") from None
    if not isinstance(data, dict):
        raise SignInError(f"the identity provider's {what} answer is not a JSON object")
    return data


def rpc_text(exc: grpc.RpcError) -> str:
    """`STATUS: detail [code]`: a gRPC failure as one readable line (never a traceback)."""
    from jitgate.status import reason_of

    code = exc.code() if hasattr(exc, "code") else None
    detail = (exc.details() if hasattr(exc, "details") else "") or ""
    reason = reason_of(exc)
    return f"{code.name if code else 'UNKNOWN'}: {detail.strip()}" + (f" [{reason}]" if reason else "")


class SignInFlow:
    """Sign-ins under way (bounded, each for PENDING_TTL) and the calls that finish them."""

    def __init__(self, settings: WebSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.clock = clock
        self._pending: dict[str, PendingSignIn] = {}
        self._lock = threading.Lock()

    # -- the control plane's sign-in listener ------------------------------------------------------

    def _signin_stub(self, channel: grpc.Channel) -> Any:
        from jitgate.v1 import signin_pb2_grpc

        return signin_pb2_grpc.SignInServiceStub(channel)

    def _signin_channel(self) -> grpc.Channel:
        from jitgate import wire

        creds = grpc.ssl_channel_credentials(root_certificates=self.settings.ca_pem)
        return grpc.secure_channel(self.settings.login_server, creds, options=wire.client_options())

    # -- 1. begin ----------------------------------------------------------------------------------

    def begin(self, next_path: str | None, source: str = "") -> tuple[PendingSignIn, str]:
        """A new pending sign-in and the provider's authorization URL to send the browser to."""
        from authlib.common.urls import add_params_to_uri
        from authlib.oauth2.rfc7636 import create_s256_code_challenge

        from jitgate.v1 import signin_pb2

        self._check_room(source)  # before asking the control plane for a nonce
        with self._signin_channel() as channel:
            try:
                begun = self._signin_stub(channel).BeginSignIn(signin_pb2.BeginSignInRequest(),
                                                              timeout=self.settings.rpc_timeout)
            except grpc.RpcError as e:
                raise SignInError(f"the control plane's sign-in refused to start: {rpc_text(e)}") from None
        doc = self._discover(begun.issuer)
        pending = PendingSignIn(secrets.token_urlsafe(32), secrets.token_urlsafe(32), begun.nonce,
                                secrets.token_urlsafe(64), doc["token_endpoint"], self.clock(), safe_next(next_path),
                                source)
        url = add_params_to_uri(doc["authorization_endpoint"], [
            ("response_type", "code"), ("client_id", self.settings.client_id),
            ("redirect_uri", self.settings.redirect_uri), ("scope", " ".join(begun.scopes)),
            ("state", pending.state), ("nonce", pending.nonce),
            ("code_challenge", create_s256_code_challenge(pending.verifier)), ("code_challenge_method", "S256")])
        with self._lock:
            self._check_room_locked(source)
            self._pending[pending.id] = pending
        return pending, url

    def _check_room(self, source: str) -> None:
        with self._lock:
            self._check_room_locked(source)

    def _check_room_locked(self, source: str) -> None:
        self._sweep()
        if len(self._pending) >= self.settings.max_pending_signins:
            raise SignInError("too many sign-ins are under way; try again in a few minutes")
        if sum(1 for p in self._pending.values() if p.source == source) >= PER_SOURCE:
            raise SignInError(f"more than {PER_SOURCE} sign-ins are under way from your address; "
                              "finish one or try again in a few minutes")

    def _discover(self, issuer: str) -> dict[str, str]:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with httpx.Client(timeout=10.0, follow_redirects=False) as http:
                doc = _json(http.get(url), "discovery document")
        except httpx.HTTPError as e:
            raise SignInError(f"cannot reach the identity provider at {url}: {type(e).__name__}") from None
        if doc.get("issuer") != issuer:
            named = str(doc.get("issuer"))[:200]
            raise SignInError(f"the identity provider at {url} calls itself {named}, not {issuer}")
        ends = {k: doc.get(k) for k in ("authorization_endpoint", "token_endpoint")}
        if not all(isinstance(v, str) and v.startswith(("https://", "http://")) for v in ends.values()):
            raise SignInError("the identity provider's discovery document names no authorization or token endpoint")
        return {k: str(v) for k, v in ends.items()}

    # -- 2. complete -------------------------------------------------------------------------------

    def take(self, pending_id: str | None, state: str) -> PendingSignIn:
        """The pending sign-in this browser started, if `state` is the one it was sent with (once)."""
        with self._lock:
            self._sweep()
            pending = self._pending.get(pending_id or "")
            if pending is None:
                raise SignInError("this sign-in is unknown or took too long; sign in again")
            if not hmac.compare_digest(pending.state.encode(), state.encode()):
                raise SignInError("the provider's answer does not belong to this sign-in (state differs); "
                                  "sign in again")
            del self._pending[pending.id]
        return pending

    def complete(self, pending: PendingSignIn, code: str) -> Person:
        """Code -> ID token -> (CSR made here) -> the person's certificate -> a Person with an mTLS channel."""
        from cli.login_cmd import new_csr
        from jitgate.v1 import signin_pb2

        try:
            with httpx.Client(timeout=15.0, follow_redirects=False) as http:
                token = _json(http.post(pending.token_endpoint, data={
                    "grant_type": "authorization_code", "code": code, "redirect_uri": self.settings.redirect_uri,
                    "client_id": self.settings.client_id, "code_verifier": pending.verifier}), "token endpoint")
        except httpx.HTTPError as e:
            raise SignInError(f"cannot reach the identity provider: {type(e).__name__}") from None
        if "error" in token:
            raise SignInError(f"the identity provider refused the code: {str(token['error'])[:200]}: "
                              f"{str(token.get('error_description', ''))[:500]}")
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInError("the identity provider answered without an ID token (is `openid` among the scopes?)")
        csr_pem, key_pem = new_csr()
        with self._signin_channel() as channel:
            try:
                done = self._signin_stub(channel).CompleteSignIn(signin_pb2.CompleteSignInRequest(
                    id_token=id_token, nonce=pending.nonce, csr_pem=csr_pem, hours=self.settings.certificate_hours),
                    timeout=self.settings.rpc_timeout)
            except grpc.RpcError as e:
                raise SignInError(f"the control plane refused the sign-in: {rpc_text(e)}") from None
        channel = person_channel(self.settings, done.cert_pem.encode(), key_pem)
        return Person(done.name, list(done.groups), channel, done.expires_at.ToDatetime(tzinfo=UTC))

    def _sweep(self) -> None:
        cutoff = self.clock() - PENDING_TTL
        for key in [k for k, p in self._pending.items() if p.created_at < cutoff]:
            del self._pending[key]


def person_channel(settings: WebSettings, cert_pem: bytes, key_pem: bytes) -> grpc.Channel:
    """An mTLS channel to the control plane as this person (failing over as the CLI does)."""
    from pathlib import Path

    from cli.failover import failover_channel
    from jitgate import wire
    from jitgate.endpoints import ServerList

    creds = grpc.ssl_channel_credentials(root_certificates=settings.ca_pem, private_key=key_pem,
                                         certificate_chain=cert_pem)
    return failover_channel(ServerList.parse(settings.server), creds, wire.client_options(), Path("-"),
                            lambda raw, _identity, _address: raw)


__all__ = ["PENDING_TTL", "PER_SOURCE", "PendingSignIn", "SignInError", "SignInFlow", "person_channel", "rpc_text",
           "safe_next"]
