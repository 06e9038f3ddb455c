"""The console's watch-and-replay conversions, on real recordings made by the recorder.

Terminal recordings -> the asciicast v2 the browser's player reads (checked by asciinema
itself), live events -> Server-Sent Events, exec/sftp/database recordings -> timeline pages,
verification -> what the page says; and the vendored player files against their manifest.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jitgate.v1 import types_pb2
from recorder import DbStatement, FileRecordingStore, Kind, Note, SftpOp
from recorder.replay import terminal_text
from tests.recorder.helpers import make_all_kinds, make_terminal
from tests.support import require
from web.replay.cast import cast_lines
from web.replay.feed import end_message, feed_messages
from web.replay.views import live_session_view, timeline_view, verify_view

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> FileRecordingStore:
    return FileRecordingStore(data_dir, passphrase=b"web replay test passphrase")


HOSTILE = "\x1b]0;pwned\x07<script>alert(1)</script>\u202e"


def _cast(store: FileRecordingStore, ref: str, **kw: int) -> list[bytes]:
    reader = store.open(ref)
    return list(cast_lines(reader.header(), reader.events(), **kw))


def test_a_terminal_recording_is_asciicast_v2_without_keystrokes(store: FileRecordingStore, tmp_path: Path) -> None:
    ref = make_terminal(store)
    lines = _cast(store, ref)
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    header = json.loads(lines[0])
    assert header == {"version": 2, "width": 100, "height": 30}  # no metadata: the page shows who and where
    events = [json.loads(line) for line in lines[1:]]
    assert [e[1] for e in events] == ["o", "o", "r", "m"]  # the recording's 7 "i" keystrokes stay out
    assert "".join(e[2] for e in events if e[1] == "o") == terminal_text(store.open(ref).events())
    assert events[2][2] == "120x40" and events[3][2] == "access expires in 5 minutes"
    # asciinema itself reads it back.
    asciinema = Path(sys.executable).parent / "asciinema"
    require(asciinema.exists(), "asciinema (pip install '.[test]')")
    cast = tmp_path / "web.cast"
    cast.write_bytes(b"".join(lines))
    out = subprocess.run([str(asciinema), "cat", str(cast)], capture_output=True, timeout=30, check=True).stdout
    assert b"12:00:01 up 3 days" in out


def test_marks_are_escaped_and_a_large_replay_is_cut_with_a_mark(store: FileRecordingStore) -> None:
    w = store.create("sess-big", Kind.TERMINAL, {"user": "alice"}, width=80, height=24)
    w.write_output(b"first-chunk\r\n")
    w.mark(HOSTILE)
    for i in range(50):
        w.write_output(b"x" * 1000 + f" line-{i}\r\n".encode())
    w.resize(0, 5)  # not a terminal size: dropped, not passed to the emulator
    w.close_sync()
    events = [json.loads(line) for line in _cast(store, w.ref)[1:]]
    mark = next(e for e in events if e[1] == "m")
    assert mark[2] == "\\x1b]0;pwned\\x07<script>alert(1)</script>\\u202e"  # text for the page, no ESC
    assert not any(e[1] == "r" for e in events)
    cut = [json.loads(line) for line in _cast(store, w.ref, max_bytes=10_000)[1:]]
    assert cut[0][2] == "first-chunk\r\n"
    assert cut[-1][1] == "m" and "over the browser's limit" in cut[-1][2] and "jitgate replay sess-big" in cut[-1][2]
    assert sum(len(json.dumps(e)) for e in cut[:-1]) <= 10_000
    assert not any("line-49" in e[2] for e in cut)


def _sse(raw: bytes) -> list[tuple[str, object]]:
    out = []
    for block in raw.decode("ascii").split("\n\n")[:-1]:
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        out.append((name[7:], json.loads(data[6:])))
    return out


def test_live_events_become_server_sent_events(store: FileRecordingStore) -> None:
    refs = make_all_kinds(store)
    term = _sse(b"".join(feed_messages(store.open(refs["terminal"]).events())))
    assert [n for n, _ in term] == ["o", "o", "r", "line"]
    assert term[2][1] == [120, 40]
    assert term[3][1]["text"] == "[jitgate] access expires in 5 minutes"  # type: ignore[index]
    assert "".join(str(d) for n, d in term if n == "o") == terminal_text(store.open(refs["terminal"]).events())
    exec_ = _sse(b"".join(feed_messages(store.open(refs["exec"]).events())))
    assert [n for n, _ in exec_] == ["o", "o", "line"]  # stdout, stderr to the terminal; stdin never shown
    assert exec_[-1][1]["text"] == "[exit]   (exit 2)"  # type: ignore[index]
    w = store.create("sess-hostile", Kind.SFTP, {"user": "bob"})
    w.write_event(SftpOp("open", f"/tmp/{HOSTILE}", flags="r"))
    w.write_event(Note(text="session\nends\x1b[2K"))
    w.close_sync()
    lines = [d for _, d in _sse(b"".join(feed_messages(store.open(w.ref).events())))]
    assert lines[0]["text"] == "[open] /tmp/\\x1b]0;pwned\\x07<script>alert(1)</script>\\u202e (r)  (ok)"  # type: ignore[index]
    assert lines[1]["text"] == "[note] session\\nends\\x1b[2K"  # type: ignore[index]
    assert _sse(end_message("sealed: client_exit")) == [("end", {"why": "sealed: client_exit"})]


def test_a_database_session_is_a_timeline_of_statements_paged(store: FileRecordingStore) -> None:
    w = store.create("sess-sql", Kind.DB, {"user": "carol", "resource": "orders", "role": "readonly"})
    now = 1_800_000_000.0
    w.write_event(DbStatement(text="SELECT *\n  FROM orders WHERE note = $1", parameters=[HOSTILE, None],
                              started_at=now, duration_ms=12.5, rows=3, command_tag="SELECT 3", protocol="extended"))
    w.write_event(DbStatement(text="DELETE FROM orders", started_at=now + 1, duration_ms=0.4,
                              error_sqlstate="25006", error_message="cannot execute DELETE in a read-only transaction"))
    for i in range(3):
        w.write_event(DbStatement(text=f"SELECT {i}", started_at=now + 2 + i, duration_ms=1.0, rows=1,
                                  command_tag="SELECT 1"))
    w.close_sync()
    view = timeline_view(Kind.DB, store.open(w.ref).events())
    assert (view.statements, view.errors, view.longest_ms, view.more) == (5, 1, 12.5, False)
    first, failed = view.rows[0], view.rows[1]
    assert first.detail == ("SELECT * FROM orders WHERE note = $1  "
                            "[\\x1b]0;pwned\\x07<script>alert(1)</script>\\u202e, NULL]")
    assert (first.duration_ms, first.amount, first.status, first.failed) == ("12.5", "3 rows", "SELECT 3", False)
    assert failed.failed and failed.status == "ERROR 25006: cannot execute DELETE in a read-only transaction"
    page0 = timeline_view(Kind.DB, store.open(w.ref).events(), page_events=2)
    page2 = timeline_view(Kind.DB, store.open(w.ref).events(), page=2, page_events=2)
    assert page0.more and [r.detail for r in page0.rows][1] == "DELETE FROM orders"
    assert not page2.more and [r.detail for r in page2.rows] == ["SELECT 2"]


def test_sftp_and_exec_timelines(store: FileRecordingStore) -> None:
    refs = make_all_kinds(store)
    sftp = timeline_view(Kind.SFTP, store.open(refs["sftp"]).events())
    assert [(r.what, r.detail) for r in sftp.rows][:2] == [("open", "/srv/app/config.yml (w)"),
                                                           ("write", "/srv/app/config.yml")]
    assert [r.status for r in sftp.rows if r.failed] == ["failed: permission denied"]
    ex = timeline_view(Kind.EXEC, store.open(refs["exec"]).events())
    assert ("stderr", "tar: Removing leading `/'") in [(r.what, r.detail) for r in ex.rows]
    assert [r.status for r in ex.rows if r.failed] == ["exit 2"]


def test_verification_is_shown_as_verified_or_tampered(store: FileRecordingStore, data_dir: Path) -> None:
    ref = make_terminal(store)
    ok = verify_view(store.verify(ref))
    assert ok.status == "verified" and ok.summary.startswith("verified: 11 events, sealed") and ok.problems == []
    data = data_dir / "recordings" / ref / "session.cast"
    data.write_bytes(data.read_bytes().replace(b"3 days", b"9 days"))
    bad = verify_view(store.verify(ref))
    assert bad.status == "tampered" and any("does not match its chain hash" in p for p in bad.problems)


def test_a_live_session_shows_who_where_since_and_time_left() -> None:
    s = types_pb2.Session(id="s-1", grant_id="g-1", user="ali\x1bce", resource="web-01", login="root", kind="ssh",
                          broker="broker-1", client_address="127.0.0.1:5555")
    s.started_at.FromDatetime(dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC))
    now = dt.datetime(2026, 12, 3, 12, 30, tzinfo=dt.UTC).timestamp()
    v = live_session_view(s, now, now + 240)
    assert (v.user, v.where, v.since, v.running, v.time_left, v.ending_soon) == (
        "ali\\x1bce", "root@web-01", "2026-12-03 12:00:00 UTC", "30m", "4m", True)
    assert live_session_view(s, now, None).time_left == ""
    assert live_session_view(s, now, now - 1).time_left == "ended"


def test_the_vendored_player_files_match_their_manifest() -> None:
    vendor = REPO / "web/static/vendor"
    listed = {}
    for line in (vendor / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name.removeprefix("./")] = digest
    present = {str(p.relative_to(vendor)) for p in vendor.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256"}
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert "@xterm/xterm@6.0.0/LICENSE" in listed


def test_a_watch_past_the_console_limit_is_told_at_once() -> None:
    import anyio

    from web.replay.live import Watches

    def never_started() -> Any:
        raise AssertionError("a watch over the limit must not call the control plane")

    async def main() -> list[bytes]:
        watches = Watches(limit=1)
        watches.admitted.acquire_on_behalf_of_nowait("the watch already running")
        return [m async for m in watches.stream(never_started, str)]

    assert _sse(b"".join(anyio.run(main))) == [
        ("end", {"why": "1 people are watching live sessions on this console now: try again in a moment"})]


def test_a_recordings_listing_data_is_shown_literally(store: FileRecordingStore) -> None:
    from web.replay.views import recording_view

    w = store.create("sess-meta", Kind.EXEC, {"user": f"eve{HOSTILE}", "target": "db\x1b[8m", "login": "root"},
                     command=f"cat {HOSTILE}")
    w.close_sync("revoked")
    info = store.open(w.ref).info
    v = recording_view(info, size=3 * 1024 * 1024)
    assert v.user == "eve\\x1b]0;pwned\\x07<script>alert(1)</script>\\u202e"  # Jinja escapes the markup
    assert v.where == "root@db\\x1b[8m" and v.command.startswith("cat \\x1b]0;pwned")
    assert (v.kind, v.live, v.end_reason, v.size, v.is_terminal) == ("exec", False, "revoked", "3.0 MiB", False)
