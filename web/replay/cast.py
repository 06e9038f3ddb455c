"""A terminal recording as the asciicast v2 the browser's player reads (web/static/js/replay.js).

What reaches the browser: output ("o"), resizes ("r") and jitgate's marks ("m": a warning
shown, an extension, a cut) with their times. Keystrokes ("i") stay out: the CLI's replay
plays output only too, and input holds what a terminal never echoed (a password typed at a
prompt). Output is terminal bytes for the terminal emulator; a mark is text shown beside it,
so its control characters are escaped here (`jitgate.text.visible`). The header carries the
size only: who, where and when are on the page, escaped by its template.

Bounded: a browser gets at most `max_bytes` of lines; past that a last mark says where the
replay was cut and what to use for the rest (`jitgate replay`, which streams any size).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from jitgate.text import visible
from recorder.events import Event, TerminalEvent
from recorder.header import RecordingHeader

MAX_BROWSER_BYTES = 32 * 1024 * 1024  # of asciicast lines sent to one browser replay
MAX_SIZE = 1000  # columns or rows a resize may name (more is not a terminal)


def _line(t: float, code: str, data: str) -> bytes:
    # ensure_ascii: every control and non-ASCII character as \uXXXX, so a line is one line.
    return json.dumps([round(t, 6), code, data], ensure_ascii=True).encode("ascii") + b"\n"


def header_line(header: RecordingHeader) -> bytes:
    size = {"width": min(max(header.width, 1), MAX_SIZE), "height": min(max(header.height, 1), MAX_SIZE)}
    return json.dumps({"version": 2, **size}).encode("ascii") + b"\n"


def resize_ok(data: str) -> bool:
    """A resize's data is `COLSxROWS` within bounds (anything else is dropped, not guessed at)."""
    cols, sep, rows = data.partition("x")
    return bool(sep) and cols.isdigit() and rows.isdigit() and 0 < int(cols) <= MAX_SIZE \
        and 0 < int(rows) <= MAX_SIZE


def cast_lines(header: RecordingHeader, events: Iterable[Event], *,
               max_bytes: int = MAX_BROWSER_BYTES) -> Iterator[bytes]:
    """The asciicast v2 lines (newline-terminated) of a terminal recording for the browser."""
    yield header_line(header)
    sent = 0
    last_t = 0.0
    for ev in events:
        if not isinstance(ev, TerminalEvent):
            continue
        t = ev.t or 0.0
        if ev.code == "o":
            line = _line(t, "o", ev.data)
        elif ev.code == "r" and resize_ok(ev.data):
            line = _line(t, "r", ev.data)
        elif ev.code == "m":
            line = _line(t, "m", visible(ev.data))
        else:
            continue  # "i" (keystrokes), malformed resizes, codes of later formats
        if sent + len(line) > max_bytes:
            yield _line(last_t, "m", f"replay cut here: the rest is over the browser's limit of "
                                     f"{max_bytes // (1024 * 1024)} MiB; `jitgate replay {header.ref}` "
                                     f"plays all of it")
            return
        sent += len(line)
        last_t = t
        yield line
