"""The broker side of database recording: a child process that writes, fed in batches.

    recorder = RecorderProcess(data_dir, passphrase)
    await recorder.start()
    ref = await recorder.open(session_id, metadata)       # fail closed: raises RecordingError
    recorder.mark_dirty(session)                          # session.take_statements() is pulled soon
    recorder.note(session_id, "warning shown")
    ref, final_hash = await recorder.close(session_id, "expired", bytes_in, bytes_out)
    await recorder.stop()

Statements of every session are pulled every `interval` seconds and sent in one
frame, so the relay's loop pays a few microseconds per statement; decoding and
the hash-chained writing happen in `broker.pg.recordproc`.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Protocol

from broker.pg.recordproc import frame, read_frame
from recorder import RecordingError

log = logging.getLogger(__name__)


class Recorded(Protocol):
    """A session whose finished statements the recorder pulls."""

    session_id: str

    def take_statements(self) -> list[tuple[Any, ...]]: ...

    def recording_failed(self, message: str) -> None: ...


class RecorderProcess:
    """Owns the recording child process and talks to it."""

    def __init__(self, data_dir: str | Path, passphrase: bytes, interval: float = 0.05) -> None:
        self.data_dir = Path(data_dir)
        self._passphrase = passphrase
        self.interval = interval
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._dirty: dict[str, Recorded] = {}
        self._sessions: dict[str, Recorded] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: dict[tuple[str, str], asyncio.Future[tuple[Any, ...]]] = {}
        self.alive = False
        self.on_death: Callable[[], None] | None = None

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "broker.pg.recordproc", str(self.data_dir),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self.alive = True
        self._send(("init", self._passphrase))
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def _send(self, item: tuple[Any, ...]) -> None:
        if not self.alive or self._proc is None or self._proc.stdin is None:
            raise RecordingError("the recording process is not running")
        self._proc.stdin.write(frame(item))

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            item = await read_frame(self._proc.stdout)
            if item is None:
                break
            kind, sid = item[0], item[1]
            if kind == "error":
                waiter = self._waiters.pop(("opened", sid), None)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(RecordingError(item[2]))
                    continue
                session = self._sessions.get(sid)
                if session is not None:
                    session.recording_failed(item[2])
                continue
            waiter = self._waiters.pop((kind, sid), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(item)
        self.alive = False
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(RecordingError("the recording process ended"))
        self._waiters.clear()
        for session in list(self._sessions.values()):
            session.recording_failed("the recording process ended")
        if self.on_death is not None:
            self.on_death()

    async def _request(self, item: tuple[Any, ...], answer: str, timeout: float = 30.0) -> tuple[Any, ...]:
        fut: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self._waiters[(answer, item[1])] = fut
        self._send(item)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._waiters.pop((answer, item[1]), None)
            raise RecordingError("the recording process did not answer") from None

    async def open(self, session: Recorded, metadata: dict[str, Any]) -> str:
        """Start the recording of a session; its reference. RecordingError when it cannot be recorded."""
        reply = await self._request(("open", session.session_id, metadata), "opened")
        self._sessions[session.session_id] = session
        return str(reply[2])

    def mark_dirty(self, session: Recorded) -> None:
        """The session has finished statements; they are pulled within `interval` seconds."""
        self._dirty[session.session_id] = session
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Send every dirty session's finished statements now, in one frame."""
        self._timer = None
        if not self._dirty:
            return
        batch = [(sid, s.take_statements()) for sid, s in self._dirty.items()]
        self._dirty.clear()
        try:
            self._send(("stmts", batch))
        except RecordingError as exc:
            for sid, _ in batch:
                session = self._sessions.get(sid)
                if session is not None:
                    session.recording_failed(str(exc))

    def note(self, session_id: str, text: str) -> None:
        """A remark in the recording (warning shown, extension, cut), after what was pulled so far."""
        session = self._sessions.get(session_id)
        if session is not None and session_id in self._dirty:
            self.flush()
        try:
            self._send(("note", session_id, text))
        except RecordingError:
            pass

    async def close(self, session: Recorded, end_reason: str, bytes_in: int, bytes_out: int) -> tuple[str, str]:
        """Seal a session's recording (after its last statements); (ref, final hash)."""
        sid = session.session_id
        if sid in self._dirty:
            self.flush()
        self._sessions.pop(sid, None)
        reply = await self._request(("close", sid, end_reason, bytes_in, bytes_out), "closed")
        return str(reply[2]), str(reply[3])

    async def stop(self, timeout: float = 15.0) -> None:
        """Flush, let the child seal what is open, and wait for it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.alive:
            self.flush()
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
