"""`cli/output.py`: how every command writes data.

- `--output json` prints every field (false, zero and empty included, an unset
  message as null), durations as POLICY.md writes them (`30m`), 64-bit counts as
  numbers, and times in one RFC 3339 form (UTC, microseconds, `Z`) whichever
  command prints them. Before: `decision.session` lacked `sftp: false`,
  `current_level` vanished at 0, durations were `"1800s"`, int64 counts strings,
  and `db-connect` wrote `2026-12-03 07:14:24Z` beside `request`'s RFC 3339.
- A table that does not fit (a narrow terminal, or a pipe) is printed as plain
  columns, never squeezed to one or two characters a cell.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

from jitgate.v1 import access_pb2, broker_pb2
from recorder import FileRecordingStore, Kind
from tests.cli.conftest import as_json, ok
from tests.cluster import REPO, ControlPlane
from tests.recorder.helpers import make_all_kinds

# The one form of a time in `--output json`.
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def times_in(data: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every (field, value) in `data` whose field name says it holds a time."""
    found: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if (k == "at" or k.endswith("_at") or k == "valid_before") and not isinstance(v, (dict, list)):
                found.append((k, v))
            else:
                found.extend(times_in(v, k))
    elif isinstance(data, list):
        for item in data:
            found.extend(times_in(item, key))
    return found


def assert_rfc3339(data: Any) -> int:
    """Every time in `data` is RFC 3339 (or null when unset); returns how many were set."""
    found = times_in(data)
    for field, value in found:
        assert value is None or (isinstance(value, str) and RFC3339.match(value)), (field, value)
    return sum(1 for _f, v in found if v is not None)


@pytest.fixture(scope="module")
def session(cp: ControlPlane) -> str:
    """A PostgreSQL session of alice's on dev-db that a broker reported ended with 5 GB each way."""
    alice = cp.client("alice")
    req = access_pb2.CreateRequestRequest(resource="dev-db", role="readonly", reason="json counts")
    req.duration.FromSeconds(1800)
    grant = alice.access.CreateRequest(req).request
    token = alice.access.IssueDatabaseToken(access_pb2.IssueDatabaseTokenRequest(grant_id=grant.id))
    broker = cp.client("broker").broker
    auth = broker.AuthorizeSession(broker_pb2.AuthorizeSessionRequest(
        kind="postgres", resource="dev-db", role="readonly", client_address="127.0.0.1:5555",
        database=broker_pb2.DatabaseCredential(token=token.token), channel="pg"))
    broker.ReportSessionEnd(broker_pb2.ReportSessionEndRequest(
        session_id=auth.session_id, reason="client_exit", bytes_in=5_000_000_000, bytes_out=0))
    return auth.session_id


def test_json_prints_every_field_with_durations_and_counts_as_written(cp: ControlPlane, session: str) -> None:
    env = cp.cli_env("alice")
    created = as_json("request", "web-dev-01", "--login", "deploy", "-d", "1h30m", "-r", "json shape", env=env)
    req = created["request"]
    assert req["decision"]["session"] == {"pty": True, "exec": True, "sftp": False, "port_forwarding": False}
    assert req["current_level"] == 0 and req["extensions_used"] == 0 and req["emergency"] is False
    assert req["ticket"] == "" and req["approvals"] == [] and req["ended_at"] is None
    assert req["duration"] == "1h30m"  # as POLICY.md and `--duration` write it, like decision.max_duration
    assert req["decision"]["max_duration"] == "8h"
    assert created["recommendation"] is None  # asked with a duration: no recommendation (a null, not missing)

    shown = as_json("sessions", "show", session, env=env)
    assert shown["bytes_in"] == 5_000_000_000 and shown["bytes_out"] == 0  # int64: numbers, zero kept
    listed = as_json("sessions", "list", "--grant", shown["grant_id"], env=env)["sessions"]
    assert listed[0]["bytes_in"] == 5_000_000_000

    board = as_json("dashboard", env=cp.cli_env("ada"))
    assert isinstance(board["expired_24h"], int) and "reviews_owed" in board
    verified = as_json("audit", "verify", env=cp.cli_env("ada"))
    assert verified["ok"] is True and isinstance(verified["events"], int) and verified["problems"] == []


