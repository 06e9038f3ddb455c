"""RecordingWriter: the one object a broker feeds while a session runs.

Built for the event loop's hot path: each call encodes one line, extends the
hash chain and appends to an in-memory buffer; nothing waits on the disk. The
buffer goes to the OS (a plain `write`, no fsync) when it is a second old or
large, so a crash loses at most about the last second; `close` fsyncs and seals.
A write error is kept and raised by the next call (and passed to `on_error`),
so a broker can fail closed and cut a session it can no longer record;
`commit()` hands the buffer to the OS at once and raises, for bytes that must be
on record before they are relayed (a kill -9 of the broker after it loses none).
`max_bytes` bounds what one recording writes (see recorder.limits).
Not thread-safe: call it from one thread (the event loop's).
"""
from __future__ import annotations

import asyncio
import codecs
import json
import time
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring  # the C escaper
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorder import chain
from recorder.events import (
    DbStatement,
    EndReason,
    Event,
    ExecData,
    ExecExit,
    Kind,
    Note,
    RecordingError,
    RecordingLimitError,
    SftpOp,
    TerminalEvent,
    exec_line,
    json_line,
    write_error,
)
from recorder.header import RecordingHeader
from recorder.limits import format_size

# Bytes each line adds to the chain file (64 hex digits and a newline).
_CHAIN_LINE = 65

_ALLOWED: dict[Kind, tuple[type, ...]] = {
    Kind.TERMINAL: (TerminalEvent, Note),
    Kind.EXEC: (ExecData, ExecExit, Note),
    Kind.SFTP: (SftpOp, Note),
    Kind.DB: (DbStatement, Note),
}


class RecordingSink(Protocol):
    """Where a writer's bytes go. A store implements one per recording."""

    def append(self, data: bytes, chain_lines: bytes) -> None:
        """Hand whole lines to the OS: data lines first, then their chain hashes."""

    def finish(self, seal: chain.Seal) -> None:
        """Make everything durable (fsync), append the seal, release resources."""

    def abort(self) -> None:
        """Release resources without sealing (the recording stays unsealed)."""


