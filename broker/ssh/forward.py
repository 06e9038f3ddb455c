"""Local port forwarding (`ssh -L`, `ssh -W`) through the broker, when the grant allows it.

Each forwarded connection (a `direct-tcpip` channel) is its own jitgate session:
authorized with channel `port_forwarding` (refused unless the decision allows
it; the certificate's `permit-port-forwarding` is checked by asyncssh first),
recorded as an exec-kind recording (`command` = `direct-tcpip HOST:PORT`, the
bytes each way as stdin/stdout), watched by a monitor, and opened from the
target through the broker's own connection, so the destination is reached as
the target sees it. Remote forwarding (`ssh -R`), agent and X11 forwarding are
never relayed.

Recorded as session channels are (see relay): the user's bytes are on record
(handed to the OS) before they are sent on, every chunk is recorded before it
is relayed, and a recording that stops (disk full, I/O error, the byte bound)
cuts the connection with a disconnect message saying why and the end reason
`recording_failed` / `recording_limit`. A forward whose recording cannot even
be created is refused at open, and its session is reported ended at once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncssh

from broker.cpclient import Authorization, ControlPlaneError
from broker.monitor import Cut, SessionMonitor, utcnow
from broker.ssh.relay import (
    CLIENT_EXIT, ERROR, RECORDING_FAILED, end_reason_after_seal, recording_cut, recording_problem, seal_recording,
)
from broker.ssh.upstream import UpstreamError, connect_upstream
from recorder import Kind, RecordingError, RecordingWriter

if TYPE_CHECKING:
    from broker.ssh.server import BrokerConnection, SSHBroker

log = logging.getLogger(__name__)


class _UpstreamTCP(asyncssh.SSHTCPSession):
    def __init__(self, down: ForwardSession) -> None:
        self._down = down

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._down.from_target(data)

    def eof_received(self) -> bool:
        self._down.target_eof()
        return True

    def pause_writing(self) -> None:
        self._down.pause_user()

    def resume_writing(self) -> None:
        self._down.resume_user()

    def connection_lost(self, exc: Exception | None) -> None:
        self._down.target_closed()


async def open_forward(broker: SSHBroker, conn: BrokerConnection, dest_host: str, dest_port: int) -> ForwardSession:
    """Authorize, record, watch and open one forwarded connection; ChannelOpenError when refused."""
    assert conn.target is not None and conn.credential is not None
    try:
        auth = await broker.cp.authorize_session(
            kind="ssh", resource=conn.target.resource, login=conn.target.login,
            client_address=conn.client_address, channel="port_forwarding", ssh=conn.credential)
    except ControlPlaneError as exc:
        msg = ("the control plane is unreachable, so no new sessions can start" if exc.unavailable
               else exc.message)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"jitgate: {msg}") from None
    session = ForwardSession(broker, conn, auth, dest_host, dest_port)
    await session.open()
    return session


class ForwardSession(asyncssh.SSHTCPSession):
    """The user side of one forwarded TCP connection."""

    def __init__(self, broker: SSHBroker, conn: BrokerConnection, auth: Authorization, dest_host: str,
                 dest_port: int) -> None:
        self._broker = broker
        self._conn = conn
        self.auth = auth
        self._dest = f"{dest_host}:{dest_port}"
        self._dest_host, self._dest_port = dest_host, dest_port
        self._chan: asyncssh.SSHTCPChannel | None = None
        self._up_conn: asyncssh.SSHClientConnection | None = None
        self._up_chan: asyncssh.SSHTCPChannel | None = None
        self.recording: RecordingWriter | None = None
        self.monitor: SessionMonitor | None = None
        self.end_reason = CLIENT_EXIT
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_activity = utcnow()
        self._cutting = False
        self._finished = False
        self._recording_stopped = False

    async def open(self) -> None:
        auth = self.auth
        try:
            self.recording = self._broker.recordings.create(
                auth.session_id, Kind.EXEC,
                {"user": auth.user, "resource": auth.resource, "login": auth.login, "grant_id": auth.grant_id,
                 "client": self._conn.client_address, "broker": self._broker.cp.name, "channel": "port_forwarding"},
                command=f"direct-tcpip {self._dest}", on_error=self._recording_failed)
        except RecordingError as exc:
            log.error("cannot record forwarding %s: %s", auth.session_id, exc)
            self.end_reason = RECORDING_FAILED
            self._fail(f"access refused: the broker cannot record this connection: {recording_problem(exc)}; "
                       "it was not opened", asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED)
        self.monitor = self._broker.hub.start_monitor(
            session_id=auth.session_id, grant_id=auth.grant_id, resource=auth.resource,
            expires_at=auth.expires_at, grace_period=auth.grace_period, on_cut=self._cut)
        self._broker.sessions.add(self)  # type: ignore[arg-type]
        try:
            self._up_conn = await connect_upstream(self._broker.cp, auth.session_id, auth.target, auth.login)
            self._up_chan, _ = await self._up_conn.create_connection(
                lambda: _UpstreamTCP(self), self._dest_host, self._dest_port, encoding=None)
        except (UpstreamError, ControlPlaneError) as exc:
            self._fail(exc.message)
        except (asyncssh.Error, OSError) as exc:
            self._fail(f"the target could not open {self._dest}: {exc}")
        if self._cutting:
            self._fail("access ended while connecting")

    def _fail(self, message: str, code: int = asyncssh.OPEN_CONNECT_FAILED) -> None:
        """Refuse the channel with `message`; its end is reported in the background (the user
        is not kept waiting on the control plane)."""
        if self._up_conn is not None:
            self._up_conn.close()
        if not self._cutting and self.end_reason == CLIENT_EXIT:
            self.end_reason = ERROR
        self._broker.spawn(self._finish())
        raise asyncssh.ChannelOpenError(code, f"jitgate: {message}")

    def _recording_failed(self, exc: RecordingError) -> None:
        """Fail closed: a forward whose recording stopped (storage, byte bound) is cut."""
        if self._recording_stopped:
            return
        self._recording_stopped = True
        log.error("recording of forwarding %s stopped: %s", self.auth.session_id, exc)
        self._broker.spawn(self._cut(recording_cut(exc)))

    def _recorded(self, write: Callable[..., None], *args: object) -> bool:
        """Record one chunk; False (and the connection is being cut) when the recording has
        stopped or refused it."""
        rec = self.recording
        if rec is None or rec.error is not None:
            return False
        try:
            write(*args)
        except RecordingError as exc:
            self._recording_failed(exc)
            return False
        return True

    def _write_input(self, data: bytes) -> None:
        assert self.recording is not None
        self.recording.write_input(data)
        self.recording.commit()  # on record before it is sent

    # -------------------------------------------------------- user side

    def connection_made(self, chan: asyncssh.SSHTCPChannel) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._up_chan is None or self._cutting or not self._recorded(self._write_input, data):
            return
        self._up_chan.write(data)
        self.bytes_in += len(data)
        self.last_activity = utcnow()

    def eof_received(self) -> bool:
        if self._up_chan is not None:
            self._up_chan.write_eof()
        return True

    def pause_writing(self) -> None:
        if self._up_chan is not None:
            self._up_chan.pause_reading()

    def resume_writing(self) -> None:
        if self._up_chan is not None:
            self._up_chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._up_conn is not None:
            self._up_conn.close()
        self._broker.spawn(self._finish())

    # -------------------------------------------------------- target side

    def from_target(self, data: bytes) -> None:
        if self._chan is None or self._cutting or self.recording is None:
            return
        if not self._recorded(self.recording.write_output, data):
            return
        self._chan.write(data)
        self.bytes_out += len(data)

    def target_eof(self) -> None:
        if self._chan is not None and not self._cutting and not self._recording_stopped:
            self._chan.write_eof()

    def pause_user(self) -> None:
        if self._chan is not None:
            self._chan.pause_reading()

    def resume_user(self) -> None:
        if self._chan is not None:
            self._chan.resume_reading()

    def target_closed(self) -> None:
        if self._chan is not None and not self._cutting and not self._recording_stopped:
            self._chan.close()  # after the recording stopped, the cut closes it, after its disconnect

    # -------------------------------------------------------- cut and end

    async def _cut(self, cut: Cut) -> None:
        if self._cutting or self._finished:
            return
        self._cutting = True
        self.end_reason = cut.reason
        if self.recording is not None:
            self._recorded(self.recording.mark, cut.message)
        # The disconnect (with the line) goes before the channel closes: OpenSSH prints it
        # ("Received disconnect ...: jitgate: ..."), while `ssh -W` exits at its channel's close.
        self._conn.disconnect(cut.message)
        if self._chan is not None:
            self._chan.close()
        if self._up_conn is not None:
            self._up_conn.close()

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._broker.sessions.discard(self)  # type: ignore[arg-type]
        if self.monitor is not None:
            self.monitor.close()
        sealed = await seal_recording(self.recording, self.end_reason, self.auth.session_id)
        self.end_reason = end_reason_after_seal(self.end_reason, sealed)
        await self._broker.report_end(self.auth.session_id, self.end_reason, self.bytes_in, self.bytes_out,
                                      sealed.ref, sealed.final_hash, self.last_activity)
