"""What every relayed SSH channel shares: session channels (`relay`) and forwards (`forward`).

A relayed channel is one jitgate session: authorized by the control plane for
its channel kind, recorded, watched by a monitor, relayed to the target through
the broker's own connection, and at its end sealed and reported. This module
holds the parts that are the same for both kinds:

- `RelayHost` / `ClientConnection`: what a channel needs from the broker and
  from the user's connection (`broker.ssh.server` provides both; the channels
  never import it, so there is no import cycle).
- `RelayedChannel`: the session's state, the recording guard (`_recorded`: a
  chunk the recording refuses is not relayed and the session is cut, fail
  closed), flow control tied across both sides, the monitor, and the end
  (`_end`: sealed, then reported through the broker's runtime).
- `TargetSide`: the target side's callbacks, handed to the user side.
- The recording's seal and the cut a stopped recording causes.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncssh

from broker.cpclient import Authorization, SshCredential
from broker.monitor import Cut, MonitorHub, SessionMonitor, utcnow
from broker.runtime import BrokerRuntime, ControlPlane, end_report
from broker.ssh.auth import Target
from broker.ssh.config import BrokerConfig
from broker.ssh.upstream import connect_upstream
from recorder import (
    EndReason,
    FileRecordingStore,
    RecordingError,
    RecordingLimitError,
    RecordingWriteError,
    RecordingWriter,
)
from recorder.limits import format_size

log = logging.getLogger(__name__)

CLIENT_EXIT = "client_exit"
ERROR = "error"
RECORDING_FAILED = EndReason.RECORDING_FAILED.value
RECORDING_LIMIT = EndReason.RECORDING_LIMIT.value


class ClientConnection(Protocol):
    """The user's SSH connection, as its channels see it (`broker.ssh.server.BrokerConnection`)."""

    client_address: str
    target: Target | None
    credential: SshCredential | None

    def disconnect(self, reason: str) -> None: ...

    def corked(self) -> AbstractContextManager[None]: ...


class RelayHost(Protocol):
    """The broker, as its channels see it (`broker.ssh.server.SSHBroker`)."""

    @property
    def cp(self) -> ControlPlane: ...

    @property
    def hub(self) -> MonitorHub: ...

    @property
    def config(self) -> BrokerConfig: ...

    @property
    def recordings(self) -> FileRecordingStore: ...

    @property
    def runtime(self) -> BrokerRuntime: ...

    def cutting(self) -> AbstractContextManager[None]: ...

    def after_cuts(self) -> AbstractAsyncContextManager[None]: ...

    def when_told(self, action: Callable[[], None]) -> None: ...

    async def report_refusal(self, conn: Any, code: str, message: str) -> None: ...


async def authorize(broker: RelayHost, conn: ClientConnection, channel: str) -> Authorization:
    """AuthorizeSession for one channel of this connection (ControlPlaneError when refused)."""
    assert conn.target is not None and conn.credential is not None
    broker.runtime.check_lock_state()  # fail closed: a broker blind to locks opens nothing new
    return await broker.cp.authorize_session(
        kind="ssh", resource=conn.target.resource, login=conn.target.login,
        client_address=conn.client_address, channel=channel, ssh=conn.credential)


@dataclass(frozen=True)
class SealedRecording:
    """What a session's end reports of its recording."""

    ref: str
    final_hash: str  # the seal's; unsealed: the chain head of what reached the disk
    sealed: bool


async def seal_recording(recording: RecordingWriter | None, reason: str, session_id: str) -> SealedRecording:
    """Close `recording` with end `reason`.

    A recording that cannot be sealed is logged and reported unsealed, with the hash
    of what reached the disk (it verifies as intact up to there)."""
    if recording is None:
        return SealedRecording("", "", sealed=False)
    try:
        seal = await recording.close(EndReason(reason))
        return SealedRecording(recording.ref, seal.final_hash, sealed=True)
    except (RecordingError, OSError, ValueError) as exc:
        log.error("cannot seal recording of session %s: %s", session_id, exc)
        return SealedRecording(recording.ref, recording.written_hash, sealed=False)


def end_reason_after_seal(reason: str, sealed: SealedRecording) -> str:
    """A session that ended by itself but whose recording could not be sealed ended in
    `recording_failed`: the control plane must not see a plain `client_exit`."""
    return RECORDING_FAILED if reason == CLIENT_EXIT and sealed.ref and not sealed.sealed else reason


def recording_problem(exc: RecordingError) -> str:
    """Why a recording stopped, in words for the user."""
    return exc.problem if isinstance(exc, RecordingWriteError) else "its recording failed"


def recording_cut(exc: RecordingError) -> Cut:
    """The cut of a session whose recording stopped: `recording_limit` or `recording_failed`."""
    if isinstance(exc, RecordingLimitError):
        return Cut(RECORDING_LIMIT, f"jitgate: this session reached the broker's recording limit of "
                                    f"{format_size(exc.limit)}; closing it", utcnow())
    return Cut(RECORDING_FAILED, f"jitgate: the broker can no longer record this session "
                                 f"({recording_problem(exc)}); closing it", utcnow())


