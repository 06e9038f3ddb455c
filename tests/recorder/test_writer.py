"""RecordingWriter and FileRecordingStore: round trips of every kind, seals, refusals."""
from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from recorder import (
    DbStatement,
    ExecData,
    ExecExit,
    FileRecordingStore,
    Kind,
    Note,
    RecordingError,
    RecordingFilter,
    RecordingWriter,
    SftpOp,
    TerminalEvent,
)
from recorder.header import RecordingHeader
from recorder.keys import PRIVATE_NAME
from tests.recorder.conftest import PASSPHRASE
from tests.recorder.helpers import make_all_kinds, make_terminal, wait_for


def test_terminal_round_trip(store: FileRecordingStore) -> None:
    ref = make_terminal(store)
    reader = store.open(ref)
    header = reader.header()
    assert (header.kind, header.width, header.height) == (Kind.TERMINAL, 100, 30)
    assert header.metadata["user"] == "alice"
    assert header.env["TERM"] == "xterm-256color"
    events = list(reader.events())
    codes = [e.code for e in events if isinstance(e, TerminalEvent)]
    assert codes == ["o"] + ["i"] * 7 + ["o", "r", "m"]
    assert "".join(e.data for e in events if e.code == "i") == "uptime\r"
    assert events[-2].data == "120x40"
    assert events[-1].data == "access expires in 5 minutes"
    times = [e.t for e in events]
    assert times == sorted(times)
    seal = reader.seal()
    assert seal is not None and seal.end_reason == "expired"
    assert seal.events == len(events)
    assert seal.bytes_in == 7
    assert seal.bytes_out == len(b"root@web-01:~# ") + len(b"uptime\r\n 12:00:01 up 3 days\r\nroot@web-01:~# ")


def test_every_kind_round_trips_and_verifies(store: FileRecordingStore) -> None:
    refs = make_all_kinds(store)
    for ref in refs.values():
        result = store.verify(ref)
        assert result.ok and result.sealed and result.status == "verified", (ref, result.problems)

    exec_events = list(store.open(refs["exec"]).events())
    assert store.open(refs["exec"]).header().command == "tar czf - /etc"
    stdout = [e for e in exec_events if isinstance(e, ExecData) and e.stream == "stdout"]
    assert stdout[0].data == b"\x1f\x8b\x08\x00binary\xff\xfe"  # binary kept exact
    assert [e.stream for e in exec_events if isinstance(e, ExecData)] == ["stdin", "stdout", "stderr"]
    assert isinstance(exec_events[-1], ExecExit) and exec_events[-1].status == 2

    sftp = list(store.open(refs["sftp"]).events())
    assert [e.op for e in sftp] == ["open", "write", "close", "rename", "remove", "mkdir"]
    assert sftp[1].bytes == 4096 and sftp[0].flags == "w"
    assert sftp[3].target == "/srv/app/b"
    assert not sftp[4].ok and sftp[4].error == "permission denied"
    assert store.open(refs["sftp"]).seal().bytes_in == 4096

    db = list(store.open(refs["db"]).events())
    assert isinstance(db[0], DbStatement)
    assert (db[0].text, db[0].parameters, db[0].rows, db[0].command_tag, db[0].protocol) == (
        "SELECT * FROM orders WHERE id = $1", ["42"], 1, "SELECT 1", "extended")
    assert db[1].error_sqlstate == "25006" and "read-only" in db[1].error_message
    assert db[1].t - db[0].t == pytest.approx(0.5, abs=0.01)  # placed at the statement's start
    assert store.open(refs["db"]).seal().end_reason == "revoked"


