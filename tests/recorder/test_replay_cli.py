"""`jitgate replay` and `jitgate recordings`: through the real CLI entry point."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from recorder import FileRecordingStore, Kind, TerminalEvent
from recorder.replay import play_terminal, timeline
from tests.recorder.helpers import make_all_kinds, make_terminal


def run(data_dir: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    result = runner.invoke(cli, list(args), env={"JITGATE_DATA_DIR": str(data_dir), "COLUMNS": "200", **(env or {})},
                           catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def slow_terminal(store: FileRecordingStore) -> str:
    """A terminal recording with long pauses (an hour idle in the middle)."""
    w = store.create("sess-slow", Kind.TERMINAL, {"user": "alice"})
    for t, code, data in [(0.5, "o", "$ "), (1.0, "i", "d"), (1.1, "i", "f\r"), (1.2, "o", "df\r\n"),
                          (3.0, "o", "/dev/sda1  42%\r\n$ "), (3603.0, "o", "logout\r\n")]:
        w.write_event(TerminalEvent(code, data, t=t))
    w.close_sync()
    return w.ref


class FakeClock:
    """Time that moves only when the player sleeps: the test sees every delay it asked for."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def test_play_terminal_timing_speed_and_idle_limit(store: FileRecordingStore) -> None:
    import io

    ref = slow_terminal(store)
    events = list(store.open(ref).events())
    fake, out = FakeClock(), io.StringIO()
    assert play_terminal(events, out, sleep=fake.sleep, clock=fake.clock) == 4
    assert out.getvalue() == "$ df\r\n/dev/sda1  42%\r\n$ logout\r\n"
    assert fake.sleeps == [0.5, 0.7, 1.8, 3600.0]  # input events are not played
    fake = FakeClock()
    play_terminal(events, io.StringIO(), speed=2.0, idle_limit=1.0, sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == [0.25, 0.35, 0.5, 0.5]
    with pytest.raises(ValueError):
        play_terminal(events, io.StringIO(), speed=0)


def test_replay_terminal_at_high_speed(store: FileRecordingStore, data_dir: Path) -> None:
    slow_terminal(store)
    result = run(data_dir, "replay", "sess-slow", "--speed", "1000", "--idle-limit", "0.5")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b"$ df\r\n/dev/sda1  42%\r\n$ logout\r\n"
    # By path to the recording's file, and as a text export.
    cast = store.root / "sess-slow" / "session.cast"
    result = run(data_dir, "replay", str(cast), "--output", "text")
    assert result.exit_code == 0 and "/dev/sda1  42%" in result.stdout


def test_replay_timelines_of_exec_sftp_db(store: FileRecordingStore, data_dir: Path) -> None:
    make_all_kinds(store)
    result = run(data_dir, "replay", "sess-db", "--verify")
    assert result.exit_code == 0, result.output
    assert "verified: 2 events" in result.stderr
    assert "SELECT * FROM orders WHERE id = $1" in result.stdout and "[42]" in result.stdout
    assert "25006" in result.stdout and "SELECT 1" in result.stdout
    result = run(data_dir, "replay", "sess-sftp", "--output", "text")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "rename    /srv/app/a -> /srv/app/b" in result.stdout
    assert any("write" in ln and "4096 B" in ln for ln in lines)
    assert any("remove" in ln and "failed: permission denied" in ln for ln in lines)
    result = run(data_dir, "replay", "sess-exec", "--output", "json")
    body = json.loads(result.stdout)
    (rec,) = body["recordings"]
    assert rec["recording"]["command"] == "tar czf - /etc"
    assert [e["type"] for e in rec["events"]] == ["stdin", "stdout", "stderr", "exit"]
    rows = timeline(store.open("sess-exec").events())
    assert [r.what for r in rows] == ["stdin", "stdout", "stderr", "exit"] and rows[-1].status == "exit 2"


def test_replay_verify_refuses_tampered_and_unsealed(store: FileRecordingStore, data_dir: Path) -> None:
    ref = make_terminal(store)
    assert run(data_dir, "replay", ref, "--verify", "--speed", "1000").exit_code == 0
    cast = store.root / ref / "session.cast"
    cast.write_bytes(cast.read_bytes().replace(b"uptime", b"reboot"))
    result = run(data_dir, "replay", ref, "--verify", "--speed", "1000")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"jitgate: recording {ref}: tampered: line ")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""  # nothing played
    result = run(data_dir, "recordings", "verify", ref, "--output", "json")
    assert result.exit_code == 1 and json.loads(result.stdout)["results"][ref]["status"] == "tampered"

    w = store.create("sess-open", Kind.TERMINAL, {})
    w.write_output(b"still running")
    w.flush()
    result = run(data_dir, "replay", "sess-open", "--verify")
    assert result.exit_code == 1 and "unsealed but intact up to 1 events" in result.stderr
    w.abort()
    result = run(data_dir, "replay", ref, "--verify", "--expect-hash", "ab" * 32)
    assert result.exit_code == 1