class RelayedChannel:
    """The state and the shared steps of one relayed channel (mixed into an asyncssh session class)."""

    def __init__(self, broker: RelayHost, conn: ClientConnection) -> None:
        self._broker = broker
        self._conn = conn
        self.auth: Authorization | None = None
        self.recording: RecordingWriter | None = None
        self.monitor: SessionMonitor | None = None
        self.end_reason = CLIENT_EXIT
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_activity = utcnow()
        self._chan: Any = None  # the user's channel
        self._up_conn: asyncssh.SSHClientConnection | None = None
        self._up_chan: Any = None  # the target's channel
        self._cutting = False
        self._finished = False
        self._recording_stopped = False

    @property
    def session_id(self) -> str:
        return self.auth.session_id if self.auth is not None else ""

    def _recording_meta(self, auth: Authorization, channel: str) -> dict[str, str]:
        return {"user": auth.user, "resource": auth.resource, "login": auth.login, "grant_id": auth.grant_id,
                "client": self._conn.client_address, "broker": self._broker.cp.name, "channel": channel}

    def _watch(self, auth: Authorization, on_notice: Callable[[str], None] | None = None) -> None:
        """Start the session's monitor (before the target is reached: a revocation during the
        connect already cuts, and the deadline holds from the first byte); it is live from now."""
        self.monitor = self._broker.hub.start_monitor(
            session_id=auth.session_id, grant_id=auth.grant_id, resource=auth.resource,
            expires_at=auth.expires_at, grace_period=auth.grace_period,
            on_cut=self._cut, on_cut_now=self._cut_now, on_warning=on_notice, on_extended=on_notice, user=auth.user,
            login=auth.login or auth.role)
        self._broker.runtime.sessions.add(self)

    async def _connect_target(self, auth: Authorization) -> asyncssh.SSHClientConnection:
        """The broker's own connection to the target, as the approved login."""
        self._up_conn = await connect_upstream(self._broker.cp, auth.session_id, auth.target,  # type: ignore[arg-type]
                                               auth.login)
        return self._up_conn

    async def _cut(self, cut: Cut) -> None:
        raise NotImplementedError

    def _cut_now(self, cut: Cut) -> None:
        """A cut's synchronous first part, started by a pass over many sessions; `_cut` does it
        all when this does nothing (the default)."""

    # -------------------------------------------------------- recording, fail closed

    def _recording_failed(self, exc: RecordingError) -> None:
        """Fail closed: a session whose recording stopped (storage, byte bound) is cut."""
        if self._recording_stopped:
            return
        self._recording_stopped = True
        log.error("recording of session %s stopped: %s", self.session_id or "?", exc)
        self._broker.runtime.spawn(self._cut(recording_cut(exc)))

    def _recorded(self, write: Callable[..., None], *args: Any) -> bool:
        """Run one recorder call; False (and the session is being cut) when the recording
        has stopped or refused it."""
        rec = self.recording
        if rec is None or rec.error is not None:
            return False
        try:
            write(*args)
        except RecordingError as exc:
            self._recording_failed(exc)
            return False
        return True

    # -------------------------------------------------------- flow control, tied across

    def pause_writing(self) -> None:
        """The user's side is full: stop reading from the target."""
        if self._up_chan is not None:
            self._up_chan.pause_reading()

    def resume_writing(self) -> None:
        if self._up_chan is not None:
            self._up_chan.resume_reading()

    def pause_user(self) -> None:
        """The target's side is full: stop reading from the user."""
        if self._chan is not None:
            self._chan.pause_reading()

    def resume_user(self) -> None:
        if self._chan is not None:
            self._chan.resume_reading()

    def target_eof(self) -> None:
        # After the recording stopped nothing more is relayed: an EOF would keep the cut's line out.
        if self._chan is not None and not self._cutting and not self._recording_stopped:
            self._chan.write_eof()

    # -------------------------------------------------------- end

    async def _end(self) -> None:
        """No longer live: the monitor stops, the recording is sealed, the end is reported."""
        assert self.auth is not None
        self._broker.runtime.sessions.discard(self)
        if self.monitor is not None:
            self.monitor.close()
        sealed = await seal_recording(self.recording, self.end_reason, self.auth.session_id)
        self.end_reason = end_reason_after_seal(self.end_reason, sealed)
        await self._broker.runtime.report_end(end_report(
            self.auth.session_id, self.end_reason, self.bytes_in, self.bytes_out, sealed.ref, sealed.final_hash,
            self.last_activity))


class TargetSide:
    """The target side of a relayed channel: hands its callbacks to the user side."""

    def __init__(self, down: RelayedChannel) -> None:
        self._down = down

    def eof_received(self) -> bool:
        self._down.target_eof()
        return True  # stay half-open: an exit status may come after EOF

    def pause_writing(self) -> None:
        self._down.pause_user()

    def resume_writing(self) -> None:
        self._down.resume_user()
