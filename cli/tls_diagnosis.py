"""Why a call could not connect: a refused identity is not a server that is down.

gRPC reports a server that closes the connection during the TLS handshake (it
refused our client certificate) with the same words as one that is down:
`UNAVAILABLE: failed to connect to all addresses; ... Socket closed`. After such
a failure, and only then, the CLI finds out which it was:

1. locally: `cert.pem` must chain to `ca.pem` and be within its window (the
   server checks the same against its CA);
2. the server's certificate: a TLS failure verifying it means the identity's
   `ca.pem` is not the server's CA (an identity of another control plane);
3. one probe handshake with the identity: a server that accepts it speaks
   HTTP/2 at once; one that refuses it closes the connection right after the
   handshake (gRPC servers send no alert).

The answer is one `UNAUTHENTICATED: ...` line saying whose certificate was
refused and why, as an untrusted certificate deserves. `HandshakeDiagnosis`
asks on every call of the CLI's channel (unary, or the first message of a
stream); it raises `IdentityRefused` with that line.
"""
from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from ca.errors import CAError
from ca.x509 import BUNDLE_CA_FILE, BUNDLE_CERT_FILE, BUNDLE_KEY_FILE, verify_issued_by
from jitgate.errors import JitgateError

# The probe is one extra handshake after a call already failed: a server that answers within
# this long answers; longer means down or unreachable, which the original error already says.
PROBE_TIMEOUT = 5.0
# gRPC's words for a connection that never came up, and for the two handshake outcomes.
_NEVER_CONNECTED = "failed to connect to all addresses"
_CLOSED = "socket closed"
_SERVER_UNTRUSTED = "certificate_verify_failed"


def refused_identity_line(exc: BaseException, identity: Path, address: str) -> str | None:
    """The `UNAUTHENTICATED: ...` line for a call that failed because the TLS handshake refused
    the identity (or the server), or None when the failure is something else (server down, ...)."""
    if not isinstance(exc, grpc.RpcError) or not hasattr(exc, "code") or exc.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    detail = (exc.details() or "").lower()
    if _NEVER_CONNECTED not in detail or not (_CLOSED in detail or _SERVER_UNTRUSTED in detail):
        return None
    cert_path, ca_path = identity / BUNDLE_CERT_FILE, identity / BUNDLE_CA_FILE
    problem = bundle_problem(identity)
    if problem:
        return f"UNAUTHENTICATED: the identity's certificate `{cert_path}` {problem}, so the server refuses it"
    if _SERVER_UNTRUSTED in detail:
        return (f"UNAUTHENTICATED: the server at {address} presented a certificate not issued by `{ca_path}`: "
                "this identity belongs to another control plane, or the server's CA changed")
    if server_refuses(address, identity):
        return (f"UNAUTHENTICATED: the server at {address} refused the identity's certificate `{cert_path}` "
                "during the TLS handshake: it does not trust the CA that issued it (an identity of another "
                "control plane, or the server's CA changed); ask this server's admin for an identity")
    return None


def bundle_problem(identity: Path) -> str:
    """What makes the bundle's certificate one its own CA would refuse ("" when none is found)."""
    try:
        ca_pem = (identity / BUNDLE_CA_FILE).read_bytes()
        cert_pem = (identity / BUNDLE_CERT_FILE).read_bytes()
    except OSError:
        return ""  # reading the bundle already worked for the call; nothing more to say here
    try:
        verify_issued_by(cert_pem, ca_pem)
    except CAError as exc:
        if exc.code == "x509.untrusted":
            return f"was not issued by the CA in `{identity / BUNDLE_CA_FILE}`"
        if exc.code == "x509.expired":
            return exc.message.replace("certificate is", "is", 1)
        return f"cannot be read ({exc.message})"
    return ""


def server_refuses(address: str, identity: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server closes the connection right after a TLS handshake with this identity
    (it refused the certificate). The server's certificate is not checked here: the probe only
    asks what the server makes of ours."""
    host, _, port = address.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        ctx.load_cert_chain(identity / BUNDLE_CERT_FILE, identity / BUNDLE_KEY_FILE)
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except (OSError, ValueError):
        return False  # no usable key, or down or unreachable: not a refusal we can name
    with raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                return tls.recv(1) == b""  # an accepting gRPC server sends its HTTP/2 settings first
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True  # an alert or a reset after our certificate: refused
        except OSError:
            return False  # no answer within the timeout


class IdentityRefused(JitgateError):
    """The TLS handshake refused the identity (or the server); the message is the whole line."""

    code = "identity.refused"


class HandshakeDiagnosis(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Turns a call that failed in the TLS handshake into `IdentityRefused` with its reason."""

    def __init__(self, identity: Path, address: str) -> None:
        self._identity = identity
        self._address = address

    def check(self, exc: BaseException) -> None:
        """Raise `IdentityRefused` when `exc` is a handshake refusal; else return."""
        line = refused_identity_line(exc, self._identity, self._address)
        if line is not None:
            raise IdentityRefused(line) from None

    def intercept_unary_unary(self, continuation: Callable[[Any, Any], Any], client_call_details: Any,
                              request: Any) -> Any:
        outcome = continuation(client_call_details, request)
        if isinstance(outcome, grpc.RpcError):  # grpc hands a failed call back as its error
            self.check(outcome)
        return outcome

    def intercept_unary_stream(self, continuation: Callable[[Any, Any], Any], client_call_details: Any,
                               request: Any) -> Any:
        outcome = continuation(client_call_details, request)
        if isinstance(outcome, grpc.RpcError) and not hasattr(outcome, "__next__"):
            self.check(outcome)
            return outcome
        return _CheckedStream(outcome, self.check)


class _CheckedStream:
    """A response stream whose failures pass `check` first; anything else is the call's own."""

    def __init__(self, call: Any, check: Callable[[BaseException], None]) -> None:
        self._call = call
        self._check = check

    def __iter__(self) -> _CheckedStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            self._check(exc)
            raise

    def __getattr__(self, name: str) -> Any:  # cancel(), code(), details(), ... of the call
        return getattr(self._call, name)
