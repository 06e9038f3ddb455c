"""One relayed session channel: user <-> broker <-> target, recorded and watched.

`BrokerSession` is the server side of one SSH session channel (asyncssh
`SSHServerSession`); when the client asks for a shell, a command or the
sftp subsystem it asks the control plane to authorize the session, starts
its recording and its monitor, opens the broker's own connection to the
target and an identical channel there (`UpstreamSession`). Bytes move both
ways untouched, with flow control tied across (a full writer pauses the
other side's reader); window changes, signals, breaks, EOF and the exit
status follow. Each chunk is given to the recorder before it is relayed:
what the user sends in an exec session (and typed keys when they are
recorded) is handed to the OS first (`commit`), so a kill -9 of the broker
loses nothing that reached the target; output is buffered by the writer
(at most about a second). A chunk the recording refuses (disk full, I/O
error, the recording byte bound) is not relayed and the session is cut.

A cut (expiry, revocation, shutdown, a recording that stopped) writes one
line the user sees (pty: into the terminal, else stderr), closes the channel
after that line was flushed, then disconnects.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

import asyncssh

from broker.cpclient import Authorization, ControlPlaneError
from broker.monitor import Cut, utcnow
from broker.runtime import cut_summary
from broker.ssh.channel import (
    ERROR,
    RECORDING_FAILED,
    ClientConnection,
    RelayedChannel,
    RelayHost,
    TargetSide,
    authorize,
    recording_problem,
)
from broker.ssh.cork import corked
from broker.ssh.options import ChannelRequest, channel_hint, control_plane_channel, refusal
from broker.ssh.sftp import SftpLog
from broker.ssh.upstream import UpstreamError
from recorder import ExecExit, Kind, RecordingError

log = logging.getLogger(__name__)

STDERR = asyncssh.EXTENDED_DATA_STDERR
# How long a cut waits for the user's client to acknowledge the final line.
CUT_FLUSH_TIMEOUT = 1.0


class SentCut(NamedTuple):
    """A cut whose line and close went out: what its rest needs."""

    cut: Cut
    started: dt.datetime  # when its line went out (the log line's "cut started")
    chan: Any  # the user's channel, closing
    mark_at: float | None  # the recording's time then: its mark says when the user saw the line


class UpstreamSession(TargetSide, asyncssh.SSHClientSession):
    """The target side of a relayed session channel; hands everything to its BrokerSession."""

    def __init__(self, down: BrokerSession) -> None:
        super().__init__(down)
        self._session = down
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str, str] | None = None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._session.from_target(data, datatype)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = (signal, core_dumped, msg, lang)

    def connection_lost(self, exc: Exception | None) -> None:
        self._session.target_closed(self.exit_status, self.exit_signal, exc)


class BrokerSession(RelayedChannel, asyncssh.SSHServerSession):
    """The user side of one relayed session channel."""

    def __init__(self, broker: RelayHost, conn: ClientConnection) -> None:
        super().__init__(broker, conn)
        self._chan: asyncssh.SSHServerChannel | None = None
        self._up_chan: asyncssh.SSHClientChannel | None = None
        self._term: tuple[str, tuple[int, int, int, int], Mapping[int, int]] | None = None
        self._command: str | None = None
        self._subsystem: str | None = None
        self._pending_eof = False
        self._early: list[tuple[bytes, asyncssh.DataType]] = []
        self._pending_size: tuple[int, int, int, int] | None = None
        self._sftp: SftpLog | None = None
        self._lost = False  # the user's channel is gone
        self._sent: SentCut | None = None  # a cut started by `_cut_now`, its rest owed

    # -------------------------------------------------------- what the client asks for

    @property
    def channel_kind(self) -> str:
        """What the recording calls this channel: `sftp`, `exec` or `shell`."""
        if self._subsystem is not None:
            return "sftp"
        return "exec" if self._command is not None else "shell"

    @property
    def request(self) -> ChannelRequest:
        return ChannelRequest(terminal=self._term is not None, command=self._command, subsystem=self._subsystem)

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self._chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        self._term = (term_type, term_size, term_modes)
        return True  # checked against the decision once the session is authorized

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self._subsystem = subsystem
        return True

    def x11_requested(self, *args: Any) -> bool:
        return False

    def agent_requested(self) -> bool:
        return False

    def session_started(self) -> None:
        assert self._chan is not None
        self._chan.pause_reading()  # until the target side exists
        self._broker.runtime.spawn(self._start())

    # -------------------------------------------------------- start

    async def _start(self) -> None:
        try:
            await self._start_inner()
        except Exception:  # never leave the user hanging on an unexpected failure
            log.exception("session start failed")
            self.end_reason = ERROR
            await self._refuse("internal error in the broker; the session could not start")

    async def _start_inner(self) -> None:
        channel = control_plane_channel(self.request)
        try:
            self.auth = await authorize(self._broker, self._conn, channel)
        except ControlPlaneError as exc:
            if exc.unavailable:
                msg = "the control plane is unreachable, so no new sessions can start; try again shortly"
            else:
                msg = exc.message
                hint = channel_hint(self.request)
                if hint and exc.reason == "session.channel_not_allowed":
                    msg = f"{msg} ({hint})"
            await self._refuse(f"access refused: {msg}")
            return
        if self._lost:  # the user left while the control plane answered: end it there
            await self._finish()
            return
        refused = refusal(self.request, self.auth.options)
        if refused:
            await self._broker.report_refusal(self._conn, "session.option_denied", refused)
            await self._refuse(refused)
            await self._finish_refused(ERROR)
            return
        try:
            self._start_recording(self.auth)
        except RecordingError as exc:
            log.error("cannot record session %s: %s", self.auth.session_id, exc)
            await self._refuse(f"access refused: the broker cannot record this session: "
                               f"{recording_problem(exc)}; nothing was run")
            await self._finish_refused(RECORDING_FAILED)
            return
        self._watch(self.auth, on_notice=self._notice)
        try:
            up_conn = await self._connect_target(self.auth)
            if self._cutting or self._finished:
                up_conn.close()
                return
            self._up_chan, _ = await up_conn.create_session(
                lambda: UpstreamSession(self), command=self._command, subsystem=self._subsystem,
                term_type=self._term[0] if self._term else None,
                term_size=self._term[1] if self._term else None,
                term_modes=self._term[2] if self._term else None,
                request_pty=bool(self._term), encoding=None)
        except (UpstreamError, ControlPlaneError) as exc:
            self.end_reason = ERROR
            await self._refuse(f"error: {exc.message}")
            return
        except (asyncssh.Error, OSError) as exc:
            self.end_reason = ERROR
            await self._refuse(f"error: the target refused the session: {exc}")
            return
        if self._cutting or self._finished:
            up_conn.close()
            return
        if self._pending_size is not None:
            self._up_chan.change_terminal_size(*self._pending_size)
        early, self._early = self._early, []
        for data, datatype in early:
            self.data_received(data, datatype)
        if self._pending_eof:
            self._up_chan.write_eof()
        assert self._chan is not None
        self._chan.resume_reading()

    def _start_recording(self, auth: Authorization) -> None:
        meta = self._recording_meta(auth, self.channel_kind)
        store = self._broker.recordings
        if self._term is not None:
            _, (width, height, _, _), _ = self._term
            self.recording = store.create(auth.session_id, Kind.TERMINAL, meta, width=width or 80,
                                          height=height or 24, command=self._command,
                                          env={"TERM": self._term[0]}, on_error=self._recording_failed,
                                          keystrokes=self._broker.config.record_keystrokes)
        elif self._subsystem is not None:
            self.recording = store.create(auth.session_id, Kind.SFTP, meta, on_error=self._recording_failed)
            writer = self.recording
            self._sftp = SftpLog(writer.write_event)
        else:
            self.recording = store.create(auth.session_id, Kind.EXEC, meta, command=self._command or "",
                                          on_error=self._recording_failed)

    def _write_input(self, data: bytes) -> None:
        rec = self.recording
        assert rec is not None
        if self._sftp is not None:
            self._sftp.client_data(data)
            return
        rec.write_input(data)
        if rec.records_input:
            rec.commit()  # on record before it is sent

    def _write_output(self, data: bytes, datatype: asyncssh.DataType) -> None:
        rec = self.recording
        assert rec is not None
        if self._sftp is not None:
            self._sftp.server_data(data)
            rec.commit()  # an operation the server answered is on record before the client sees it
        elif datatype == STDERR and self._term is None:
            rec.write_stderr(data)
        else:
            rec.write_output(data)

    # -------------------------------------------------------- user -> target

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._cutting:
            return
        if self._up_chan is None:
            # Arrived with the request, before the target side existed (reading is paused now).
            self._early.append((data, datatype))
            return
        if not self._recorded(self._write_input, data):
            return
        self._up_chan.write(data, datatype)
        self.bytes_in += len(data)
        self.last_activity = utcnow()

    def eof_received(self) -> bool:
        if self._up_chan is not None:
            self._up_chan.write_eof()
        else:
            self._pending_eof = True
        return True  # keep the channel half-open for the target's output

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self._up_chan is not None:
            self._up_chan.change_terminal_size(width, height, pixwidth, pixheight)
        else:
            self._pending_size = (width, height, pixwidth, pixheight)
        if self.recording is not None and self._term is not None:
            self._recorded(self.recording.resize, width, height)

    def signal_received(self, signal: str) -> None:
        if self._up_chan is not None:
            self._up_chan.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self._up_chan is not None:
            self._up_chan.send_break(msec)
        return True

    # -------------------------------------------------------- target -> user

    def from_target(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._chan is None or self._cutting:
            return
        if not self._recorded(self._write_output, data, datatype):
            return
        self._chan.write(data, datatype)
        self.bytes_out += len(data)

    def target_closed(self, status: int | None, signal: tuple[str, bool, str, str] | None,
                      exc: Exception | None) -> None:
        if self._cutting or self._recording_stopped or self._chan is None:
            return  # the cut closes the channel, after its line
        if self.recording is not None and self._term is None and self._sftp is None:
            self._recorded(self.recording.write_event, ExecExit(status=status, signal=signal[0] if signal else None))
        if exc is not None and status is None and signal is None:
            self.end_reason = ERROR
            self._chan.write_stderr(f"jitgate: connection to the target was lost: {exc}\r\n".encode())
        try:
            if signal is not None:
                self._chan.exit_with_signal(*signal)
            elif status is not None:
                self._chan.exit(status)
            else:
                self._chan.close()
        except OSError:
            pass

    # -------------------------------------------------------- notices and cuts

    def _line(self, text: str) -> None:
        """Show one line to the user: in the terminal for a pty, else on stderr."""
        if self._chan is None or self._chan.is_closing():
            return
        if self._term is not None:
            self._chan.write(f"\r\n{text}\r\n".encode())
        else:
            self._chan.write_stderr(f"{text}\n".encode())

    def _notice(self, text: str) -> None:
        self._line(text)
        if self.recording is not None:
            self._recorded(self.recording.mark, text)

    def _cut_now(self, cut: Cut) -> None:
        """The user's line and the channel's close, in the pass that decided the cut (a lock's:
        hundreds of sessions in one go); the monitor's task then runs `_cut` for the rest."""
        if self._cutting or self._finished:
            return
        self._cutting = True
        self._sent = self._send_cut(cut)

    async def _cut(self, cut: Cut) -> None:
        if self._finished:
            return
        sent, self._sent = self._sent, None
        if sent is None:
            if self._cutting:
                return  # cut already, or its rest runs elsewhere
            self._cutting = True
            sent = self._send_cut(cut)
        with self._broker.cutting():
            await self._disconnect_user(sent)
            # The rest once every user under way was told (`when_told`): measured (cProfile, 500
            # sessions at once), the kill's send, the recording's mark and the log line, each in
            # the middle of the other cuts, were about a third of a cut's own time.
            self._broker.when_told(functools.partial(self._after_user_told, sent))

    def _send_cut(self, cut: Cut) -> SentCut:
        """The line and CHANNEL_CLOSE; returns what the rest of the cut needs."""
        self.end_reason = cut.reason
        chan = self._chan
        sent = SentCut(cut, utcnow(), chan, self.recording.elapsed() if self.recording is not None else None)
        # The line and CHANNEL_CLOSE leave in one write: when many grants end in
        # the same second, sends are most of what a cut costs.
        with self._conn.corked():
            self._line(cut.message)
            if chan is not None:
                chan.close()  # sends the line first, then CHANNEL_CLOSE
        return sent

    async def _disconnect_user(self, sent: SentCut) -> None:
        """The DISCONNECT, once the client closed the channel (it has taken the line by then) or
        after CUT_FLUSH_TIMEOUT."""
        if sent.chan is not None:
            try:
                async with asyncio.timeout(CUT_FLUSH_TIMEOUT):  # no task per cut, unlike wait_for
                    await sent.chan.wait_closed()
            except (TimeoutError, OSError):
                pass
        self._conn.disconnect(sent.cut.message)

    def _after_user_told(self, sent: SentCut) -> None:
        """The rest of a cut: the recording's mark (at the time the line was sent), the target
        command's kill, the log line; the target side is closed by `_finish`, which also runs
        later (`after_cuts`)."""
        if self.recording is not None:
            self._recorded(self.recording.mark, sent.cut.message, sent.mark_at)
        self._stop_target_command()
        deadline = self.monitor.deadline if self.monitor else None
        log.info("%s (cut started %s)", cut_summary(self.session_id or "?", sent.cut, deadline, sent.started),
                 sent.started.isoformat())

    def _stop_target_command(self) -> None:
        """A cut ends the work too, not only the user's connection: without a terminal, sshd
        closes a command's pipes but signals nothing, so `sleep 600` (or a copy job) would go on
        running on the target. SIGKILL, because a cut may not be ignored (SIGHUP can be). OpenSSH's
        sshd kills the session's process group for it, except for a root login (it refuses session
        signals there and logs so); a command under a terminal also gets SIGHUP as the pty closes."""
        if self._up_chan is not None:  # (is_closing() is already true once the user's EOF went up)
            try:
                with corked(self._up_conn):  # asyncssh writes an SSH_MSG_IGNORE before it: one write
                    self._up_chan.send_signal("KILL")
            except (OSError, asyncssh.Error):
                pass  # the target side is already gone: nothing left to stop

    async def _refuse(self, message: str) -> None:
        """End the channel before it relayed anything, with a line on stderr and exit status 1."""
        if self._chan is None or self._chan.is_closing():
            return
        self._chan.write_stderr(f"jitgate: {message}\r\n".encode() if self._term else f"jitgate: {message}\n".encode())
        self._chan.exit(1)

    # -------------------------------------------------------- end

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        # After a cut the target side is closed by `_finish`, once the other cuts went out:
        # nothing is relayed once `_cutting` is set.
        if self._up_conn is not None and not self._cutting:
            self._up_conn.close()
        if self.auth is not None and not self._finished:
            self._broker.runtime.spawn(self._finish())

    async def _finish_refused(self, reason: str) -> None:
        self.end_reason = reason
        await self._finish()

    async def _finish(self) -> None:
        if self._finished or self.auth is None:
            return
        self._finished = True
        if not self._cutting:
            await self._end_session()
            return
        async with self._broker.after_cuts():
            if self._up_conn is not None:
                self._up_conn.close()
            await self._end_session()

    async def _end_session(self) -> None:
        if self._sftp is not None:
            self._recorded(self._sftp.close)
        await self._end()
