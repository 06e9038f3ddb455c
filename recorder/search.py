"""Finding text in recordings: what was typed, shown, run, touched or queried, and when.

Terminal streams are searched as a whole, not event by event (keystrokes arrive
one per event and output is cut anywhere), with escape sequences removed and
input line editing (backspace, ctrl-U) applied, so `rm -rf` is found however it
was typed. Each hit carries its time offset in the recording.
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from recorder.events import DbStatement, ExecData, Note, SftpOp, TerminalEvent
from recorder.reader import RecordingReader

# CSI, OSC (ended by BEL or ST), two-byte escapes, and control characters but \t and \n.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")
_SNIPPET = 60


@dataclass(slots=True)
class SearchHit:
    """One place a recording matched."""

    ref: str
    session_id: str
    kind: str
    t: float  # seconds into the recording
    where: str  # "input", "output", "command", "stdout", "stderr", "stdin", "sftp", "statement", "note"
    snippet: str
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Stream:
    """Text of one stream with the time each piece of it arrived."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.offsets: list[int] = []  # where each chunk starts in the text
        self.times: list[float] = []
        self._length = 0

    def add(self, t: float, text: str) -> None:
        if text:
            self.offsets.append(self._length)
            self.times.append(t)
            self.chars.append(text)
            self._length += len(text)

    def text(self) -> str:
        return "".join(self.chars)

    def time_at(self, pos: int) -> float:
        return self.times[max(0, bisect.bisect_right(self.offsets, pos) - 1)]


class _InputLine:
    """Keystrokes with line editing applied, each kept character with its time."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.times: list[float] = []

    def add(self, t: float, text: str) -> None:
        text = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1bO.", "", text)  # arrow and function keys
        for ch in text:
            if ch in "\x7f\x08":
                if self.chars and self.chars[-1] != "\n":
                    self.chars.pop()
                    self.times.pop()
            elif ch == "\x15":  # ctrl-U: kill the line
                while self.chars and self.chars[-1] != "\n":
                    self.chars.pop()
                    self.times.pop()
            elif ch in "\r\n":
                self.chars.append("\n")
                self.times.append(t)
            elif ch == "\t" or ch >= " ":
                self.chars.append(ch)
                self.times.append(t)


def _clean(text: str) -> tuple[str, list[int], list[int]]:
    """Text without escapes and control characters, and where each kept piece was in the raw text."""
    pieces: list[str] = []
    clean_starts: list[int] = []
    raw_starts: list[int] = []
    pos = length = 0
    for m in _ESCAPES.finditer(text + "\x00"):  # the sentinel flushes the tail
        if m.start() > pos:
            clean_starts.append(length)
            raw_starts.append(pos)
            pieces.append(text[pos:m.start()])
            length += m.start() - pos
        pos = m.end()
    return "".join(pieces), clean_starts, raw_starts


def _raw_pos(clean_starts: list[int], raw_starts: list[int], pos: int) -> int:
    i = max(0, bisect.bisect_right(clean_starts, pos) - 1)
    return raw_starts[i] + pos - clean_starts[i] if raw_starts else 0


def _snippet(text: str, start: int, end: int) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    lo = max(line_start, start - _SNIPPET)
    hi = min(line_end, end + _SNIPPET)
    piece = text[lo:hi].replace("\t", " ").strip()
    return ("…" if lo > line_start else "") + piece + ("…" if hi < line_end else "")


def _stream_hits(pattern: re.Pattern[str], text: str, time_at: Any, where: str,
                 limit: int) -> list[tuple[float, str, str]]:
    hits: list[tuple[float, str, str]] = []
    seen_lines: set[int] = set()
    for m in pattern.finditer(text):
        line = text.rfind("\n", 0, m.start())
        if line in seen_lines:
            continue  # one hit per line is enough to point a person at it
        seen_lines.add(line)
        hits.append((time_at(m.start()), where, _snippet(text, m.start(), m.end())))
        if len(hits) >= limit:
            break
    return hits


def search_recording(reader: RecordingReader, text: str, *, ignore_case: bool = True,
                     limit: int = 20) -> list[SearchHit]:
    """Hits of `text` in one recording, in time order, at most `limit`."""
    pattern = re.compile(re.escape(text), re.IGNORECASE if ignore_case else 0)
    info = reader.info
    found: list[tuple[float, str, str]] = []
    header = reader.header()
    if header.command and pattern.search(header.command):
        found.append((0.0, "command", header.command))
    streams: dict[str, _Stream] = {}
    typed = _InputLine()
    for ev in reader.events():
        t = ev.t or 0.0
        if isinstance(ev, TerminalEvent):
            if ev.code == "o":
                streams.setdefault("output", _Stream()).add(t, ev.data)
            elif ev.code == "i":
                typed.add(t, ev.data)
            elif ev.code == "m" and pattern.search(ev.data):
                found.append((t, "note", ev.data))
        elif isinstance(ev, ExecData):
            streams.setdefault(ev.stream, _Stream()).add(t, ev.text())
        elif isinstance(ev, SftpOp):
            line = f"{ev.op} {ev.path}" + (f" -> {ev.target}" if ev.target else "")
            if pattern.search(line):
                found.append((t, "sftp", line))
        elif isinstance(ev, DbStatement):
            line = " ".join(ev.text.split())
            params = ", ".join("NULL" if p is None else p for p in ev.parameters or [])
            if pattern.search(line) or (params and pattern.search(params)):
                found.append((t, "statement", line + (f"  [{params}]" if params else "")))
        elif isinstance(ev, Note) and pattern.search(ev.text):
            found.append((t, "note", ev.text))
        if len(found) >= limit:
            break
    for where, stream in streams.items():
        clean, clean_starts, raw_starts = _clean(stream.text())
        found += _stream_hits(pattern, clean,
                              lambda p, s=stream, c=clean_starts, r=raw_starts: s.time_at(_raw_pos(c, r, p)),
                              where, limit)
    if typed.chars:
        found += _stream_hits(pattern, "".join(typed.chars), lambda p: typed.times[p], "input", limit)
    found.sort(key=lambda h: h[0])
    return [SearchHit(ref=info.ref, session_id=info.session_id, kind=info.kind.value, t=round(t, 3),
                      where=where, snippet=snippet, started_at=info.started_at)
            for t, where, snippet in found[:limit]]


def search(readers: Iterable[RecordingReader], text: str, *, ignore_case: bool = True,
           limit_per_recording: int = 20) -> list[SearchHit]:
    """Hits of `text` across recordings (give it `store.open(i.ref)` for each listed recording)."""
    if not text:
        raise ValueError("search text is empty")
    hits: list[SearchHit] = []
    for reader in readers:
        hits += search_recording(reader, text, ignore_case=ignore_case, limit=limit_per_recording)
    return hits

