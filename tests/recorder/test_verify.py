"""verify(): every kind of tampering is caught; a crashed recording is unsealed, not tampered."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from recorder import FileRecordingStore, Kind
from recorder.chain import Seal
from tests.recorder.conftest import PASSPHRASE
from tests.recorder.helpers import make_all_kinds, make_terminal


def _files(store: FileRecordingStore, ref: str) -> tuple[Path, Path]:
    d = store.root / ref
    data = d / ("session.cast" if store.info(ref).kind is Kind.TERMINAL else "events.jsonl")
    return data, d / "chain"


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _assert_tampered(store: FileRecordingStore, ref: str, *fragments: str) -> None:
    result = store.verify(ref)
    assert not result.ok and not result.intact and result.status == "tampered", result
    text = "; ".join(result.problems)
    for fragment in fragments:
        assert fragment in text, text


@pytest.fixture
def ref(store: FileRecordingStore) -> str:
    ref = make_terminal(store)
    assert store.verify(ref).ok
    return ref


def test_edit_of_one_character(store: FileRecordingStore, ref: str) -> None:
    data, _ = _files(store, ref)
    data.write_bytes(data.read_bytes().replace(b"3 days", b"9 days"))
    _assert_tampered(store, ref, "does not match its chain hash", "final hash does not match")


def test_edit_with_recomputed_chain_is_caught_by_the_signed_seal(store: FileRecordingStore, ref: str) -> None:
    from recorder import chain

    data, chain_path = _files(store, ref)
    data.write_bytes(data.read_bytes().replace(b"uptime", b"whoami"))
    h = chain.genesis(ref)
    hashes = []
    for line in _lines(data):
        h = chain.link(h, line)
        hashes.append(h.hex().encode())
    seal_line = _lines(chain_path)[-1]
    _write_lines(chain_path, [*hashes, seal_line])
    _assert_tampered(store, ref, "final hash does not match the seal")
    # ... and forging the seal's hash breaks its signature.
    seal = Seal.from_line(seal_line.decode())
    forged = Seal(**{**json.loads(seal_line)["seal"], "final_hash": h.hex()})
    assert forged.signature == seal.signature
    _write_lines(chain_path, [*hashes, forged.to_line().encode()])
    _assert_tampered(store, ref, "seal signature is invalid")


def test_deleted_line(store: FileRecordingStore, ref: str) -> None:
    data, _ = _files(store, ref)
    lines = _lines(data)
    del lines[3]
    _write_lines(data, lines)
    _assert_tampered(store, ref, "line 4 does not match", "seal counts 11 events but the recording holds 10")


def test_reordered_lines(store: FileRecordingStore, ref: str) -> None:
    data, _ = _files(store, ref)
    lines = _lines(data)
    lines[2], lines[3] = lines[3], lines[2]
    _write_lines(data, lines)
    _assert_tampered(store, ref, "line 3 does not match")


def test_inserted_line(store: FileRecordingStore, ref: str) -> None:
    data, _ = _files(store, ref)
    lines = _lines(data)
    lines.insert(5, b'[0.5, "o", "injected"]')
    _write_lines(data, lines)
    _assert_tampered(store, ref, "line 6 does not match", "lines were cut or added")


def test_appended_line_after_seal(store: FileRecordingStore, ref: str) -> None:
    data, _ = _files(store, ref)
    with open(data, "ab") as f:
        f.write(b'[99.0, "o", "later"]\n')
    _assert_tampered(store, ref, "seal counts 11 events but the recording holds 12")


def test_truncated_data_with_seal_kept(store: FileRecordingStore, ref: str) -> None:
    data, _ = _files(store, ref)
    _write_lines(data, _lines(data)[:-3])
    _assert_tampered(store, ref, "lines were cut or added", "seal counts 11 events but the recording holds 8")


def test_cut_line_halfway(store: FileRecordingStore, ref: str) -> None:
    data, _ = _files(store, ref)
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) - 10])
    _assert_tampered(store, ref, "is cut short")


def test_cut_at_the_end_removing_the_seal(store: FileRecordingStore, ref: str) -> None:
    data, chain_path = _files(store, ref)
    _write_lines(data, _lines(data)[:-2])
    _write_lines(chain_path, _lines(chain_path)[:-3])  # the seal and two hashes
    result = store.verify(ref)
    assert not result.ok and not result.sealed and not result.intact
    assert any("seal is missing although the recording was closed" in p for p in result.problems)
    # Even with the store's own listing data forged too, the final hash the broker
    # reported to the control plane gives the cut away.
    meta_path = store.root / ref / "meta.json"
    meta = json.loads(meta_path.read_text())
    final = meta.pop("seal")["final_hash"]
    meta_path.write_text(json.dumps(meta))
    assert store.verify(ref).intact  # indistinguishable from a crash locally...
    result = store.verify(ref, expected_final_hash=final)
    assert not result.intact and "not sealed although it was reported closed" in result.problems[0]


def test_data_removed_behind_the_chain_in_unsealed_recording(store: FileRecordingStore) -> None:
    w = store.create("s-open", Kind.TERMINAL, {})
    for i in range(5):
        w.write_output(f"line {i}\r\n".encode())
    w.flush()
    data, _ = _files(store, "s-open")
    _write_lines(data, _lines(data)[:-2])
    result = store.verify("s-open")
    assert not result.intact and "lines were removed" in "; ".join(result.problems)
    w.abort()


def test_wrong_signing_key(store: FileRecordingStore, ref: str, tmp_path: Path) -> None:
    other = FileRecordingStore(tmp_path / "other", passphrase=b"another broker")
    other_ref = make_terminal(other, "sess-other")
    assert other.verify(other_ref).ok
    # The same recording, moved into our store, is not trusted: its seal is not ours.
    os.rename(other.root / other_ref, store.root / other_ref)
    _assert_tampered(store, other_ref, "untrusted key")
    # Trusting that broker's key explicitly makes it verify.
    trusting = FileRecordingStore(store.data_dir, trusted_keys=other.trusted_keys())
    assert trusting.verify(other_ref).ok


def test_recording_swapped_into_another_session(store: FileRecordingStore) -> None:
    make_terminal(store, "sess-a")
    make_terminal(store, "sess-b")
    for name in ("session.cast", "chain"):
        os.replace(store.root / "sess-a" / name, store.root / "sess-b" / name)
    _assert_tampered(store, "sess-b", "header names recording `sess-a`", "seal belongs to recording `sess-a`")


def test_every_kind_detects_an_edit(store: FileRecordingStore) -> None:
    refs = make_all_kinds(store)
    for kind, ref in refs.items():
        data, _ = _files(store, ref)
        lines = _lines(data)
        lines[1] = lines[1].replace(b'"t":', b'"t": ', 1) if kind != "terminal" else lines[1] + b" "
        _write_lines(data, lines)
        _assert_tampered(store, ref, "line 2 does not match")


CRASHER = textwrap.dedent("""
    import asyncio, os, sys
    from recorder import FileRecordingStore, Kind
    async def main():
        store = FileRecordingStore(sys.argv[1], passphrase=sys.argv[2].encode(), flush_interval=0.05)
        w = store.create("s-crash", Kind.TERMINAL, {"user": "alice"})
        for i in range(50):
            w.write_output(f"line {i}\\r\\n".encode())
        while w.events and b"line 49" not in open(store.root / "s-crash" / "session.cast", "rb").read():
            await asyncio.sleep(0.01)  # the timer flushed: these 50 are on their way to disk
        w.write_output(b"never flushed\\r\\n")  # still in memory when the process dies
        print("ready", flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
""")


def test_crash_leaves_an_unsealed_but_intact_recording(store: FileRecordingStore, tmp_path: Path) -> None:
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    proc = subprocess.Popen([sys.executable, str(script), str(store.data_dir), PASSPHRASE.decode()],
                            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = store.verify("s-crash")
    assert not result.ok and not result.sealed
    assert result.intact and result.status == "unsealed"
    assert result.events == 50
    assert "unsealed but intact up to 50 events" in result.summary()
    assert result.final_hash is not None
    events = list(store.open("s-crash").events())
    assert events[-1].data == "line 49\r\n"
    assert not store.info("s-crash").sealed
