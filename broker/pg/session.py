"""One relayed PostgreSQL session: the hot path, recording, broker messages and the cut.

Teleport's `engine.go`: after `broker.pg.login` has authorized the client and
logged in upstream, a `Session` sends the client its greeting (AuthenticationOk,
the upstream's ParameterStatus, the broker's BackendKeyData, ReadyForQuery) and
relays both ways:

    client            Session                               upstream
    chunk      ->     sent on at once, kept for the tracker  ->
               <-     sent on at once, kept for the tracker  <-
                      every `record_interval`: the tracker walks the kept chunks,
                      finished statements go to the recording process
               <-     NoticeResponse (WARNING) `grace_period` before the deadline
               <-     ErrorResponse FATAL 57P01 at expiry or revocation, then close

Broker messages go in only at a backend message boundary. A session that can
no longer be recorded, or whose recording reached its bound, is cut the same
way (58030 / 54000); a client that breaks the protocol gets its ErrorResponse.
At the end the recording is sealed and the end reported (`BrokerRuntime.report_end`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Protocol

from broker.cpclient import Authorization
from broker.monitor import EXPIRED, REVOKED, Cut, MonitorHub, SessionMonitor, format_time
from broker.pg import protocol as p
from broker.pg.config import PgBrokerConfig
from broker.pg.pipe import Pipe
from broker.pg.recording import RecorderProcess
from broker.pg.tracker import ENDED, StatementTracker
from broker.pg.upstream import UpstreamSession, send_cancel
from broker.runtime import BrokerRuntime, cut_summary, end_report
from recorder import EndReason, RecordingError

log = logging.getLogger(__name__)

_TRACK_AFTER = 256 * 1024  # relayed bytes kept for the tracker before it walks them at once
_now = time.time


class SessionHost(Protocol):
    """What a session needs from its broker (`broker.pg.server.PgBroker`)."""

    config: PgBrokerConfig
    recorder: RecorderProcess
    hub: MonitorHub
    runtime: BrokerRuntime


def _discard(data: bytes) -> None:
    """Where a client's bytes go once nothing more of it may reach the upstream."""


class Session:
    """One relayed session: the hot path (`_c2s`, `_s2c`), recording and the cut."""

    def __init__(self, broker: SessionHost, client: Pipe, upstream: UpstreamSession, auth: Authorization,
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
    def last_activity(self) -> dt.datetime:
        """When the last statement finished (or the session started)."""
        return dt.datetime.fromtimestamp(self._last_activity, dt.UTC)

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
            self._last_activity = raw[-1][ENDED]  # type: ignore[assignment]
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
        log.info("%s", cut_summary(self.session_id, cut, self.monitor.deadline if self.monitor else None))
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
            on_cut=self._on_cut, on_warning=self._on_warning, on_extended=self._on_extended, user=auth.user,
            login=auth.role or auth.login)
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
        await self.broker.runtime.report_end(end_report(self.session_id, self.end_reason, self.bytes_in,
                                                        self.bytes_out, ref, final_hash, self.last_activity))
