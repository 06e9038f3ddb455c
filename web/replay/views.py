"""What the recordings pages show, as plain data: recordings, live sessions, timelines, checks.

Every string here is shown by a Jinja template with autoescape on, so markup in a name,
a path or a statement stays text. Control and invisible characters are escaped here
(`jitgate.text.visible`): a browser would not act on ESC, but it would hide it, or turn
text around at U+202E. Terminal bytes never pass through this module (see `cast`).
"""
from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jitgate.text import visible
from policy.durations import format_duration
from recorder.events import Event, Kind
from recorder.reader import RecordingInfo
from recorder.replay import timeline
from recorder.verify import VerifyResult

TIMELINE_PAGE = 500  # events read for one timeline page (exec, sftp and database recordings)


def when(t: float | None) -> str:
    """A unix time as UTC text (the console shows every time in UTC)."""
    if not t:
        return ""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float | None) -> str:
    """A length of time as POLICY.md writes durations (`1h30m`, `45s`)."""
    if seconds is None:
        return ""
    return format_duration(dt.timedelta(seconds=max(int(seconds), 0)))


def offset(t: float) -> str:
    """A time into a recording: `mm:ss.mmm` (`h:mm:ss.mmm` past an hour)."""
    minutes, seconds = divmod(max(t, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:06.3f}" if hours else f"{minutes:02d}:{seconds:06.3f}"


@dataclass(frozen=True, slots=True)
class RecordingView:
    """One recording in a list, or at the top of its page."""

    ref: str
    session_id: str
    kind: str
    user: str
    where: str
    started: str
    length: str  # "" while live
    command: str
    live: bool
    end_reason: str
    size: str
    events: str

    @property
    def is_terminal(self) -> bool:
        return self.kind == Kind.TERMINAL.value


def recording_view(info: RecordingInfo, *, user: str = "", size: int | None = None) -> RecordingView:
    meta = info.metadata
    return RecordingView(
        ref=visible(info.ref), session_id=visible(info.session_id), kind=info.kind.value,
        user=visible(user or meta.get("user") or ""), where=visible(info.where), started=when(info.started_at),
        length=span(info.ended_at - info.started_at) if info.ended_at else "",
        command=visible(info.command or ""), live=not info.sealed, end_reason=visible(info.end_reason or ""),
        size="" if size is None else _bytes(size), events="" if info.events is None else str(info.events))


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


@dataclass(frozen=True, slots=True)
class LiveSessionView:
    """A live session: who, where, since when, the time left of its grant."""

    id: str
    user: str
    where: str
    kind: str
    broker: str
    client: str
    since: str
    running: str
    time_left: str  # "" when the grant's end is not known to the viewer
    ending_soon: bool


def live_session_view(s: Any, now: float, expires_at: float | None, *, soon: float = 300.0) -> LiveSessionView:
    """A `jitgate.v1.Session` (live) and its grant's end (unix time, None: unknown)."""
    started = s.started_at.ToDatetime(dt.UTC).timestamp() if s.HasField("started_at") else 0.0
    as_ = s.login or s.role
    left = None if expires_at is None else expires_at - now
    return LiveSessionView(
        id=visible(s.id), user=visible(s.user), where=visible(f"{as_}@{s.resource}" if as_ else s.resource),
        kind=visible(s.kind), broker=visible(s.broker), client=visible(s.client_address), since=when(started),
        running=span(now - started) if started else "",
        time_left="" if left is None else ("ended" if left <= 0 else span(left)),
        ending_soon=left is not None and left <= soon)


@dataclass(frozen=True, slots=True)
class TimelineRowView:
    at: str
    what: str
    detail: str
    duration_ms: str
    duration_value: float  # for the duration bar (a <meter>)
    amount: str
    status: str
    failed: bool


@dataclass(slots=True)
class TimelineView:
    """One page of an exec, sftp or database recording's timeline."""

    kind: str
    rows: list[TimelineRowView] = field(default_factory=list)
    page: int = 0
    more: bool = False  # another page follows
    longest_ms: float = 0.0
    statements: int = 0
    errors: int = 0
    total_ms: float = 0.0


def timeline_view(kind: Kind, events: Iterable[Event], *, page: int = 0,
                  page_events: int = TIMELINE_PAGE) -> TimelineView:
    """Page `page` of a recording's timeline: `page_events` events read, never the whole file."""
    it = iter(events)
    for _ in itertools.islice(it, page * page_events):
        pass
    chunk = list(itertools.islice(it, page_events))
    more = next(it, None) is not None
    view = TimelineView(kind=kind.value, page=page, more=more)
    for r in timeline(chunk):
        ms = r.duration_ms
        view.rows.append(TimelineRowView(
            at=offset(r.t), what=visible(r.what), detail=visible(r.detail),
            duration_ms="" if ms is None else f"{ms:.1f}", duration_value=ms or 0.0,
            amount=visible(r.amount), status=visible(r.status), failed=r.failed))
        if ms is not None:
            view.statements += 1
            view.total_ms += ms
            view.longest_ms = max(view.longest_ms, ms)
        view.errors += r.failed
    return view


@dataclass(frozen=True, slots=True)
class VerifyView:
    """`jitgate recordings verify` on the page: verified, unsealed or tampered, and why."""

    status: str  # verified | unsealed | tampered | not checked
    summary: str
    problems: list[str]
    notes: list[str]


def verify_view(result: VerifyResult) -> VerifyView:
    problems = [] if result.status == "verified" else [visible(p) for p in result.problems]
    return VerifyView(status=result.status, summary=visible(result.summary()), problems=problems,
                      notes=[visible(n) for n in result.notes])


def not_checked(why: str) -> VerifyView:
    return VerifyView(status="not checked", summary=visible(why), problems=[], notes=[])