def test_replay_errors_are_one_plain_line(data_dir: Path) -> None:
    result = run(data_dir, "replay", "no-such-session")
    assert result.exit_code == 1
    assert result.stderr == f"jitgate: no recording for `no-such-session` in {data_dir / 'recordings'}\n"
    result = run(data_dir, "replay", "x", "--speed", "0")
    assert result.exit_code == 1 and "--speed must be above 0" in result.stderr


def test_recordings_list(store: FileRecordingStore, data_dir: Path) -> None:
    refs = make_all_kinds(store)
    result = run(data_dir, "recordings", "list", "--output", "json")
    assert result.exit_code == 0
    listed = json.loads(result.stdout)["recordings"]
    assert {r["ref"] for r in listed} == set(refs.values())
    assert all(r["sealed"] for r in listed)
    result = run(data_dir, "recordings", "list", "--kind", "db", "--meta", "role=readonly", "--output", "json")
    assert [r["ref"] for r in json.loads(result.stdout)["recordings"]] == [refs["db"]]
    result = run(data_dir, "recordings", "list")
    assert result.exit_code == 0 and "sess-sftp" in result.stdout
    assert run(data_dir, "recordings", "list", "--meta", "nonsense").exit_code == 1


def test_recordings_search(store: FileRecordingStore, data_dir: Path) -> None:
    make_all_kinds(store)
    w = store.create("sess-typo", Kind.TERMINAL, {"user": "mallory"})
    w.write_output(b"$ ")
    for key in [b"r", b"n", b"\x7f", b"m", b" ", b"-", b"r", b"f", b" /", b"v", b"a", b"r", b"\r"]:
        w.write_input(key)  # "rn<backspace>m -rf /var", one key per event
    w.write_output(b"rm -rf /var\r\n\x1b[31mrm: cannot remove\x1b[0m '/var': Permission denied\r\n$ ")
    w.close_sync()

    result = run(data_dir, "recordings", "search", "rm -rf /var", "--output", "json")
    hits = json.loads(result.stdout)["hits"]
    assert {(h["ref"], h["where"]) for h in hits} == {("sess-typo", "input"), ("sess-typo", "output")}
    assert all(h["t"] >= 0 for h in hits)
    result = run(data_dir, "recordings", "search", "cannot remove '/var'", "--output", "json")
    (hit,) = json.loads(result.stdout)["hits"]
    assert hit["where"] == "output" and "Permission denied" in hit["snippet"]  # colours stripped

    def where(text: str, *extra: str) -> set[tuple[str, str]]:
        out = run(data_dir, "recordings", "search", text, *extra, "--output", "json").stdout
        return {(h["session_id"], h["where"]) for h in json.loads(out)["hits"]}

    assert where("uptime") == {("sess-term", "input"), ("sess-term", "output")}
    assert where("orders") == {("sess-db", "statement")}
    assert where("config.yml") == {("sess-sftp", "sftp")}
    assert where("tar czf") == {("sess-exec", "command")}
    assert where("leading") == {("sess-exec", "stderr")}
    assert where("expires in 5") == {("sess-term", "note")}
    assert where("UPTIME", "--case-sensitive") == set()
    assert where("nothing like this") == set()
    result = run(data_dir, "recordings", "search", "orders")
    assert result.exit_code == 0 and "sess-db" in result.stdout


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"target": "web-01", "login": "root"}, "root@web-01"),
    ({"resource": "orders-db", "role": "readonly"}, "readonly@orders-db"),
    ({"target": "web-01"}, "web-01"),
    ({"login": "root"}, ""),
])
def test_recording_where_names_login_or_role_at_target(metadata: dict[str, str], expected: str) -> None:
    from recorder.reader import RecordingInfo

    assert RecordingInfo("r", "s", Kind.TERMINAL, 0.0, metadata).where == expected
