"""Playing recordings back: terminals with their timing, the other kinds as timelines."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

from recorder.events import DbStatement, Event, ExecData, ExecExit, Note, SftpOp, TerminalEvent


def play_terminal(events: Iterable[Event], out: TextIO, *, speed: float = 1.0,
                  idle_limit: float | None = None, sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> int:
    """Write a terminal recording's output to `out` with its timing: gaps divided by
    `speed`, each gap first capped at `idle_limit` seconds. Returns output events written."""
    if speed <= 0:
        raise ValueError("speed must be above 0")
    if idle_limit is not None and idle_limit < 0:
        raise ValueError("idle limit must not be negative")
    start = clock()
    virtual = 0.0  # recording time after idle capping
    previous = 0.0
    written = 0
    for ev in events:
        if not isinstance(ev, TerminalEvent) or ev.code != "o":
            continue
        t = ev.t or 0.0
        gap = max(0.0, t - previous)
        previous = t
        virtual += gap if idle_limit is None else min(gap, idle_limit)
        delay = start + virtual / speed - clock()
        if delay > 0.002:  # below that, batching writes beats sleeping
            out.flush()
            sleep(delay)
        out.write(ev.data)
        written += 1
    out.flush()
    return written


@dataclass(slots=True)
class TimelineRow:
    """One line of a timeline: when, what, and the details of that kind."""

    t: float
    what: str  # stdout / stderr / stdin / exit / sftp op / statement / note
    detail: str
    duration_ms: float | None = None
    amount: str = ""  # bytes or rows
    status: str = ""  # command tag, exit status, error
    failed: bool = False  # a statement's error, a refused sftp operation, a non-zero exit or a signal


def _exec_rows(events: list[ExecData], flush_all: bool) -> list[TimelineRow]:
    """Chunks of one stream -> one row per line, timed at the line's first chunk."""
    rows: list[TimelineRow] = []
    buf, first_t = "", 0.0
    for ev in events:
        for piece in ev.text().splitlines(keepends=True):
            if not buf:
                first_t = ev.t or 0.0
            buf += piece
            if piece.endswith(("\n", "\r")):
                rows.append(TimelineRow(first_t, ev.stream, buf.rstrip("\r\n")))
                buf = ""
    if buf and flush_all:
        rows.append(TimelineRow(first_t, events[-1].stream, buf))
    return rows


def timeline(events: Iterable[Event]) -> list[TimelineRow]:
    """The rows of an exec, sftp or database recording, in time order."""
    rows: list[TimelineRow] = []
    streams: dict[str, list[ExecData]] = {}
    for ev in events:
        t = ev.t or 0.0
        if isinstance(ev, ExecData):
            streams.setdefault(ev.stream, []).append(ev)
        elif isinstance(ev, ExecExit):
            status = f"signal {ev.signal}" if ev.signal else f"exit {ev.status}"
            rows.append(TimelineRow(t, "exit", "", status=status, failed=bool(ev.signal) or ev.status not in (0, None)))
        elif isinstance(ev, SftpOp):
            detail = ev.path + (f" -> {ev.target}" if ev.target else "")
            if ev.flags:
                detail += f" ({ev.flags})"
            rows.append(TimelineRow(t, ev.op, detail, amount=f"{ev.bytes} B" if ev.bytes else "",
                                    status="ok" if ev.ok else f"failed: {ev.error or ''}".strip(), failed=not ev.ok))
        elif isinstance(ev, DbStatement):
            detail = " ".join(ev.text.split())
            if ev.parameters:
                detail += "  [" + ", ".join("NULL" if p is None else p for p in ev.parameters) + "]"
            status = ev.command_tag or ""
            failed = bool(ev.error_sqlstate or ev.error_message)
            if failed:
                status = f"ERROR {ev.error_sqlstate or ''}: {ev.error_message or ''}".strip()
            rows.append(TimelineRow(t, ev.protocol, detail, duration_ms=ev.duration_ms,
                                    amount="" if ev.rows is None else f"{ev.rows} rows", status=status,
                                    failed=failed))
        elif isinstance(ev, Note):
            rows.append(TimelineRow(t, "note", ev.text))
        elif isinstance(ev, TerminalEvent):
            if ev.code == "m":
                rows.append(TimelineRow(t, "note", ev.data))
    for chunks in streams.values():
        rows += _exec_rows(chunks, flush_all=True)
    rows.sort(key=lambda r: r.t)  # stable: same-time rows keep their order
    return rows


def terminal_text(events: Iterable[Event]) -> str:
    """All output of a terminal recording at once (an export, no timing)."""
    return "".join(ev.data for ev in events if isinstance(ev, TerminalEvent) and ev.code == "o")
