"""A live recording's events as Server-Sent Events for the watch page (web/static/js/live.js).

Every message is one `event:` name and one line of JSON `data:`:
- `o`: terminal output, or an exec session's stdout/stderr (terminal bytes: the page writes
  them to the terminal emulator only, never into HTML);
- `r`: the terminal's new size `[cols, rows]`;
- `line`: anything else as text (an sftp operation, a statement, an exit, a note), its
  control characters escaped here (`jitgate.text.visible`); the page shows it as text;
- `end`: the watch is over, and why (`{"why": ...}`), the last message of a stream.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from jitgate.text import visible
from recorder.events import DbStatement, Event, ExecData, ExecExit, Note, SftpOp, TerminalEvent
from recorder.replay import timeline
from web.replay.cast import resize_ok


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event. JSON with ensure_ascii holds no newline, so `data:` is one line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=True)}\n\n".encode("ascii")


def _text(ev: Event) -> str | None:
    """An event that is not terminal output as one line of text (None: nothing to show)."""
    if isinstance(ev, TerminalEvent):
        if ev.code == "m":
            return f"[jitgate] {ev.data}"
        return None
    if isinstance(ev, (ExecExit, SftpOp, DbStatement, Note)):
        rows = timeline([ev])
        if not rows:
            return None
        r = rows[0]
        extra = "  ".join(x for x in (f"{r.duration_ms:.1f} ms" if r.duration_ms is not None else "",
                                      r.amount, r.status) if x)
        return f"[{r.what}] {r.detail}" + (f"  ({extra})" if extra else "")
    return None


def feed_messages(events: Iterable[Event]) -> Iterator[bytes]:
    """The SSE messages of a live recording's events, in order (without the final `end`)."""
    for ev in events:
        if isinstance(ev, TerminalEvent) and ev.code == "o":
            yield sse("o", ev.data)
        elif isinstance(ev, TerminalEvent) and ev.code == "r":
            if resize_ok(ev.data):
                cols, _, rows = ev.data.partition("x")
                yield sse("r", [int(cols), int(rows)])
        elif isinstance(ev, ExecData):
            if ev.stream != "stdin":
                yield sse("o", ev.text())
        else:
            text = _text(ev)
            if text is not None:
                yield sse("line", {"t": round(ev.t or 0.0, 3), "text": visible(text)})


def end_message(why: str) -> bytes:
    return sse("end", {"why": visible(why)})