def test_close_returns_the_final_hash_that_verify_confirms(store: FileRecordingStore) -> None:
    async def run() -> tuple[str, str]:
        w = store.create("s-hash", Kind.TERMINAL, {})
        w.write_output(b"hi\r\n")
        seal = await w.close("client_exit")
        again = await w.close("client_exit")  # idempotent
        assert again is seal
        return seal.final_hash, w.last_hash

    final, head = asyncio.run(run())
    assert final == head
    result = store.verify("s-hash", expected_final_hash=final)
    assert result.ok and result.final_hash == final
    assert not store.verify("s-hash", expected_final_hash="0" * 64).ok


def test_split_utf8_is_reassembled_and_invalid_bytes_replaced(store: FileRecordingStore) -> None:
    w = store.create("s-utf8", Kind.TERMINAL, {})
    w.write_output(b"price: \xe2\x82")  # the euro sign, cut in two reads
    w.write_output(b"\xac 5\r\n")
    w.write_output(b"bad \xff byte")
    w.write_output(b"tail \xe2\x82")  # never completed: written at close
    w.close_sync()
    out = "".join(e.data for e in store.open("s-utf8").events())
    assert "price: € 5" in out
    assert "bad \ufffd byte" in out
    assert out.endswith("tail \ufffd")
    assert store.open("s-utf8").seal().bytes_out == len(b"price: \xe2\x82\xac 5\r\nbad \xff bytetail \xe2\x82")


def test_second_recording_of_a_session_gets_its_own_ref(store: FileRecordingStore) -> None:
    a = store.create("s-multi", Kind.TERMINAL, {})
    b = store.create("s-multi", Kind.SFTP, {})
    assert (a.ref, b.ref) == ("s-multi", "s-multi.2")
    a.close_sync()
    b.close_sync()
    assert store.refs_for("s-multi") == ["s-multi", "s-multi.2"]
    assert [i.kind for i in store.list(RecordingFilter(session_id="s-multi"))] == [Kind.TERMINAL, Kind.SFTP]
    assert store.verify("s-multi.2").ok


def test_list_filters(store: FileRecordingStore) -> None:
    refs = make_all_kinds(store)
    assert {i.ref for i in store.list()} == set(refs.values())
    assert [i.ref for i in store.list(RecordingFilter(kind=Kind.DB))] == [refs["db"]]
    assert {i.ref for i in store.list(RecordingFilter(metadata={"user": "bob"}))} == {refs["exec"], refs["sftp"]}
    assert store.list(RecordingFilter(since=time.time() + 60)) == []
    info = store.info(refs["terminal"])
    assert info.sealed and info.end_reason == "expired" and info.events == 11


