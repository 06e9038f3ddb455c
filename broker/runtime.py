"""The life cycle both brokers share (SSH and PostgreSQL): one `BrokerRuntime` each.

    runtime = BrokerRuntime("ssh", cp, hub, refusal_limits, activity_interval, data_dir)
    await runtime.recover(store, broker_name)   # the spool; sessions a crash left open
    runtime.watch(after_sync=..., on_event=...) # grant changes -> the monitor hub
    runtime.start()                             # periodic rounds, the refusal gate
    runtime.spawn(coro)                         # a task the broker owns (stop waits for it)
    runtime.sessions.add(session)               # live: its activity goes to the control plane
    await runtime.report_end(end_report(...))   # spooled, sent, retried until acknowledged
    await runtime.stop(deadline)

What the broker owns beside its listener:
- Tasks: every background coroutine is kept referenced, its failure logged, and
  waited for (then cancelled) at stop.
- The event watch: `WatchEvents` changes go to the `MonitorHub` (extensions move
  deadlines, revocations cut); each (re)sync applies the snapshot, and, the
  control plane being back, sends the session ends it missed.
- Periodic rounds every `activity_interval`: the broker's own work first
  (`every_round`, e.g. the SSH broker's trust refresh), then the spooled session
  ends, then each live session's activity (`ReportActivity`).
- Session ends: written to the spool (`broker.spool`) before they are sent;
  one that the control plane cannot take now stays there and is sent again at
  the next re-sync and every round, for as long as it takes (a restart sends
  what is left too). One sweep at a time, and a report being sent is not sent
  again by a sweep.
- Lock state: `lockstate.LockState` knows how old the broker's view of locks is (fresh
  while the event stream is up, polled with ListLocks while it is down); past its bound
  `check_lock_state()` refuses new sessions (fail closed).
- Refusals before authentication: the `RefusalGate` (audited per source and
  window, failing sources slowed), started and stopped with the broker.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from broker.cpclient import ControlPlaneError, GrantChange
from broker.lockstate import LockState
from broker.monitor import Cut, MonitorHub, utcnow
from broker.refusals import RefusalGate, RefusalLimits, control_plane_sender
from broker.spool import EndReport, EndReportSpool
from broker.uploader import RecordingUploader
from recorder import FileRecordingStore
from recorder.events import storage_problem

log = logging.getLogger(__name__)


class ControlPlane(Protocol):
    """What a broker needs from the control plane (`broker.cpclient.ControlPlaneClient`)."""

    name: str

    async def authorize_session(self, *, kind: str, resource: str, client_address: str, channel: str,
                                login: str = "", role: str = "", ssh: Any = None,
                                db_token: str = "", refusal_counted: bool = False) -> Any: ...

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

    def watch(self, on_change: Callable[[GrantChange], Awaitable[None] | None],
              on_sync: Callable[[dict[str, GrantChange]], Awaitable[None] | None] | None = None,
              on_connection: Callable[[bool], Awaitable[None] | None] | None = None,
              on_event: Callable[[str], Awaitable[None] | None] | None = None,
              types: Any = (), live_grants: Callable[[], Any] | None = None,
              on_lock: Callable[[Any], Awaitable[None] | None] | None = None) -> Any: ...


class LiveSession(Protocol):
    """A live session as the periodic activity report sees it."""

    @property
    def session_id(self) -> str: ...  # "" until the control plane opened it

    @property
    def last_activity(self) -> dt.datetime: ...

    @property
    def bytes_in(self) -> int: ...

    @property
    def bytes_out(self) -> int: ...


def end_report(session_id: str, reason: str, bytes_in: int, bytes_out: int, recording_ref: str,
               recording_hash: str, last_activity: dt.datetime) -> EndReport:
    """The report of a session that ends now."""
    return EndReport(session_id=session_id, reason=reason, bytes_in=bytes_in, bytes_out=bytes_out,
                     recording_ref=recording_ref, recording_hash=recording_hash,
                     ended_at=utcnow().isoformat(), last_activity_at=last_activity.isoformat())


def cut_summary(session_id: str, cut: Cut, deadline: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """The broker's log line for a cut: how far from the session's deadline it landed.

    "session S cut: expired 12 ms after its deadline" (how late the broker's own timer cut),
    "session S cut: revoked 296 s before its deadline" (how much time the revocation took away)."""
    if deadline is None:
        return f"session {session_id} cut: {cut.reason}"
    late = ((now or utcnow()) - deadline).total_seconds()
    if late >= 0:
        return f"session {session_id} cut: {cut.reason} {late * 1000:.0f} ms after its deadline"
    return f"session {session_id} cut: {cut.reason} {-late:.0f} s before its deadline"


class BrokerRuntime:
    """Tasks, event watch, periodic rounds, session-end reports and the refusal gate of one broker."""

    def __init__(self, kind: str, cp: ControlPlane, hub: MonitorHub, refusal_limits: RefusalLimits,
                 activity_interval: float, data_dir: Path, lock_state: LockState | None = None) -> None:
        self.kind = kind
        self.lock_state = lock_state or LockState()  # fail closed when locks cannot be learned
        self.cp = cp
        self.hub = hub
        self.activity_interval = activity_interval
        self.data_dir = Path(data_dir)
        self.refusals = RefusalGate(kind, refusal_limits, control_plane_sender(cp, kind))
        self.sessions: set[LiveSession] = set()
        self.spool: EndReportSpool | None = None  # opened by `recover`
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: Any = None
        self._after_sync: Callable[[], Awaitable[Any]] | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._lock_poll: asyncio.Task[None] | None = None
        self._sweep = asyncio.Lock()  # one sweep of the spool at a time
        self._sending: set[str] = set()  # session ids whose end is being sent now
        # Recordings go on to the control plane's store while sessions run (broker/uploader.py);
        # a control-plane stand-in without the RecordingService (unit tests) uploads nothing.
        # JITGATE_UPLOAD_RECORDINGS=0 keeps them on this disk only (benchmarks' baseline, offline brokers).
        upload = hasattr(cp, "recordings") and os.environ.get("JITGATE_UPLOAD_RECORDINGS", "1") != "0"
        self.uploader: RecordingUploader | None = RecordingUploader(cp, self.data_dir) if upload else None
        self._uploading: asyncio.Task[None] | None = None

    # -------------------------------------------------------- tasks

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a task the broker owns (kept referenced, errors logged, waited for at stop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s broker task failed", self.kind, exc_info=task.exception())

    def check_lock_state(self) -> None:
        """Before a new session: ControlPlaneError `lock.stale` when the lock state is too old."""
        self.lock_state.check()

    # -------------------------------------------------------- life cycle

    async def recover(self, store: FileRecordingStore, broker_name: str) -> None:
        """Open the spool; recordings a crash left unsealed are reported ended (reason `error`).
        Runs before the broker records anything."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        spool = self.spool = EndReportSpool(self.data_dir)
        try:
            crashed = await asyncio.to_thread(spool.crashed_sessions, store, broker_name, set())
        except OSError as exc:  # e.g. a full disk: the broker does not start, and says why
            raise RuntimeError(f"cannot keep session ends in {self.data_dir}: {storage_problem(exc)}") from None
        for report in crashed:
            log.warning("session %s was open when this broker last stopped unexpectedly; reporting it ended "
                        "in error (recording %s, unsealed)", report.session_id, report.recording_ref)

    def watch(self, after_sync: Callable[[], Awaitable[Any]] | None = None,
              on_event: Callable[[str], Awaitable[None] | None] | None = None) -> None:
        """Subscribe to grant changes; `after_sync` runs after each (re)sync was applied."""
        self._after_sync = after_sync

        async def on_any_event(event_type: str) -> None:
            if event_type == "recording.watched" and self.uploader is not None:
                self.uploader.poke(probe=True)  # a live watch began: parts go at once, then small and often
            if on_event is not None:
                result = on_event(event_type)
                if result is not None:
                    await result

        self._watcher = self.cp.watch(on_change=self.hub.apply, on_sync=self._on_sync, on_event=on_any_event,
                                      on_connection=self.lock_state.stream, live_grants=self.hub.grant_ids,
                                      on_lock=self.hub.apply_lock)

    async def _on_sync(self, snapshot: dict[str, GrantChange]) -> None:
        """The grant stream (re)connected: the control plane is back, so ends it missed go now."""
        self.hub.sync(snapshot)
        self.spawn(self.send_pending())
        if self._after_sync is not None:
            await self._after_sync()

    def start(self, every_round: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Start the periodic rounds and the refusal gate (after the listener is up)."""
        self._periodic = asyncio.get_running_loop().create_task(self._rounds(every_round))
        self.refusals.start()
        if self.uploader is not None:
            self._uploading = asyncio.get_running_loop().create_task(self.uploader.run())
        if hasattr(self.cp, "list_locks"):  # test doubles without it: the stream alone keeps the state fresh
            self._lock_poll = asyncio.get_running_loop().create_task(self.lock_state.poll(self.cp))  # type: ignore[arg-type]
        if self._watcher is None:  # else the stream's first sync sends what a restart left pending
            self.spawn(self.send_pending())

    async def stop(self, deadline: float) -> None:
        """After the broker cut its sessions: wait for its tasks until `deadline` (loop time),
        cancel what is left, send what the spool holds once more, stop the refusal gate."""
        loop = asyncio.get_running_loop()
        if self._lock_poll is not None:
            self._lock_poll.cancel()
            await asyncio.gather(self._lock_poll, return_exceptions=True)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(0.1, deadline - loop.time()))
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        if self._periodic is not None:
            self._periodic.cancel()
            await asyncio.gather(self._periodic, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await self.send_pending()
        if self._uploading is not None:
            self._uploading.cancel()
            await asyncio.gather(self._uploading, return_exceptions=True)
            assert self.uploader is not None
            await self.uploader.drain(timeout=max(2.0, deadline - loop.time()))
        await self.refusals.stop()

    async def _rounds(self, every_round: Callable[[], Awaitable[Any]] | None) -> None:
        while True:
            await asyncio.sleep(self.activity_interval)
            if every_round is not None:
                await every_round()
            await self.send_pending()
            await self.report_activity()

    async def report_activity(self) -> None:
        """Each live session's last activity and byte counts (stops at an unreachable control plane)."""
        for s in list(self.sessions):
            session_id = s.session_id
            if not session_id:
                continue
            try:
                await self.cp.report_activity(session_id, s.last_activity, bytes_in=s.bytes_in,
                                              bytes_out=s.bytes_out)
            except ControlPlaneError:
                break  # unreachable: try again next round

    # -------------------------------------------------------- session ends

    async def report_end(self, report: EndReport) -> None:
        """ReportSessionEnd; kept on disk and retried until the control plane has it."""
        assert self.spool is not None, "recover() opens the spool at start"
        if self.uploader is not None and report.recording_ref:
            self.uploader.poke(report.recording_ref)  # the recording is sealed: on to the store now
        try:
            self.spool.put(report)
        except OSError as exc:
            log.error("cannot spool the end of session %s: %s", report.session_id, exc)
        if not await self._send(report):
            log.warning("could not report the end of session %s (control plane unreachable); kept in %s, "
                        "sent when it is back", report.session_id, self.spool.pending_dir)

    async def send_pending(self) -> None:
        """Send the spooled session ends, oldest first; stops at an unreachable control plane."""
        if self.spool is None:
            return
        async with self._sweep:
            for report in self.spool.pending():
                if report.session_id in self._sending:
                    continue
                if not await self._send(report):
                    return  # unreachable: the next re-sync or round tries again

    async def _send(self, report: EndReport) -> bool:
        assert self.spool is not None
        self._sending.add(report.session_id)
        try:
            return await self.spool.send(self.cp, report)
        finally:
            self._sending.discard(report.session_id)
