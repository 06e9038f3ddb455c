"""The PostgreSQL wire broker (asyncio; uvloop when available).

One connection, start to end:

    client                       broker                          control plane / upstream
    SSLRequest        ->  'S', TLS handshake (bytes sent before it: dropped)
    StartupMessage    ->  user = ROLE@RESOURCE (plaintext refused when TLS is required)
                      <-  AuthenticationCleartextPassword
    PasswordMessage   ->  token                        -> AuthorizeSession(postgres, resource, role, token)
                                                       -> upstream login as the role (SCRAM/md5/trust)
                      <-  AuthenticationOk, upstream ParameterStatus, BackendKeyData(pid, broker secret), ReadyForQuery
    ... relay: chunks forwarded unchanged; `StatementTracker` reads headers; statements recorded in batches ...
                      <-  NoticeResponse (WARNING) `grace_period` before the deadline
                      <-  ErrorResponse FATAL 57P01 at expiry or revocation, then close

A CancelRequest (plain or over TLS) carries the broker's secret; the broker maps
it to the upstream backend's own key and forwards it there.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Coroutine, Protocol

from broker.cpclient import Authorization, ControlPlaneError
from broker.monitor import EXPIRED, REVOKED, Cut, MonitorHub, SessionMonitor, format_time
from broker.pg import protocol as p
from broker.pg.config import PgBrokerConfig, parse_user
from broker.pg.credentials import CredentialError
from broker.pg.pipe import Pipe, PipeClosed
from broker.pg.recording import RecorderProcess
from broker.pg.tracker import StatementTracker
from broker.pg.upstream import UpstreamError, UpstreamSession, connect, send_cancel
from broker.refusals import RefusalGate, control_plane_sender
from broker.spool import EndReport, EndReportSpool
from recorder import EndReason, FileRecordingStore, RecordingError

log = logging.getLogger(__name__)

# Startup parameters never passed upstream: the broker sets user and database,
# and replication connections are not brokered.
_DROPPED_PARAMS = frozenset({"user", "database", "replication"})
_TRACK_AFTER = 256 * 1024  # relayed bytes kept for the tracker before it walks them at once
_now = time.time


class ControlPlane(Protocol):
    """What the broker needs from the control plane (`broker.cpclient.ControlPlaneClient`)."""

    name: str

    async def authorize_session(self, *, kind: str, resource: str, client_address: str, channel: str,
                                login: str = "", role: str = "", ssh: Any = None,
                                db_token: str = "", refusal_counted: bool = False) -> Authorization: ...

    async def report_session_end(self, session_id: str, reason: str, *, bytes_in: int = 0,
                                 bytes_out: int = 0, recording_ref: str = "", recording_hash: str = "",
                                 ended_at: dt.datetime | None = None,
                                 last_activity_at: dt.datetime | None = None) -> None: ...

    async def report_refusal(self, *, kind: str, user: str, resource: str, code: str, message: str,
                             client_address: str, count: int = 1, first_at: dt.datetime | None = None,
                             last_at: dt.datetime | None = None, codes: dict[str, int] | None = None,
                             samples: Any = ()) -> None: ...

    async def report_activity(self, session_id: str, last_activity_at: dt.datetime,
                              bytes_in: int = 0, bytes_out: int = 0) -> None: ...


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


def _discard(data: bytes) -> None:
    """Where a client's bytes go once nothing more of it may reach the upstream."""


class _Drop(Exception):
    """Close the connection without a word (bytes injected before the TLS handshake)."""


@dataclass(frozen=True)
class _CancelTarget:
    host: str
    port: int
    pid: int
    secret: int


def _refusal_from_cp(exc: ControlPlaneError, user: str, resource: str, counted: bool = False) -> Refusal:
    """`counted`: the control plane left the audit to the broker's refusal gate."""
    if exc.unavailable:
        return Refusal("57P03", "jitgate cannot reach its control plane, so access is refused; try again shortly",
                       "controlplane.unavailable", user, resource)
    sqlstate = "28P01" if exc.code == "UNAUTHENTICATED" else "28000"
    return Refusal(sqlstate, f"jitgate refused access: {exc.message}", "session.refused", user, resource,
                   audit=counted)