def test_refusals(store: FileRecordingStore, data_dir: Path) -> None:
    with pytest.raises(RecordingError, match="secrets"):
        store.create("s1", Kind.DB, {"user": "a", "db_password": "hunter2"})
    with pytest.raises(RecordingError, match="secrets"):
        store.create("s1", Kind.DB, {"note": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"})
    with pytest.raises(RecordingError, match="secrets"):
        store.create("s1", Kind.DB, {"auth": {"token": "abc"}})
    with pytest.raises(RecordingError, match="not a valid recording name"):
        store.create("../escape", Kind.TERMINAL, {})
    with pytest.raises(ValueError):
        store.create("s1", "video", {})
    assert not (data_dir / "recordings" / "s1").exists()  # nothing half-made by refusals

    w = store.create("s1", Kind.TERMINAL, {})
    with pytest.raises(RecordingError, match="does not belong"):
        w.write_event(DbStatement(text="x", started_at=0, duration_ms=0))
    with pytest.raises(RecordingError, match="no separate stderr"):
        w.write_stderr(b"x")
    with pytest.raises(ValueError):
        w.close_sync("because")  # not an end reason
    w.close_sync("broker_shutdown")
    with pytest.raises(RecordingError, match="closed"):
        w.write_output(b"late")
    d = store.create("s2", Kind.DB, {})
    with pytest.raises(RecordingError, match="only for terminal"):
        d.resize(1, 1)
    with pytest.raises(ValueError, match="unknown sftp op"):
        SftpOp("format-disk", "/")
    d.close_sync()
    # A store opened without the passphrase reads but cannot record.
    with pytest.raises(RecordingError, match="passphrase"):
        FileRecordingStore(data_dir).create("s3", Kind.TERMINAL, {})
    with pytest.raises(RecordingError, match="no recording"):
        store.open("nope")


def test_signing_key_is_encrypted_0600_and_needs_the_passphrase(store: FileRecordingStore, data_dir: Path) -> None:
    key_path = data_dir / "recorder" / PRIVATE_NAME
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in key_path.read_bytes()
    with pytest.raises(RecordingError, match="wrong passphrase"):
        FileRecordingStore(data_dir, passphrase=b"not it")
    with pytest.raises(RecordingError, match="non-empty"):
        FileRecordingStore(data_dir, passphrase=b"")
    os.chmod(key_path, 0o644)
    with pytest.raises(RecordingError, match="readable by others"):
        FileRecordingStore(data_dir, passphrase=PASSPHRASE)
    os.chmod(key_path, 0o600)
    again = FileRecordingStore(data_dir, passphrase=PASSPHRASE)  # same key loads back
    make_terminal(again, "s-again")
    assert store.verify("s-again").ok
    w = again.create("s-perm", Kind.TERMINAL, {})
    w.close_sync()
    for name in ("session.cast", "chain", "meta.json"):
        assert stat.S_IMODE((data_dir / "recordings" / "s-perm" / name).stat().st_mode) == 0o600


def test_buffered_events_reach_the_os_without_close_in_asyncio(store: FileRecordingStore) -> None:
    fast = FileRecordingStore(store.data_dir, passphrase=PASSPHRASE, flush_interval=0.05)
    path = store.root / "s-live" / "session.cast"

    async def run() -> None:
        w = fast.create("s-live", Kind.TERMINAL, {})
        w.write_output(b"first\r\n")
        # Only the header is on disk until the timer flushes the buffered event.
        await wait_for(lambda: b"first" in path.read_bytes())
        w.write_output(b"second\r\n")
        await wait_for(lambda: b"second" in path.read_bytes())
        lines = path.read_bytes().count(b"\n")
        chain_lines = (store.root / "s-live" / "chain").read_bytes().count(b"\n")
        assert lines == chain_lines == 3
        await w.close()

    asyncio.run(run())
    assert store.verify("s-live").ok


def test_large_buffer_is_flushed_before_the_interval(store: FileRecordingStore) -> None:
    w = store.create("s-big", Kind.TERMINAL, {})  # no event loop, 1 s interval
    chunk = b"x" * 4096
    for _ in range(100):  # 400 KiB > the 256 KiB buffer bound
        w.write_output(chunk)
    on_disk = (store.root / "s-big" / "session.cast").stat().st_size
    assert on_disk > 256 * 1024
    w.close_sync()
    assert store.verify("s-big").ok


class FailingSink:
    """A fake sink whose disk fills up after `ok` appends (a real full disk cannot be arranged here)."""

    def __init__(self, ok: int) -> None:
        self.ok = ok

    def append(self, data: bytes, chain_lines: bytes) -> None:
        if self.ok <= 0:
            raise OSError(28, "No space left on device")
        self.ok -= 1

    def finish(self, seal) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("must not seal after a write error")

    def abort(self) -> None:
        pass


def test_write_error_fails_closed(store: FileRecordingStore) -> None:
    from recorder.keys import load_or_create_signing_key

    errors = []
    key = load_or_create_signing_key(store.key_dir, PASSPHRASE)
    header = RecordingHeader(ref="s-fail", session_id="s-fail", kind=Kind.EXEC, started_at=time.time())
    with pytest.raises(RecordingError, match="no space left on the recordings disk"):
        RecordingWriter(FailingSink(ok=0), header, key, on_error=errors.append)  # cannot even start
    assert errors == []  # raised to the caller, which has no session to cut yet
    w = RecordingWriter(FailingSink(ok=1), header, key, max_buffer=10, on_error=errors.append)
    w.write_output(b"more than ten bytes")  # flush -> ENOSPC
    assert len(errors) == 1 and "no space left" in str(errors[0])
    assert errors[0].problem == "no space left on the recordings disk"
    with pytest.raises(RecordingError, match="cannot be written"):
        w.write_output(b"x")
    with pytest.raises(RecordingError, match="cannot be written"):
        w.close_sync()


def test_note_in_every_kind(store: FileRecordingStore) -> None:
    w = store.create("s-note", Kind.DB, {})
    w.mark("grant extended by 30m")
    w.close_sync()
    (ev,) = list(store.open("s-note").events())
    assert isinstance(ev, Note) and ev.text == "grant extended by 30m"


def test_a_note_written_later_keeps_the_time_it_happened(store: FileRecordingStore) -> None:
    # A cut's mark is written once the other users under way were told, at the time its line went out.
    w = store.create("s-later", Kind.EXEC, {}, command="sleep 600")
    at = w.elapsed()
    time.sleep(0.05)
    w.mark("access expired", at)
    w.mark("after")
    w.close_sync()
    late, now = [e for e in store.open("s-later").events() if isinstance(e, Note)]
    assert late.t == at and now.t is not None and now.t >= at + 0.05


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=100, deadline=None)
@given(text=_text, params=st.none() | st.lists(st.none() | _text, max_size=4),
       rows=st.none() | st.integers(0, 10**12), tag=st.none() | _text,
       state=st.none() | st.text("0123456789ABCDEFP", min_size=5, max_size=5), message=st.none() | _text,
       started=st.floats(0, 4e9), duration=st.floats(0, 1e7), t=st.floats(0, 1e6))
def test_fast_statement_line_equals_json_of_its_record(text, params, rows, tag, state, message,  # type: ignore[no-untyped-def]
                                                       started, duration, t) -> None:
    import json

    ev = DbStatement(text=text, parameters=params, rows=rows, command_tag=tag, error_sqlstate=state,
                     error_message=message, started_at=started, duration_ms=duration, protocol="extended", t=t)
    assert json.loads(ev.to_line()) == json.loads(json.dumps(ev.to_record()))


def test_statement_lines_in_bulk_read_back_and_verify(store: FileRecordingStore) -> None:
    from recorder.events import json_line, statement_record

    w = store.create("bulk", Kind.DB, {"user": "alice"})
    start = w.header.started_at
    w.write_event(DbStatement(text="begin", started_at=start + 0.5, duration_ms=0.2, command_tag="BEGIN"))
    texts = [f"select {i} -- é" for i in range(3)]
    lines = [(json_line(statement_record(1.0 + i, "simple", text, start + 1.0 + i, 0.125, None, 1, "SELECT 1",
                                         None, None)), len(text.encode()))
             for i, text in enumerate(texts)]
    w.write_statement_lines(lines)
    w.write_statement_lines([])
    w.close_sync()
    events = list(store.open(w.ref).events())
    assert [e.text for e in events] == ["begin", "select 0 -- é", "select 1 -- é", "select 2 -- é"]
    assert [(e.t, e.rows, e.command_tag, e.duration_ms) for e in events[1:]] == [
        (1.0, 1, "SELECT 1", 0.125), (2.0, 1, "SELECT 1", 0.125), (3.0, 1, "SELECT 1", 0.125)]
    result = store.verify(w.ref)
    assert result.ok and result.seal.events == 4
    assert result.seal.bytes_in == len(b"begin") + sum(n for _, n in lines)
    terminal = store.create("not-db", Kind.TERMINAL, {})
    with pytest.raises(RecordingError, match="do not belong"):
        terminal.write_statement_lines(lines)
    terminal.close_sync()