class RecordingWriter:
    """Writes one recording. Create it with a store's `create(...)`.

    Terminal: `write_output`, `write_input`, `resize`, `mark`.
    Exec: `write_output` (stdout), `write_stderr`, `write_input` (stdin), `write_event(ExecExit(...))`.
    Sftp: `write_event(SftpOp(...))`. Database: `write_event(DbStatement(...))`.
    Then `await close(end_reason)` (or `close_sync`) returns the signed `Seal`.
    """

    def __init__(
        self,
        sink: RecordingSink,
        header: RecordingHeader,
        signing_key: Ed25519PrivateKey,
        *,
        flush_interval: float = 1.0,
        max_buffer: int = 256 * 1024,
        on_error: Callable[[RecordingError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        keystrokes: bool = True,
        max_bytes: int | None = None,
    ) -> None:
        self._sink = sink
        self._header = header
        self._kind = header.kind
        self._terminal = header.kind is Kind.TERMINAL
        self._keystrokes = keystrokes
        self._key = signing_key
        self._interval = flush_interval
        self._max_buffer = max_buffer
        self._on_error = on_error
        self._max_bytes = max_bytes
        self._size = 0  # bytes of data and chain lines taken so far (the bound's measure)
        self._clock = clock
        self._wall = wall_clock
        self._t0 = clock()
        self._last_flush = self._t0
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # sync use: flushes happen on writes and at close
        self._timer: asyncio.TimerHandle | None = None
        self._data: list[bytes] = []
        self._chain: list[str] = []
        self._pending = 0
        self._hash = chain.genesis(header.ref)
        self._written_hash: bytes | None = None  # chain head of the lines the OS has
        self._events = -1  # the header line is not an event
        self.bytes_in = 0
        self.bytes_out = 0
        self._error: RecordingError | None = None
        self._seal: chain.Seal | None = None
        self._closing = False
        # Terminal streams are text: keep multi-byte characters split across reads whole.
        self._out_dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._in_dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._add(header.to_line(), self._t0)
        # The header now: a recording that cannot start fails here (raised, not reported
        # through `on_error`: the caller has no session to cut yet).
        self._on_error = None
        self.flush()
        if self._error is not None:
            raise self._error
        self._on_error = on_error

    # ------------------------------------------------------------ properties

    @property
    def ref(self) -> str:
        """The recording's reference (give it to the control plane)."""
        return self._header.ref

    @property
    def session_id(self) -> str:
        return self._header.session_id

    @property
    def kind(self) -> Kind:
        return self._kind

    @property
    def header(self) -> RecordingHeader:
        return self._header

    @property
    def events(self) -> int:
        """Events written so far (the header excluded)."""
        return self._events

    @property
    def last_hash(self) -> str:
        """The chain's current head (hex): a checkpoint a broker may report."""
        return self._hash.hex()

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def seal(self) -> chain.Seal | None:
        return self._seal

    @property
    def error(self) -> RecordingError | None:
        """What stopped this recording, if anything: a `RecordingWriteError` (it can no
        longer be written) or a `RecordingLimitError` (full; it can still be sealed)."""
        return self._error

    @property
    def written_hash(self) -> str:
        """Chain head (hex) of the lines already handed to the OS ("" before any): what a
        recording that cannot be sealed is intact up to."""
        return self._written_hash.hex() if self._written_hash is not None else ""

    @property
    def records_input(self) -> bool:
        """Whether `write_input` writes what the user sent (False: terminal keystrokes are
        only counted)."""
        return self._keystrokes or not self._terminal

    @property
    def max_bytes(self) -> int | None:
        return self._max_bytes

    # ------------------------------------------------------------ hot path

    def write_output(self, data: bytes) -> None:
        """Bytes from the target to the user (terminal output, exec stdout)."""
        self._check()
        now = self._clock()
        if self._terminal:
            text = self._out_dec.decode(data)
            if text:
                self._add(f'[{now - self._t0:.6f}, "o", {encode_basestring(text)}]', now)
        else:
            self._write_exec("stdout", data, now)
        self.bytes_out += len(data)

    def write_input(self, data: bytes) -> None:
        """Bytes from the user to the target (terminal keystrokes, exec stdin). Keystrokes
        are only counted when the recording was made with `keystrokes=False`."""
        self._check()
        now = self._clock()
        if self._terminal:
            if self._keystrokes:
                text = self._in_dec.decode(data)
                if text:
                    self._add(f'[{now - self._t0:.6f}, "i", {encode_basestring(text)}]', now)
        else:
            self._write_exec("stdin", data, now)
        self.bytes_in += len(data)

    def write_stderr(self, data: bytes) -> None:
        """Exec stderr (terminals have one output stream: use `write_output`)."""
        self._check()
        if self._terminal:
            raise RecordingError("a terminal recording has no separate stderr: use write_output")
        now = self._clock()
        self._write_exec("stderr", data, now)
        self.bytes_out += len(data)

    def resize(self, width: int, height: int) -> None:
        """The terminal's new size (an asciicast "r" event)."""
        self._check()
        if not self._terminal:
            raise RecordingError(f"resize is only for terminal recordings, not {self._kind.value}")
        now = self._clock()
        self._add(f'[{now - self._t0:.6f}, "r", "{int(width)}x{int(height)}"]', now)

    def elapsed(self) -> float:
        """Seconds since the recording started: an event's `t` for this moment."""
        return round(self._clock() - self._t0, 6)

    def mark(self, text: str, t: float | None = None) -> None:
        """A remark (warning shown, extension, cut): "m" marker or a note, at this moment or at
        `t` (`elapsed()` when it happened, for a remark written later)."""
        self.write_event(Note(text=text, t=t))

    def write_event(self, event: Event) -> None:
        """Any event allowed for this recording's kind; fills `event.t` when None."""
        self._check()
        if not isinstance(event, _ALLOWED[self._kind]):
            raise RecordingError(f"a {type(event).__name__} does not belong in a {self._kind.value} recording")
        now = self._clock()
        if event.t is None:
            if isinstance(event, DbStatement):
                # Placed at the statement's start, which came before it was written.
                event.t = round(max(0.0, event.started_at - self._header.started_at), 6)
            else:
                event.t = round(now - self._t0, 6)
        if isinstance(event, TerminalEvent):
            if event.code == "o":
                self.bytes_out += len(event.data.encode("utf-8"))
            elif event.code == "i":
                self.bytes_in += len(event.data.encode("utf-8"))
            self._add(event.to_line(), now)
            return
        if isinstance(event, Note) and self._terminal:
            self._add(TerminalEvent("m", event.text, event.t).to_line(), now)
            return
        if isinstance(event, ExecData):
            if event.stream == "stdin":
                self.bytes_in += len(event.data)
            else:
                self.bytes_out += len(event.data)
            self._add_raw(event.to_line_bytes(), now)
            return
        if isinstance(event, SftpOp):
            if event.op == "write":
                self.bytes_in += event.bytes
            elif event.op == "read":
                self.bytes_out += event.bytes
        elif isinstance(event, DbStatement):
            self.bytes_in += len(event.text.encode("utf-8"))
            self._add_raw(json_line(event.to_record()), now)
            return
        self._add(json.dumps(event.to_record(), ensure_ascii=False, separators=(",", ":")), now)

    def write_statement_lines(self, lines: Iterable[tuple[bytes, int]]) -> None:
        """Database statements in bulk: (line, bytes of statement text) pairs, each line
        `json_line(statement_record(...))` from `recorder.events` (what `write_event`
        would write for the statement).

        One call per batch: a database broker records every statement of every
        session, and per-event checks and object building were half the cost.
        """
        self._check()
        if self._kind is not Kind.DB:
            raise RecordingError(f"statements do not belong in a {self._kind.value} recording")
        h = self._hash
        data, hashes = self._data, self._chain
        link = chain.link
        size = count = text_bytes = 0
        room = None if self._max_bytes is None else self._max_bytes - self._size
        full = False
        for raw, text_len in lines:
            if room is not None:
                room -= len(raw) + 1 + _CHAIN_LINE
                if room < 0:
                    full = True  # this statement and the rest are refused below
                    break
            h = link(h, raw)
            data.append(raw)
            hashes.append(h.hex())
            size += len(raw)
            count += 1
            text_bytes += text_len
        self._hash = h
        self._events += count
        self.bytes_in += text_bytes
        self._pending += size
        self._size += size + count * (1 + _CHAIN_LINE)
        if full:
            self._reach_limit(self._clock())
        if count:
            self._flush_when_due(self._clock())

    def _write_exec(self, stream: str, data: bytes, now: float) -> None:
        self._add_raw(exec_line(stream, round(now - self._t0, 6), data), now)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing:
            raise RecordingError(f"recording {self.ref} is closed")

    def _add(self, line: str, now: float) -> None:
        self._add_raw(line.encode("utf-8"), now)

    def _add_raw(self, raw: bytes, now: float) -> None:
        """Chain and buffer one encoded line (refused past `max_bytes`)."""
        if self._max_bytes is not None and self._size + len(raw) + 1 + _CHAIN_LINE > self._max_bytes:
            self._reach_limit(now)
        self._append_line(raw, now)

    def _append_line(self, raw: bytes, now: float) -> None:
        """Chain and buffer one encoded line: the hash covers exactly these bytes."""
        self._hash = chain.link(self._hash, raw)
        self._data.append(raw)
        self._chain.append(self._hash.hex())
        self._pending += len(raw)
        self._size += len(raw) + 1 + _CHAIN_LINE
        self._events += 1
        self._flush_when_due(now)

    def _reach_limit(self, now: float) -> None:
        """The bound is reached: a note says so, nothing more is taken but the seal. Raises."""
        assert self._max_bytes is not None
        limit = format_size(self._max_bytes)
        text = f"the recording reached its limit of {limit}; the session is cut here"
        note = Note(text=text, t=round(now - self._t0, 6))
        line = (TerminalEvent("m", text, note.t).to_line() if self._terminal
                else json.dumps(note.to_record(), ensure_ascii=False, separators=(",", ":")))
        self._append_line(line.encode("utf-8"), now)  # within LIMIT_HEADROOM past the bound
        self.flush()
        if self._error is not None:  # the disk failed too: that error was reported and wins
            raise self._error
        self._error = RecordingLimitError(f"recording {self.ref} reached its limit of {limit}", self._max_bytes)
        if self._on_error is not None:
            self._on_error(self._error)
        raise self._error

    def _flush_when_due(self, now: float) -> None:
        if self._pending >= self._max_buffer or (self._loop is None and now - self._last_flush >= self._interval):
            self.flush()
        elif self._timer is None and self._loop is not None:
            # On a loop, the timer bounds the loss at `flush_interval` and keeps write
            # syscalls off the path of whatever produced the event.
            self._timer = self._loop.call_later(self._interval, self._timed_flush)

    # ------------------------------------------------------------ flushing

    def _timed_flush(self) -> None:
        self._timer = None
        if not self._closing:
            self.flush()

    def flush(self) -> None:
        """Hand buffered lines to the OS now (no fsync)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last_flush = self._clock()
        if not self._data or self._error is not None:
            return
        data = b"\n".join(self._data) + b"\n"
        lines = ("\n".join(self._chain) + "\n").encode("ascii")
        self._data.clear()
        self._chain.clear()
        self._pending = 0
        try:
            self._sink.append(data, lines)
        except OSError as exc:
            self._fail(exc)
            return
        self._written_hash = self._hash

    def commit(self) -> None:
        """Hand everything buffered to the OS now; raises the error that stopped the
        recording, if any. For bytes that must be on record before they are relayed."""
        if self._data:
            self.flush()
        if self._error is not None:
            raise self._error

    def _fail(self, exc: OSError) -> None:
        self._error = write_error(self.ref, exc)
        if self._on_error is not None:
            self._on_error(self._error)

    # ------------------------------------------------------------ closing

    def _prepare_seal(self, end_reason: EndReason | str) -> chain.Seal:
        reason = EndReason(end_reason).value  # ValueError for an unknown reason
        if self._closing:
            raise RecordingError(f"recording {self.ref} is already closing")
        if self._error is not None and not isinstance(self._error, RecordingLimitError):
            raise self._error
        if self._terminal and self._error is None:
            # Bytes held back waiting for the rest of a character: write what is left.
            now = self._clock()
            for code, dec in (("o", self._out_dec), ("i", self._in_dec)):
                text = dec.decode(b"", final=True)
                if text:
                    line = f'[{now - self._t0:.6f}, "{code}", {encode_basestring(text)}]'
                    self._append_line(line.encode(), now)
        self._closing = True
        limited = self._error
        self._error = None  # a full recording is still flushed and sealed
        self.flush()
        if self._error is not None:
            raise self._error
        self._error = limited
        seal = chain.Seal(
            ref=self.ref, session_id=self.session_id, kind=self._kind.value, events=self._events,
            bytes_in=self.bytes_in, bytes_out=self.bytes_out,
            started_at=self._header.started_at, ended_at=self._wall(), end_reason=reason,
            final_hash=self._hash.hex(), key_id=chain.key_id(self._key.public_key()),
        )
        return chain.sign_seal(seal, self._key)

    def _finish(self, seal: chain.Seal) -> chain.Seal:
        try:
            self._sink.finish(seal)
        except OSError as exc:
            # Raised to the caller of close (which may run in a thread: no `on_error` here).
            self._error = write_error(self.ref, exc)
            raise self._error from None
        self._seal = seal
        return seal

    async def close(self, end_reason: EndReason | str = EndReason.CLIENT_EXIT) -> chain.Seal:
        """Flush, fsync (off the event loop) and seal. Returns the seal; its
        `final_hash` is what the broker reports to the control plane."""
        if self._seal is not None:
            return self._seal
        seal = self._prepare_seal(end_reason)
        return await asyncio.to_thread(self._finish, seal)

    def close_sync(self, end_reason: EndReason | str = EndReason.CLIENT_EXIT) -> chain.Seal:
        """`close` for code without an event loop (blocks on fsync)."""
        if self._seal is not None:
            return self._seal
        return self._finish(self._prepare_seal(end_reason))

    def abort(self) -> None:
        """Stop without a seal (the recording verifies as unsealed). For shutdown paths
        that cannot seal; a normal end always calls `close`."""
        if self._closing:
            return
        self.flush()
        self._closing = True
        self._sink.abort()