class PgBroker:
    """Accepts PostgreSQL clients, authorizes them with tokens, relays and records."""

    def __init__(self, config: PgBrokerConfig, control_plane: ControlPlane, recorder: RecorderProcess,
                 hub: MonitorHub | None = None) -> None:
        self.config = config
        self.cp = control_plane
        self.recorder = recorder
        self.hub = hub or MonitorHub()
        self._server: asyncio.AbstractServer | None = None
        self._cancel: dict[tuple[int, int], _CancelTarget] = {}
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: Any = None
        self._periodic_task: asyncio.Task[None] | None = None
        self.name: str = getattr(control_plane, "name", config.name)
        self.spool = EndReportSpool(recorder.data_dir)  # session ends the control plane does not have yet
        # Refusals before authentication: audited per source and window, failing sources slowed.
        self.refusals = RefusalGate("postgres", config.refusals, control_plane_sender(control_plane, "postgres"))
        recorder.on_behind = self._recording_behind
        self.address: tuple[str, int] | None = None

    @property
    def sessions(self) -> int:
        """Live relayed sessions."""
        return len(self._sessions)

    async def start(self, watch: bool = True) -> tuple[str, int]:
        """Subscribe to grant changes (extensions, revocations), listen; returns the bound (host, port)."""
        loop = asyncio.get_running_loop()
        # Before the recorder opens anything: recordings a crash left unsealed are reported ended.
        crashed = await asyncio.to_thread(self.spool.crashed_sessions, FileRecordingStore(self.recorder.data_dir),
                                          self.name, set())
        for report in crashed:
            log.warning("session %s was open when this broker last stopped unexpectedly; reporting it ended "
                        "in error (recording %s, unsealed)", report.session_id, report.recording_ref)
        if not self.recorder.alive:
            await self.recorder.start()
        if watch and hasattr(self.cp, "watch"):
            self._watcher = self.cp.watch(on_change=self.hub.apply, on_sync=self._on_sync,  # type: ignore[attr-defined]
                                          live_grants=self.hub.grant_ids)
        self._server = await loop.create_server(self._accept, self.config.host, self.config.port,
                                                reuse_address=True)
        sock = self._server.sockets[0]
        self.address = sock.getsockname()[:2]
        self._periodic_task = loop.create_task(self._periodic())
        self.refusals.start()
        if self._watcher is None:  # else the stream's first sync sends what a restart left pending
            self._track(self._send_pending())
        log.info("pg broker listening on %s:%s", *self.address)
        return self.address

    def _accept(self) -> Pipe:
        pipe = Pipe()
        self._track(self._handle(pipe))
        return pipe

    def _on_sync(self, snapshot: dict[str, Any]) -> None:
        """The grant stream (re)connected: the control plane is back, so ends it missed go now."""
        self.hub.sync(snapshot)
        self._track(self._send_pending())

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background; `stop` waits for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, cut live sessions (broker_shutdown) and wait for them."""
        if self._server is not None:
            self._server.close()
        for s in list(self._sessions):
            if s.monitor is not None:
                s.monitor.shutdown()
            else:
                s.close_now()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        if self._periodic_task is not None:
            self._periodic_task.cancel()
            await asyncio.gather(self._periodic_task, return_exceptions=True)
        await self._send_pending()
        await self.refusals.stop()
        await self.recorder.stop()
        if self._server is not None:
            await self._server.wait_closed()

    async def _periodic(self) -> None:
        """Report live sessions' activity; retry session ends the control plane missed."""
        while True:
            await asyncio.sleep(self.config.activity_interval)
            await self._send_pending()
            for s in list(self._sessions):
                try:
                    await self.cp.report_activity(
                        s.session_id, dt.datetime.fromtimestamp(s.last_activity, dt.timezone.utc),
                        bytes_in=s.bytes_in, bytes_out=s.bytes_out)
                except ControlPlaneError:
                    break

    async def report_end(self, report: EndReport) -> None:
        """Report a session's end; kept on disk and retried until the control plane has it."""
        try:
            self.spool.put(report)
        except OSError as exc:
            log.error("cannot spool the end of session %s: %s", report.session_id, exc)
        if not await self.spool.send(self.cp, report):
            log.warning("could not report the end of session %s (control plane unreachable); kept in %s",
                        report.session_id, self.spool.pending_dir)

    async def _send_pending(self) -> None:
        for report in self.spool.pending():
            if not await self.spool.send(self.cp, report):
                return  # unreachable: the next round tries again

    # ------------------------------------------------------------ one connection

    async def _handle(self, pipe: Pipe) -> None:
        await asyncio.sleep(0)  # let connection_made run
        peer = ""
        if pipe.transport is not None:
            addr = pipe.transport.get_extra_info("peername")
            peer = f"{addr[0]}:{addr[1]}" if addr else ""
        session: _Session | None = None
        try:
            async with asyncio.timeout(self.config.login_timeout):
                session = await self._login(pipe, peer)
        except Refusal as r:
            if r.audit or r.code == "session.refused":  # refused before authentication: counted, slowed
                self.refusals.refused(peer, r.code, r.user, r.resource, r.message, audited=not r.audit)
                await self.refusals.tarpit(peer)
            pipe.write(p.error_response(r.sqlstate, r.message, hint=r.hint))
            pipe.close()
            return
        except _Drop:
            pipe.abort()
            return
        except p.ProtocolError as exc:
            pipe.write(p.error_response(exc.sqlstate, exc.message))
            pipe.close()
            return
        except (PipeClosed, ConnectionError, TimeoutError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                pipe.write(p.error_response("08P01", "login took too long; closing the connection"))
            pipe.close()
            return
        except Exception:  # never let one connection take the broker down
            log.exception("pg broker: login failed unexpectedly")
            pipe.write(p.error_response("XX000", "internal broker error; the connection is closed"))
            pipe.close()
            return
        if session is None:
            return
        self._sessions.add(session)
        if self.recorder.behind:
            session.client.hold("recording")
        try:
            await session.run()
        except Exception:
            log.exception("pg broker: session %s failed", session.auth.session_id)
            session.close_now()
        finally:
            self._sessions.discard(session)
            self._cancel.pop(session.cancel_key, None)

    def _recording_behind(self, behind: bool) -> None:
        """While the recording process is behind, no client is read from: what is relayed
        never runs further ahead of what is recorded than the recorder's backlog."""
        for s in self._sessions:
            if behind:
                s.client.hold("recording")
            else:
                s.client.release("recording")
        if behind:
            log.warning("recording is behind (over %d bytes wait); clients are paused until it catches up",
                        self.recorder.backlog)
        else:
            log.info("recording caught up; clients are read again")

    async def _read_startup(self, pipe: Pipe, reader: p.StartupReader) -> p.StartupEvent:
        while True:
            event = reader.next_event()
            if event is not None:
                return event
            reader.receive_data(await pipe.read())

    async def _login(self, pipe: Pipe, peer: str) -> _Session | None:
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
                await self._forward_cancel(event)
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
        messages = p.MessageReader(max_length=4096)
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
        counted = not self.refusals.claim_report(peer)  # past its individual audits: the gate counts it
        try:
            auth = await self.cp.authorize_session(kind="postgres", resource=resource, role=role, db_token=token,
                                                   client_address=peer, channel="pg", refusal_counted=counted)
        except ControlPlaneError as exc:
            raise _refusal_from_cp(exc, user, resource, counted) from None
        if not counted:
            self.refusals.release_report(peer)
        try:
            return await self._open_session(pipe, auth, role, params, peer, user)
        except BaseException as exc:
            # The control plane opened a session: tell it this one never started (in the
            # background, so a login timeout's cancellation cannot swallow the report).
            why = exc.message if isinstance(exc, Refusal) else type(exc).__name__
            self._track(self._end_unstarted(auth, why))
            raise

    async def _open_session(self, pipe: Pipe, auth: Authorization, role: str, params: dict[str, str], peer: str,
                            user: str) -> _Session:
        """After authorization: upstream login, cancel key, recording. Refusal when any fails."""
        resource = auth.resource
        if auth.expires_at <= self.hub.clock.now():
            raise Refusal("28000", f"jitgate refused access: the grant for {resource} has expired",
                          "grant.expired", user, resource)
        forwarded = _forwarded_params(params)
        upstream = await self._upstream(auth, role, params, forwarded)
        pid = upstream.pid
        secret = secrets.randbits(32)
        while (pid, secret) in self._cancel:
            secret = secrets.randbits(32)
        session = _Session(self, pipe, upstream, auth, (pid, secret), peer)
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
        self._cancel[(pid, secret)] = _CancelTarget(upstream.host, upstream.port, upstream.pid, upstream.secret)
        return session

    async def _end_unstarted(self, auth: Authorization, why: str) -> None:
        try:
            await self.cp.report_session_end(auth.session_id, "error")
        except ControlPlaneError as exc:
            log.warning("could not report the end of session %s (%s): %s", auth.session_id, why, exc)

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

    async def _forward_cancel(self, event: p.CancelRequest) -> None:
        target = self._cancel.get((event.pid, event.secret))
        if target is None:
            return  # like PostgreSQL: an unknown key is ignored silently
        await send_cancel(target.host, target.port, target.pid, target.secret)


def _forwarded_params(params: dict[str, str]) -> dict[str, str]:
    """The client's startup parameters that go upstream (recorded as a note)."""
    forwarded = {k: v for k, v in params.items() if k not in _DROPPED_PARAMS and not k.startswith("_pq_.")}
    forwarded.setdefault("application_name", "jitgate")
    return forwarded


class _Session:
    """One relayed session: the hot path (`_c2s`, `_s2c`), recording and the cut."""

    def __init__(self, broker: PgBroker, client: Pipe, upstream: UpstreamSession, auth: Authorization,
                 cancel_key: tuple[int, int], peer: str) -> None:
        self.broker = broker
        self.recorder = broker.recorder
        self.session_id = auth.session_id
        self.client = client
        self.upstream = upstream
        self.auth = auth
        self.cancel_key = cancel_key
        self.peer = peer
        self.tracker = StatementTracker(max_message=broker.config.max_message)
        self.monitor: SessionMonitor | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.end_reason = EndReason.CLIENT_EXIT.value
        self._inject: list[bytes] = []
        self._dirty = False  # chunks or finished statements wait for the recorder's next pull
        self._chunks: list[tuple[bytes, bool, float]] = []  # relayed, not yet walked by the tracker
        self._kept = 0  # their bytes
        self._refused = False  # the tracker refused a chunk
        self._refusal: tuple[bool, p.ProtocolError] | None = None  # (from the client?, why)
        self._to_client = client.send  # plain or TLS, fixed once the login is done
        self._to_upstream = upstream.pipe.send
        self._closing = False
        self._last_activity = time.time()

    @property
    def last_activity(self) -> float:
        return self._last_activity

    # ------------------------------------------------------------ hot path

    # Each chunk is sent on at once and kept, with the time it passed, for the tracker,
    # which walks the kept chunks in one pass (`_track`): when the recorder pulls (every
    # `record_interval`), when more than _TRACK_AFTER bytes wait, and whenever the broker
    # needs the session's state now (a message to put in at a boundary, the end). Walking a
    # batch keeps the tracker's code and data in the CPU's caches: pgbench TPC-B-like, the
    # broker's user CPU went from 122-144 to 102-120 us per transaction against walking each
    # chunk as it passed (A/B, same machine). A chunk the tracker refuses (malformed,
    # oversized) ends the session then; PostgreSQL checks every message it runs itself.
    # _c2s and _s2c repeat a few lines rather than share a call: they run for every chunk.

    def _c2s(self, data: bytes) -> None:
        self._to_upstream(data)
        self._chunks.append((data, True, _now()))
        n = len(data)
        self.bytes_in += n
        self._kept += n
        if not self._dirty:
            self._dirty = True
            self.recorder.mark_dirty(self)
        if self._kept > _TRACK_AFTER:
            self._track()

    def _s2c(self, data: bytes) -> None:
        self._to_client(data)
        self._chunks.append((data, False, _now()))
        n = len(data)
        self.bytes_out += n
        self._kept += n
        if not self._dirty:
            self._dirty = True
            self.recorder.mark_dirty(self)
        if self._kept > _TRACK_AFTER or self._inject:
            self._track()
            if self._inject and self.tracker.server_at_boundary:
                self._flush_inject()
                if self._closing:
                    self.close_now()

    def _track(self) -> None:
        """Walk the kept chunks now: the tracker's state is then current."""
        chunks = self._chunks
        if not chunks:
            return
        self._chunks = []
        self._kept = 0
        if self._refused:
            return  # nothing after a refused chunk is walked: the session is ending
        refused = self.tracker.feed(chunks)
        if refused is not None:
            self._refused = True
            self._refusal = refused
            # On the loop's next turn: this may run inside the recorder's pull.
            asyncio.get_running_loop().call_soon(self._on_refused, *refused)

    def _on_refused(self, from_client: bool, exc: p.ProtocolError) -> None:
        if self._closing:
            return
        if from_client:
            self._protocol_error(exc)
        else:
            self.end_reason = EndReason.ERROR.value
            self.close_now()

    # ------------------------------------------------------------ recording (off the hot path)

    def take_statements(self) -> list[tuple[Any, ...]]:
        """The finished statements since the last pull (called by the recorder)."""
        self._dirty = False
        self._track()
        tracker = self.tracker
        raw = tracker.take_completed()
        if raw:
            self._last_activity = raw[-1][4]
        if tracker.in_flight:  # what was sent upstream is on record before its answer comes
            raw += tracker.take_sent()
        return raw

    def recording_failed(self, message: str) -> None:
        """Fail closed: a session that can no longer be recorded is ended."""
        if self._closing:
            return
        log.error("recording of session %s failed: %s", self.session_id, message)
        self._cut_unrecordable(EndReason.RECORDING_FAILED.value, p.error_response(
            "58030", f"jitgate can no longer record this session ({message}); closing it"))

    def recording_limit(self, message: str) -> None:
        """The session's recording reached `max_recording_bytes`: cut, so one user cannot fill the disk."""
        if self._closing:
            return
        log.warning("session %s cut: %s", self.session_id, message)
        self._cut_unrecordable(EndReason.RECORDING_LIMIT.value, p.error_response(
            "54000", f"jitgate closes this session: {message}",
            hint="open a new session (it is recorded afresh), or ask the broker's operator for a larger "
                 "--max-recording-bytes"))

    def _cut_unrecordable(self, reason: str, error: bytes) -> None:
        """Nothing more from the client reaches upstream; the client is told why, then closed."""
        self.end_reason = reason
        self.client.relay_to(_discard)
        self._say_and_close(error)
        asyncio.get_running_loop().call_later(self.broker.config.cut_wait, self.close_now)

    def _note(self, text: str) -> None:
        self.recorder.note(self.session_id, text)

    # ------------------------------------------------------------ messages from the broker

    def _flush_inject(self) -> None:
        data = b"".join(self._inject)
        self._inject.clear()
        self.client.write(data)

    def inject(self, data: bytes) -> None:
        """Send a broker message to the client at the next message boundary."""
        self._inject.append(data)
        self._track()
        if self.tracker.server_at_boundary:
            self._flush_inject()

    def _on_warning(self, line: str) -> None:
        self._note(line)
        self.inject(p.notice_response(line, "01000", "WARNING"))

    def _on_extended(self, line: str) -> None:
        self._note(line)
        self.inject(p.notice_response(line, "00000", "NOTICE"))

    async def _on_cut(self, cut: Cut) -> None:
        self.end_reason = cut.reason
        resource = self.auth.resource
        if cut.reason == EXPIRED:
            text = (f"access expired: your jitgate grant for {resource} ended at {format_time(self.monitor.deadline)}"
                    if self.monitor else f"access expired: your jitgate grant for {resource} ended")
            hint = f"ask for more time next time before it ends: jitgate extend {self.auth.grant_id}"
        elif cut.reason == REVOKED:
            text = f"access revoked: {cut.message.removeprefix('jitgate: ')}"
            hint = None
        else:
            text = "the jitgate broker is shutting down; the session is closed"
            hint = None
        self._note(cut.message)
        self._say_and_close(p.error_response("57P01", text, "FATAL", hint=hint))
        # Give the message a moment to reach a boundary before the hard close.
        deadline = asyncio.get_running_loop().time() + self.broker.config.cut_wait
        while self._inject and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        self.close_now()

    def _say_and_close(self, message: bytes) -> None:
        self._closing = True
        self.inject(message)
        if not self._inject:
            self.close_now()

    def _protocol_error(self, exc: p.ProtocolError) -> None:
        self.end_reason = EndReason.PROTOCOL_ERROR.value
        self._note(f"protocol error from the client: {exc.message}")
        self.client.relay_to(_discard)  # read nothing more from this client
        self._say_and_close(p.error_response(exc.sqlstate, exc.message, "FATAL"))
        if self._inject:
            asyncio.get_running_loop().call_later(self.broker.config.cut_wait, self.close_now)

    def _upstream_closed(self) -> None:
        """The upstream went away. If the client broke the protocol (PostgreSQL closes without a
        word on a bad message length), the client is told so and the recording says so, even
        when the upstream noticed before the broker's tracker walked those bytes."""
        if not self._closing:
            self._track()
            refused = self._refusal
            if refused is not None and refused[0]:
                self._protocol_error(refused[1])
        self.client.close()

    def close_now(self) -> None:
        """Close both sides (the upstream's running query is cancelled first)."""
        self._closing = True
        self._track()
        up = self.upstream
        if self.tracker.in_flight and up.pipe.transport is not None and not up.pipe.transport.is_closing():
            asyncio.get_running_loop().create_task(send_cancel(up.host, up.port, up.pid, up.secret))
        if self.tracker.client.at_boundary:
            up.pipe.write(p.terminate())
        up.pipe.close()
        self.client.close()

    # ------------------------------------------------------------ life

    async def run(self) -> None:
        auth = self.auth
        client, up = self.client, self.upstream.pipe
        client.peer, up.peer = up, client
        self.monitor = self.broker.hub.start_monitor(
            session_id=auth.session_id, grant_id=auth.grant_id, resource=auth.resource,
            expires_at=auth.expires_at, grace_period=auth.grace_period,
            on_cut=self._on_cut, on_warning=self._on_warning, on_extended=self._on_extended)
        early = client.take_buffer()
        late = up.take_buffer()
        client.relay_to(self._c2s)
        up.relay_to(self._s2c)
        client.on_close = up.close
        up.on_close = self._upstream_closed
        hello = [p.auth_request(p.AUTH_OK), *self.upstream.parameter_status, *self.upstream.notices,
                 p.backend_key_data(*self.cancel_key), p.ready_for_query(b"I")]
        client.write(b"".join(hello))
        if late:
            self._s2c(late)
        if early:
            self._c2s(early)
        await asyncio.wait({asyncio.ensure_future(asyncio.shield(client.closed)),
                            asyncio.ensure_future(asyncio.shield(up.closed))},
                           return_when=asyncio.FIRST_COMPLETED)
        self.close_now()
        await asyncio.gather(client.closed, up.closed)
        if self.monitor.cut is None:
            self.monitor.close()
        self._track()
        if self.tracker.in_flight:
            cut = self.monitor.cut
            self.tracker.abandon("57P01" if cut is not None else "08006",
                                 f"the session ended before the statement completed ({self.end_reason})")
            if self.tracker.completed and not self._dirty:
                self._dirty = True
                self.recorder.mark_dirty(self)
        await self._finish()

    async def _finish(self) -> None:
        ref = final_hash = ""
        try:
            ref, final_hash = await self.recorder.close(self, self.end_reason, self.bytes_in, self.bytes_out)
        except RecordingError as exc:
            log.error("could not seal the recording of session %s: %s", self.session_id, exc)
        await self.broker.report_end(EndReport(
            session_id=self.session_id, reason=self.end_reason, bytes_in=self.bytes_in, bytes_out=self.bytes_out,
            recording_ref=ref, recording_hash=final_hash, ended_at=dt.datetime.now(dt.timezone.utc).isoformat(),
            last_activity_at=dt.datetime.fromtimestamp(self._last_activity, dt.timezone.utc).isoformat()))
