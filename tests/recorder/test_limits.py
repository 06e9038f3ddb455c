"""The recorder fails closed: a bound on the bytes of one recording, a real full disk,
and `commit` for bytes that must be on record before they are relayed."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from recorder import (
    DbStatement,
    ExecData,
    FileRecordingStore,
    Kind,
    RecordingLimitError,
    RecordingWriteError,
    TerminalEvent,
)
from recorder.events import json_line, statement_record
from recorder.limits import (
    DEFAULT_MAX_RECORDING_BYTES,
    LIMIT_HEADROOM,
    MIN_MAX_RECORDING_BYTES,
    check_max_recording_bytes,
    format_size,
    parse_size,
)
from tests.recorder.conftest import PASSPHRASE
from tests.recorder.disk import SmallDisk

LIMIT = MIN_MAX_RECORDING_BYTES


def bounded(data_dir: Path) -> FileRecordingStore:
    return FileRecordingStore(data_dir, passphrase=PASSPHRASE, max_recording_bytes=LIMIT)


def on_disk(store: FileRecordingStore, ref: str) -> int:
    return sum(p.stat().st_size for p in (store.root / ref).iterdir() if p.name != "meta.json")


@pytest.mark.parametrize("kind", [Kind.EXEC, Kind.TERMINAL])
def test_the_bound_refuses_the_event_that_would_pass_it_and_the_recording_still_seals(
        data_dir: Path, kind: Kind) -> None:
    store = bounded(data_dir)
    errors: list[Exception] = []
    w = store.create(f"s-{kind.value}", kind, {"user": "alice"}, on_error=errors.append)
    chunk = b"y" * 1000
    written = 0
    with pytest.raises(RecordingLimitError, match="reached its limit of 64 KiB") as raised:
        while True:
            w.write_output(chunk)
            written += len(chunk)
            assert written < 2 * LIMIT, "the bound never tripped"
    assert errors == [raised.value] and raised.value.limit == LIMIT
    assert w.error is raised.value
    with pytest.raises(RecordingLimitError):  # nothing more is taken
        w.write_output(b"z")
    with pytest.raises(RecordingLimitError):
        w.mark("after the limit")
    seal = w.close_sync("recording_limit")
    assert seal.end_reason == "recording_limit" and seal.bytes_out == written
    result = store.verify(w.ref)
    assert result.ok, result.problems
    assert on_disk(store, w.ref) <= LIMIT + LIMIT_HEADROOM
    events = list(store.open(w.ref).events())
    last = events[-1]
    text = last.data if isinstance(last, TerminalEvent) else last.text
    assert "reached its limit of 64 KiB" in text
    if kind is Kind.EXEC:  # exactly the chunks that were accepted, none of the refused one
        assert sum(len(e.data) for e in events if isinstance(e, ExecData)) == written


def test_statements_in_bulk_stop_at_the_bound(data_dir: Path) -> None:
    store = bounded(data_dir)
    w = store.create("s-db", Kind.DB, {})
    start = w.header.started_at
    lines = [(json_line(statement_record(0.1, "simple", f"insert {i} " + "v" * 500, start, 0.1, None, 1,
                                         "INSERT 0 1", None, None)), 510) for i in range(400)]
    with pytest.raises(RecordingLimitError):
        w.write_statement_lines(lines)
    seal = w.close_sync("recording_limit")
    kept = [e for e in store.open(w.ref).events() if isinstance(e, DbStatement)]
    assert 0 < len(kept) < len(lines)
    assert [e.text for e in kept] == [f"insert {i} " + "v" * 500 for i in range(len(kept))]  # a prefix, in order
    assert seal.events == len(kept) + 1  # and the limit note
    assert store.verify(w.ref).ok and on_disk(store, w.ref) <= LIMIT + LIMIT_HEADROOM


def test_commit_hands_input_to_the_os_at_once(store: FileRecordingStore) -> None:
    async def run() -> bytes:
        w = store.create("s-commit", Kind.EXEC, {}, command="sh")  # on a loop: flushes are timed
        w.write_input(b"rm -rf /tmp/x\n")
        w.commit()
        data = (store.root / w.ref / "events.jsonl").read_bytes()
        await w.close()
        return data

    data = asyncio.run(run())
    assert b'"type":"stdin"' in data.splitlines()[1]


def test_sizes_parse_and_print() -> None:
    assert parse_size("1GiB") == DEFAULT_MAX_RECORDING_BYTES == 1 << 30
    assert parse_size("64k") == parse_size("64 KiB") == 65536 and parse_size("123") == 123
    for bad in ("", "1.5G", "-1", "10 parsecs", "1e9"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(bad)
    assert format_size(1 << 30) == "1 GiB" and format_size(1536) == "1.5 KiB" and format_size(10) == "10 bytes"
    with pytest.raises(ValueError, match="max_recording_bytes 1000 is below the minimum of 64 KiB"):
        check_max_recording_bytes(1000)


# ------------------------------------------------------------------ a real full disk


@pytest.fixture
def small_disk(data_dir: Path):  # type: ignore[no-untyped-def]
    with SmallDisk(data_dir / "recordings", "256k") as disk:
        yield disk


def test_a_full_disk_refuses_a_new_recording_plainly_and_leaves_nothing(data_dir: Path, small_disk: SmallDisk) -> None:
    store = FileRecordingStore(data_dir, passphrase=PASSPHRASE)
    small_disk.fill()
    with pytest.raises(RecordingWriteError) as raised:
        store.create("s-full", Kind.EXEC, {"user": "alice"}, command="id")
    assert raised.value.problem == "no space left on the recordings disk"
    assert [p.name for p in small_disk.path.iterdir()] == [".filler"]  # no half-made recording


def test_a_disk_that_fills_up_stops_the_writer_and_what_was_written_stays_intact(
        data_dir: Path, small_disk: SmallDisk) -> None:
    store = FileRecordingStore(data_dir, passphrase=PASSPHRASE)
    errors: list[Exception] = []
    w = store.create("s-fills", Kind.EXEC, {}, command="cat", on_error=errors.append)
    w.write_input(b"first line\n")
    w.commit()
    intact_hash = w.written_hash
    small_disk.fill()
    with pytest.raises(RecordingWriteError, match="no space left on the recordings disk"):
        for _ in range(1000):
            w.write_input(os.urandom(4096))
            w.commit()
    assert len(errors) == 1 and isinstance(errors[0], RecordingWriteError)
    with pytest.raises(RecordingWriteError):
        w.close_sync("recording_failed")
    small_disk.free()
    result = store.verify(w.ref)
    assert result.intact and not result.sealed  # unsealed, and intact up to what the disk took
    assert result.final_hash == w.written_hash
    assert intact_hash and w.written_hash
    first = [json.loads(line) for line in (store.root / w.ref / "events.jsonl").read_bytes().splitlines()[1:2]]
    assert first[0]["type"] == "stdin"


def test_records_input_follows_the_keystroke_policy(store: FileRecordingStore, data_dir: Path) -> None:
    terminal = store.create("s-keys-off", Kind.TERMINAL, {}, keystrokes=False)
    typed = store.create("s-keys-on", Kind.TERMINAL, {}, keystrokes=True)
    exec_ = store.create("s-exec-in", Kind.EXEC, {}, command="sh")
    assert (terminal.records_input, typed.records_input, exec_.records_input) == (False, True, True)
    for w in (terminal, typed, exec_):
        w.close_sync()
    with pytest.raises(ValueError, match="below the minimum"):
        FileRecordingStore(data_dir, passphrase=PASSPHRASE, max_recording_bytes=1024)
