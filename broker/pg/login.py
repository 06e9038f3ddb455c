"""The PostgreSQL broker's login: handshake, token check, upstream login, cancel keys.

Teleport's `proxy.go`. One connection, up to the relay:

    client                       broker                          control plane / upstream
    SSLRequest        ->  'S', TLS handshake (bytes sent before it: dropped)
    StartupMessage    ->  user = ROLE@RESOURCE (plaintext refused when TLS is required)
                      <-  AuthenticationCleartextPassword
    PasswordMessage   ->  token                        -> AuthorizeSession(postgres, resource, role, token)
                                                       -> upstream login as the role (SCRAM/md5/trust)
                          recording opened, startup parameters noted, cancel key kept
    ... then `broker.pg.session.Session` greets the client and relays ...

A refusal is a FATAL ErrorResponse (`Refusal`); one before authentication is
counted by the refusal gate and slowed (tarpit). A CancelRequest (plain or over
TLS) carries the broker's secret; `CancelKeys` maps it to the upstream
backend's own key and forwards it there.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from broker.cpclient import Authorization, ControlPlaneError
from broker.pg import protocol as p
from broker.pg.config import PgBrokerConfig, parse_user
from broker.pg.credentials import CredentialError
from broker.pg.pipe import Pipe, PipeClosed
from broker.pg.recording import RecorderProcess
from broker.pg.session import Session
from broker.pg.upstream import UpstreamError, UpstreamSession, connect, send_cancel
from broker.runtime import BrokerRuntime, ControlPlane, end_report
from recorder import RecordingError

log = logging.getLogger(__name__)

# Startup parameters never passed upstream: the broker sets user and database,
# and replication connections are not brokered.
_DROPPED_PARAMS = frozenset({"user", "database", "replication"})
# The password message (the token) at the most: a token is far shorter.
_MAX_LOGIN_MESSAGE = 4096


class Refusal(Exception):
    """A login the broker refuses: sent as a FATAL ErrorResponse with `sqlstate`."""

    def __init__(self, sqlstate: str, message: str, code: str, user: str = "", resource: str = "",
                 audit: bool = True, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.code = code
        self.user = user
        self.resource = resource
        self.audit = audit  # False when the control plane already audited it
        self.hint = hint


class _Drop(Exception):
    """Close the connection without a word (bytes injected before the TLS handshake)."""


@dataclass(frozen=True)
class _CancelTarget:
    host: str
    port: int
    pid: int
    secret: int


class CancelKeys:
    """The broker's BackendKeyData of each live session -> the upstream backend's own key."""

    def __init__(self) -> None:
        self._targets: dict[tuple[int, int], _CancelTarget] = {}

    def new_key(self, upstream: UpstreamSession) -> tuple[int, int]:
        """The key the client gets: the upstream's pid, a secret of the broker's own."""
        secret = secrets.randbits(32)
        while (upstream.pid, secret) in self._targets:
            secret = secrets.randbits(32)
        return upstream.pid, secret

    def add(self, key: tuple[int, int], upstream: UpstreamSession) -> None:
        self._targets[key] = _CancelTarget(upstream.host, upstream.port, upstream.pid, upstream.secret)

    def forget(self, key: tuple[int, int]) -> None:
        self._targets.pop(key, None)

    async def forward(self, event: p.CancelRequest) -> None:
        target = self._targets.get((event.pid, event.secret))
        if target is None:
            return  # like PostgreSQL: an unknown key is ignored silently
        await send_cancel(target.host, target.port, target.pid, target.secret)


def _refusal_from_cp(exc: ControlPlaneError, user: str, resource: str, counted: bool = False) -> Refusal:
    """`counted`: the control plane left the audit to the broker's refusal gate."""
    if exc.unavailable:
        return Refusal("57P03", "jitgate cannot reach its control plane, so access is refused; try again shortly",
                       "controlplane.unavailable", user, resource)
    sqlstate = "28P01" if exc.code == "UNAUTHENTICATED" else "28000"
    return Refusal(sqlstate, f"jitgate refused access: {exc.message}", "session.refused", user, resource,
                   audit=counted)


def _forwarded_params(params: dict[str, str]) -> dict[str, str]:
    """The client's startup parameters that go upstream (recorded as a note)."""
    forwarded = {k: v for k, v in params.items() if k not in _DROPPED_PARAMS and not k.startswith("_pq_.")}
    forwarded.setdefault("application_name", "jitgate")
    return forwarded