def test_every_command_writes_times_one_way(cp: ControlPlane, session: str, tmp_path: Path) -> None:
    alice, ada = cp.cli_env("alice"), cp.cli_env("ada")
    created = as_json("request", "dev-db", "--role", "readonly", "-d", "30m", "-r", "times", env=alice)
    assert assert_rfc3339(created) >= 3  # created, activated, expires
    assert assert_rfc3339(as_json("requests", "--mine", env=alice)) >= 3
    assert assert_rfc3339(as_json("sessions", "show", session, env=alice)) >= 2
    assert assert_rfc3339(as_json("dashboard", env=ada)) >= 1
    events = as_json("audit", "list", "--limit", "20", env=ada)["events"]
    assert events and all(RFC3339.match(e["at"]) for e in events)  # (`data` is the event as stored and hashed)

    home = {**alice, "HOME": str(tmp_path)}
    connect = as_json("db-connect", "dev-db", "--role", "readonly", "--broker", "127.0.0.1:6432", env=home)
    assert RFC3339.match(connect["expires_at"]), connect["expires_at"]

    exported = [json.loads(line) for line in ok("audit", "export", env=ada).splitlines()]
    assert exported and all(RFC3339.match(e["at"]) for e in exported)
    # The exported `at` is the text the audit chain hashes: a reader can check the chain from the export.
    from controlplane.audit import GENESIS, event_hash

    prev = GENESIS
    for e in exported:
        at = dt.datetime.strptime(e["at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert e["prev_hash"] == prev
        assert event_hash(e["seq"], at, e["type"], e["actor"], e["subject"], e["data"], prev) == e["hash"]
        prev = e["hash"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("recordings")
    store = FileRecordingStore(data, passphrase=b"cli output test")
    make_all_kinds(store)
    w = store.create("sess-" + "long-session-id-" * 4, Kind.EXEC,
                     {"user": "someone-with-a-rather-long-name", "target": "a-host-name-that-is-long-too"},
                     command="tar czf - /srv/a-directory-with-a-long-name")
    w.close_sync()
    return data


def test_recordings_json_times_are_rfc3339(recordings: Path) -> None:
    env = {**os.environ, "JITGATE_DATA_DIR": str(recordings)}
    listed = as_json("recordings", "list", env=env)["recordings"]
    assert len(listed) == 5 and assert_rfc3339(listed) == 10  # started and ended, each
    assert assert_rfc3339(as_json("recordings", "search", "uptime", env=env)) >= 1
    replayed = as_json("replay", "sess-db", env=env)["recordings"][0]
    assert assert_rfc3339(replayed) == 4  # the recording's start and end, and each statement's start


def run_in_terminal(columns: int, *args: str, env: dict[str, str]) -> str:
    """`jitgate ARGS` on a real pseudo-terminal `columns` wide; everything it wrote."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, stdin=side,
                            stdout=side, stderr=side)
    os.close(side)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(30) == 0, out.decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;]*m", "", out.decode()).replace("\r\n", "\n")


def cells_of(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]


@pytest.mark.parametrize("columns", [60, 100])
def test_a_table_too_wide_for_the_terminal_is_plain_columns(recordings: Path, columns: int) -> None:
    env = {**os.environ, "JITGATE_DATA_DIR": str(recordings)}
    out = run_in_terminal(columns, "recordings", "list", env=env)
    lines = out.strip().splitlines()
    assert "│" not in out and "┃" not in out  # no squeezed table
    assert lines[0].split() == ["recording", "kind", "started", "duration", "who", "events", "state", "end"]
    long_ref = "sess-" + "long-session-id-" * 4
    row = next(line for line in lines if line.startswith(long_ref))  # one line a row, nothing cut
    assert "someone-with-a-rather-long-name -> a-host-name-that-is-long-too" in row
    assert len(lines) == 6


def test_a_table_that_fits_stays_a_table_and_wraps_only_between_words(recordings: Path) -> None:
    env = {**os.environ, "JITGATE_DATA_DIR": str(recordings)}
    out = run_in_terminal(200, "recordings", "list", env=env)
    assert "┃ recording" in out and "sess-db" in out
    narrow = run_in_terminal(110, "recordings", "list", "--kind", "terminal", env=env)
    rows = [cells_of(line) for line in narrow.splitlines() if line.startswith("│")]
    assert rows and all(len(cell) >= 2 or cell == "" for row in rows for cell in row), narrow


def test_a_piped_table_wider_than_a_line_is_plain_columns(cp: ControlPlane) -> None:
    long_reason = " ".join(["because"] * 10) + " " + "x" * 230  # one word wider than a pipe's 200 columns
    ok("request", "web-dev-01", "--login", "root", "-d", "10m", "-r", long_reason, env=cp.cli_env("dave"))
    out = ok("requests", "--mine", env=cp.cli_env("dave"))
    assert "│" not in out and long_reason in out
    assert out.splitlines()[1].split()[:3] == ["id", "user", "target"]  # the title, then the header


def test_column_widths_never_break_a_word() -> None:
    from rich.text import Text

    from cli.output import Col, column_widths

    cols = [Col("id", no_wrap=True), Col("reason", overflow="fold")]
    rows = [[Text("id"), Text("reason")], [Text("r-0001"), Text("rotate the certificates of web-01")]]
    assert column_widths(cols, rows, 80) == [6, 33]  # all fits: natural widths
    assert column_widths(cols, rows, 20) == [6, 14]  # wraps between words; `certificates` is 12
    assert column_widths(cols, rows, 17) is None  # a word would break: plain columns instead
