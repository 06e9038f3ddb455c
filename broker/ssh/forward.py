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

import asyncssh

from broker.cpclient import Authorization, ControlPlaneError
from broker.monitor import Cut, utcnow
from broker.runtime import cut_summary
from broker.ssh.channel import (
    CLIENT_EXIT,
    ERROR,
    RECORDING_FAILED,
    ClientConnection,
    RelayedChannel,
    RelayHost,
    TargetSide,
    authorize,
    recording_problem,
)
from broker.ssh.upstream import UpstreamError
from recorder import Kind, RecordingError

log = logging.getLogger(__name__)


class _UpstreamTCP(TargetSide, asyncssh.SSHTCPSession):
    """The target side of a forwarded connection."""

    def __init__(self, down: ForwardSession) -> None:
        super().__init__(down)
        self._forward = down

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._forward.from_target(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forward.target_closed()


async def open_forward(broker: RelayHost, conn: ClientConnection, dest_host: str,
                       dest_port: int) -> ForwardSession:
    """Authorize, record, watch and open one forwarded connection; ChannelOpenError when refused."""
    try:
        auth = await authorize(broker, conn, "port_forwarding")
    except ControlPlaneError as exc:
        msg = ("the control plane is unreachable, so no new sessions can start" if exc.unavailable
               else exc.message)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"jitgate: {msg}") from None
    session = ForwardSession(broker, conn, auth, dest_host, dest_port)
    await session.open()
    return session


class ForwardSession(RelayedChannel, asyncssh.SSHTCPSession):
    """The user side of one forwarded TCP connection."""

    def __init__(self, broker: RelayHost, conn: ClientConnection, auth: Authorization, dest_host: str,
                 dest_port: int) -> None:
        super().__init__(broker, conn)
        self.auth: Authorization = auth
        self._dest = f"{dest_host}:{dest_port}"
        self._dest_host, self._dest_port = dest_host, dest_port
        self._chan: asyncssh.SSHTCPChannel | None = None
        self._up_chan: asyncssh.SSHTCPChannel | None = None

    async def open(self) -> None:
        auth = self.auth
        try:
            self.recording = self._broker.recordings.create(
                auth.session_id, Kind.EXEC, self._recording_meta(auth, "port_forwarding"),
                command=f"direct-tcpip {self._dest}", on_error=self._recording_failed)
        except RecordingError as exc:
            log.error("cannot record forwarding %s: %s", auth.session_id, exc)
            self.end_reason = RECORDING_FAILED
            self._fail(f"access refused: the broker cannot record this connection: {recording_problem(exc)}; "
                       "it was not opened", asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED)
        self._watch(auth)
        try:
            up_conn = await self._connect_target(auth)
            self._up_chan, _ = await up_conn.create_connection(
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
        self._broker.runtime.spawn(self._finish())
        raise asyncssh.ChannelOpenError(code, f"jitgate: {message}")

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

    def connection_lost(self, exc: Exception | None) -> None:
        if self._up_conn is not None:
            self._up_conn.close()
        self._broker.runtime.spawn(self._finish())

    # -------------------------------------------------------- target side

    def from_target(self, data: bytes) -> None:
        if self._chan is None or self._cutting or self.recording is None:
            return
        if not self._recorded(self.recording.write_output, data):
            return
        self._chan.write(data)
        self.bytes_out += len(data)

    def target_closed(self) -> None:
        if self._chan is not None and not self._cutting and not self._recording_stopped:
            self._chan.close()  # after the recording stopped, the cut closes it, after its disconnect

    # -------------------------------------------------------- cut and end

    async def _cut(self, cut: Cut) -> None:
        if self._cutting or self._finished:
            return
        self._cutting = True
        self.end_reason = cut.reason
        log.info("%s", cut_summary(self.auth.session_id, cut, self.monitor.deadline if self.monitor else None))
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
        await self._end()