def _peer_of(pipe: Pipe) -> str:
    addr = pipe.transport.get_extra_info("peername") if pipe.transport is not None else None
    return f"{addr[0]}:{addr[1]}" if addr else ""


def _reject(pipe: Pipe, sqlstate: str, message: str, hint: str | None = None) -> None:
    pipe.write(p.error_response(sqlstate, message, hint=hint))
    pipe.close()


# Makes the session once the client and the upstream are logged in: (client, upstream,
# authorization, cancel key, client address).
NewSession = Callable[[Pipe, UpstreamSession, Authorization, tuple[int, int], str], Session]


class PgLogin:
    """Takes a new connection up to a logged-in `Session`, or refuses it with a reason."""

    def __init__(self, config: PgBrokerConfig, cp: ControlPlane, runtime: BrokerRuntime, recorder: RecorderProcess,
                 name: str, new_session: NewSession) -> None:
        self.config = config
        self.cp = cp
        self.runtime = runtime
        self.recorder = recorder
        self.name = name
        self.cancel_keys = CancelKeys()
        self._new_session = new_session

    async def admit(self, pipe: Pipe) -> Session | None:
        """The logged-in session; None when the connection was refused, dropped or only cancelled."""
        await asyncio.sleep(0)  # let connection_made run
        peer = _peer_of(pipe)
        refusals = self.runtime.refusals
        try:
            async with asyncio.timeout(self.config.login_timeout):
                return await self._login(pipe, peer)
        except Refusal as r:
            if r.audit or r.code == "session.refused":  # refused before authentication: counted, slowed
                refusals.refused(peer, r.code, r.user, r.resource, r.message, audited=not r.audit)
                await refusals.tarpit(peer)
            _reject(pipe, r.sqlstate, r.message, r.hint)
        except _Drop:
            pipe.abort()
        except p.ProtocolError as exc:
            _reject(pipe, exc.sqlstate, exc.message)
        except TimeoutError:
            _reject(pipe, "08P01", "login took too long; closing the connection")
        except (PipeClosed, ConnectionError, OSError):
            pipe.close()
        except Exception:  # never let one connection take the broker down
            log.exception("pg broker: login failed unexpectedly")
            _reject(pipe, "XX000", "internal broker error; the connection is closed")
        return None

    async def _read_startup(self, pipe: Pipe, reader: p.StartupReader) -> p.StartupEvent:
        while True:
            event = reader.next_event()
            if event is not None:
                return event
            reader.receive_data(await pipe.read())

    async def _login(self, pipe: Pipe, peer: str) -> Session | None:
        reader = p.StartupReader()
        tls = False
        ctx = self.config.ssl_context
        while True:
            event = await self._read_startup(pipe, reader)
            if isinstance(event, p.SSLRequest):
                if tls:
                    raise p.ProtocolError("SSLRequest received over TLS")
                if reader.pending or pipe.buffered:
                    raise _Drop()  # bytes before the handshake: an injection attempt (CVE-2021-23222)
                if ctx is None:
                    pipe.write(b"N")
                    continue
                pipe.write(b"S")
                await pipe.start_tls(ctx, server_side=True)
                tls = True
            elif isinstance(event, p.GSSENCRequest):
                if reader.pending or pipe.buffered:
                    raise _Drop()
                pipe.write(b"N")
            elif isinstance(event, p.CancelRequest):
                await self.cancel_keys.forward(event)
                pipe.close()
                return None
            else:
                break
        params = event.params
        user = params.get("user", "")
        if self.config.require_tls and not tls:
            raise Refusal("28000", "jitgate requires TLS: connect with sslmode=require, or sslmode=verify-full "
                          "and the jitgate CA file as sslrootcert", "tls.required", user, user.rpartition("@")[2],
                          hint="psql \"sslmode=verify-full sslrootcert=ca.pem ...\"")
        try:
            role, resource = parse_user(user)
        except ValueError as exc:
            raise Refusal("28000", str(exc), "user.malformed", user) from None
        messages = p.MessageReader(max_length=_MAX_LOGIN_MESSAGE)
        messages.receive_data(reader.take_rest())
        options = [k for k in params if k.startswith("_pq_.")]
        if event.version & 0xFFFF or options:
            # The broker speaks 3.0 on both sides: say so, as PostgreSQL does to newer clients.
            pipe.write(p.negotiate_protocol_version(0, options))
        pipe.write(p.auth_request(p.AUTH_CLEARTEXT))
        msg = messages.next_message()
        while msg is None:
            messages.receive_data(await pipe.read())
            msg = messages.next_message()
        if msg.type != b"p":
            raise p.ProtocolError(f"expected a password message, got {msg.type!r}")
        token = msg.body.rstrip(b"\x00").decode("utf-8", "replace")
        if not token:
            raise Refusal("28P01", "password authentication failed: give the jitgate database token as the password",
                          "token.missing", user, resource)
        refusals = self.runtime.refusals
        counted = not refusals.claim_report(peer)  # past its individual audits: the gate counts it
        try:
            self.runtime.check_lock_state()  # fail closed: a broker blind to locks opens nothing new
            auth = await self.cp.authorize_session(kind="postgres", resource=resource, role=role, db_token=token,
                                                   client_address=peer, channel="pg", refusal_counted=counted)
        except ControlPlaneError as exc:
            raise _refusal_from_cp(exc, user, resource, counted) from None
        if not counted:
            refusals.release_report(peer)
        try:
            return await self._open_session(pipe, auth, role, params, peer, user)
        except BaseException as exc:
            # The control plane opened a session: tell it this one never started (in the
            # background, so a login timeout's cancellation cannot swallow the report).
            why = exc.message if isinstance(exc, Refusal) else type(exc).__name__
            log.info("session %s ended before it started: %s", auth.session_id, why)
            self.runtime.spawn(self.runtime.report_end(
                end_report(auth.session_id, "error", 0, 0, "", "", self.runtime.hub.clock.now())))
            raise

    async def _open_session(self, pipe: Pipe, auth: Authorization, role: str, params: dict[str, str], peer: str,
                            user: str) -> Session:
        """After authorization: upstream login, cancel key, recording. Refusal when any fails."""
        resource = auth.resource
        if auth.expires_at <= self.runtime.hub.clock.now():
            raise Refusal("28000", f"jitgate refused access: the grant for {resource} has expired",
                          "grant.expired", user, resource)
        forwarded = _forwarded_params(params)
        upstream = await self._upstream(auth, role, params, forwarded)
        key = self.cancel_keys.new_key(upstream)
        session = self._new_session(pipe, upstream, auth, key, peer)
        try:
            await self.recorder.open(session, {
                "user": auth.user, "resource": auth.resource, "role": auth.role, "grant_id": auth.grant_id,
                "database": auth.target.database or params.get("database", ""), "client_address": peer,
                "broker": self.name})
        except BaseException as exc:
            upstream.pipe.write(p.terminate())
            upstream.pipe.close()
            if isinstance(exc, RecordingError):
                log.error("session %s refused: its recording cannot be started: %s", auth.session_id, exc)
                raise Refusal("58030", f"jitgate cannot record this session, so it is refused ({exc})",
                              "recording.unavailable", user, resource, audit=False) from None
            raise
        # What the client set at startup (`options=-c ...`, application_name, ...) changes how the
        # session behaves upstream: it is on record before the first statement.
        self.recorder.note(auth.session_id, "startup parameters sent upstream: "
                           + json.dumps(forwarded, ensure_ascii=False, sort_keys=True))
        self.cancel_keys.add(key, upstream)
        return session

    async def _upstream(self, auth: Authorization, role: str, params: dict[str, str],
                        forwarded: dict[str, str]) -> UpstreamSession:
        try:
            login = self.config.credentials.resolve(auth.target.credentials, auth.role or role, auth.target.address)
        except CredentialError as exc:
            log.warning("session %s refused: credentials of %s: %s", auth.session_id, auth.resource, exc)
            raise Refusal("28000", f"jitgate cannot log in to {auth.resource}: {exc}", "credentials.unresolved",
                          auth.user, auth.resource, audit=False) from None
        database = auth.target.database or params.get("database") or role
        try:
            return await connect(auth.target.address, database, login, forwarded, self.config.upstream_timeout)
        except UpstreamError as exc:
            log.warning("session %s refused: upstream login to %s: %s", auth.session_id, auth.resource, exc.message)
            raise Refusal(exc.sqlstate, exc.message, "upstream.login_failed", auth.user, auth.resource,
                          audit=False) from None
