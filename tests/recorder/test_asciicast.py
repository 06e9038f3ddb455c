"""Terminal recordings are plain asciicast v2: checked against the spec and by asciinema itself."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from recorder import FileRecordingStore, Kind
from tests.recorder.helpers import make_terminal
from tests.support import require


def _asciinema() -> str:
    path = Path(sys.executable).parent / "asciinema"
    require(path.exists(), "asciinema (pip install '.[test]')")
    return str(path)


def _check_v2(path: Path) -> list[list]:
    """Validate a file against the asciicast v2 spec; returns its events."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and "" not in lines[:-1]  # newline-terminated, no blank line
    header = json.loads(lines[0])
    assert isinstance(header, dict) and header["version"] == 2
    assert isinstance(header["width"], int) and header["width"] > 0
    assert isinstance(header["height"], int) and header["height"] > 0
    assert isinstance(header["timestamp"], int)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in header["env"].items())
    events = [json.loads(line) for line in lines[1:-1]]
    previous = 0.0
    for ev in events:
        assert isinstance(ev, list) and len(ev) == 3
        t, code, data = ev
        assert isinstance(t, float) and t >= previous
        previous = t
        assert code in ("o", "i", "r", "m") and isinstance(data, str)
        if code == "r":
            assert re.fullmatch(r"\d+x\d+", data)
    return events


def test_terminal_recording_is_asciicast_v2(store: FileRecordingStore) -> None:
    ref = make_terminal(store)
    events = _check_v2(store.root / ref / "session.cast")
    assert [e[1] for e in events].count("i") == 7
    header = json.loads((store.root / ref / "session.cast").read_text().split("\n")[0])
    assert (header["width"], header["height"], header["env"]["TERM"]) == (100, 30, "xterm-256color")
    assert "chain" not in header and "hash" not in json.dumps(events)  # integrity data is in the sidecar


def test_keystrokes_off_counts_input_but_writes_none(store: FileRecordingStore) -> None:
    w = store.create("s-quiet", Kind.TERMINAL, {"user": "alice"}, keystrokes=False)
    w.write_output(b"Password: ")
    w.write_input(b"s3cret\r")
    w.write_output(b"\r\nok\r\n")
    seal = w.close_sync()
    events = _check_v2(store.root / "s-quiet" / "session.cast")
    assert [e[1] for e in events] == ["o", "o"] and "s3cret" not in json.dumps(events)
    assert seal.bytes_in == 7 and store.verify("s-quiet").ok


def test_asciinema_reads_and_plays_it(store: FileRecordingStore) -> None:
    asciinema = _asciinema()
    w = store.create("s-play", Kind.TERMINAL, {"user": "alice"}, command="/bin/bash")
    w.write_output("héllo wörld \u2603\r\n".encode())
    w.write_input(b"exit\r")
    w.resize(90, 20)
    w.mark("cut: access expired")
    w.write_output(b"\x1b[1mbye\x1b[0m\r\n")
    w.close_sync("expired")
    cast = store.root / "s-play" / "session.cast"
    _check_v2(cast)
    expected = "héllo wörld \u2603\r\n\x1b[1mbye\x1b[0m\r\n"
    # No controlling terminal (new session): the player skips its keyboard handling.
    cat = subprocess.run([asciinema, "cat", str(cast)], capture_output=True, timeout=30,
                         start_new_session=True, check=True)
    assert cat.stdout.decode("utf-8") == expected
    play = subprocess.run([asciinema, "play", "--speed", "100", "--idle-time-limit", "0.01", str(cast)],
                          capture_output=True, timeout=30, start_new_session=True, check=True)
    assert play.stdout.decode("utf-8") == expected
