"""Exec data is written as base64 lines: binary with NULs round-trips exactly and stays tamper-evident."""
from __future__ import annotations

import base64
import json
import os

import pytest

from recorder import ExecData, ExecExit, FileRecordingStore, Kind, RecordingError
from recorder.events import exec_line

# NULs, invalid UTF-8, a newline, quotes and backslashes: everything JSON escaping had to handle.
CHUNKS = [b"\x00" * 4096, b"\x1f\x8b\x08\x00\xff\xfe\x00\n\"\\", os.urandom(65536), b"", b"plain text\n"]


def _record(store: FileRecordingStore) -> str:
    w = store.create("sess-bin", Kind.EXEC, {"user": "bob"}, command="tar cf - /srv")
    w.write_input(b"\x00in\x00")
    for chunk in CHUNKS:
        w.write_output(chunk)
    w.write_stderr(b"\xff\x00err")
    w.write_event(ExecData("stdout", b"\x00via write_event\x00"))
    w.write_event(ExecExit(status=0))
    w.close_sync()
    return w.ref


def _data_path(store: FileRecordingStore, ref: str):  # type: ignore[no-untyped-def]
    return store.root / ref / "events.jsonl"


def test_binary_exec_data_round_trips_byte_exact_and_verifies(store: FileRecordingStore) -> None:
    ref = _record(store)
    result = store.verify(ref)
    assert result.ok and result.sealed and result.status == "verified", result

    events = list(store.open(ref).events())
    data = [(e.stream, e.data) for e in events if isinstance(e, ExecData)]
    assert data == ([("stdin", b"\x00in\x00")] + [("stdout", c) for c in CHUNKS]
                    + [("stderr", b"\xff\x00err"), ("stdout", b"\x00via write_event\x00")])
    assert isinstance(events[-1], ExecExit) and events[-1].status == 0

    # Every data line is plain JSON with the bytes as base64: 4/3 the size, whatever the bytes.
    lines = _data_path(store, ref).read_bytes().split(b"\n")[1:-1]
    zeros = json.loads(lines[1])
    assert zeros["type"] == "stdout" and base64.b64decode(zeros["b64"]) == b"\x00" * 4096
    assert len(lines[1]) < 4096 * 4 // 3 + 64


def test_edit_of_a_binary_exec_line_fails_verification(store: FileRecordingStore) -> None:
    ref = _record(store)
    path = _data_path(store, ref)
    lines = path.read_bytes().split(b"\n")
    rec = json.loads(lines[2])
    forged = base64.b64decode(rec["b64"]).replace(b"\x00", b"\x01")
    lines[2] = exec_line("stdout", rec["t"], forged)  # a well-formed line with other bytes
    path.write_bytes(b"\n".join(lines))

    result = store.verify(ref)
    assert not result.ok and result.status == "tampered", result
    assert any("line 3 does not match" in p for p in result.problems), result.problems


def test_a_line_that_is_not_base64_is_refused_when_read(store: FileRecordingStore) -> None:
    ref = _record(store)
    path = _data_path(store, ref)
    lines = path.read_bytes().split(b"\n")
    lines[2] = b'{"t":0.1,"type":"stdout","b64":"not base64!"}'
    path.write_bytes(b"\n".join(lines))
    assert store.verify(ref).status == "tampered"
    with pytest.raises(RecordingError, match="line 3"):
        list(store.open(ref).events())


def test_unknown_exec_stream_is_refused(store: FileRecordingStore) -> None:
    w = store.create("sess-bad", Kind.EXEC, {"user": "bob"})
    with pytest.raises(RecordingError, match="unknown exec stream"):
        w.write_event(ExecData("stdmiddle", b"x"))
    w.close_sync()
