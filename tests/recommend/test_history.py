from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recommend.errors import HistoryError
from recommend.history import HistoryRow, read_history, write_history

GOOD = {"user": "alice", "resource": "orders-db", "kind": "postgres", "labels": {"env": "prod"},
        "role": "readonly", "reason": "monthly report", "ticket": "RPT-1",
        "requested_at": "2026-11-18T10:00:00Z", "asked_minutes": 60, "used_minutes": 35.5, "extensions": 0}


def _with(**changes: object) -> str:
    obj = {k: v for k, v in GOOD.items() if k not in changes or changes[k] is not ...}
    obj.update({k: v for k, v in changes.items() if v is not ...})
    return json.dumps(obj)


def test_round_trip(tmp_path: Path, rows: list[HistoryRow]) -> None:
    path = tmp_path / "h.jsonl"
    assert write_history(rows[:200], path) == 200
    again = read_history(path)
    assert again == rows[:200]
    assert again[0].finished_at > again[0].requested_at


def test_optional_fields_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    minimal = {"user": "bob", "resource": "web-01", "kind": "ssh", "login": "deploy",
               "requested_at": "2026-11-18T11:00:00+01:00", "asked_minutes": 30, "used_minutes": 0}
    path.write_text("\n" + json.dumps(minimal) + "\n\n")
    (row,) = read_history(path)
    assert row.labels == {} and row.reason == "" and row.ticket == "" and row.extensions == 0
    assert row.access == "login:deploy"
    assert row.requested_at == datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (_with(used_minutes=...), "missing field `used_minutes`"),
    (_with(used_minute=3), "unknown field `used_minute`"),
    (_with(login="root"), "exactly one of `login`"),
    (_with(role=...), "exactly one of `login`"),
    (_with(requested_at="2026-11-18T10:00:00"), "needs a time zone"),
    (_with(requested_at="yesterday"), "RFC 3339"),
    (_with(requested_at="2026-11-18"), "RFC 3339"),
    (_with(used_minutes=-1), "`used_minutes` must be a number >= 0"),
    (_with(used_minutes="35"), "`used_minutes` must be a number >= 0"),
    (_with(asked_minutes=0), "`asked_minutes` must be a number > 0"),
    (_with(extensions=True), "`extensions` must be an integer"),
    (_with(extensions=1.5), "`extensions` must be an integer"),
    (_with(labels={"env": 1}), "`labels` must be a map of strings"),
    (_with(user=""), "`user` must be a non-empty string"),
    (_with(kind=None), "`kind` must be a non-empty string"),
])
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(_with() + "\n" + line + "\n" + _with() + "\n")
    with pytest.raises(HistoryError) as caught:
        read_history(path)
    assert str(caught.value).startswith(f"{path}:2: ")
    assert message in str(caught.value)
    assert caught.value.line == 2 and caught.value.code == "recommend.history_invalid"


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no such file"):
        read_history(tmp_path / "absent.jsonl")
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(HistoryError, match="not UTF-8"):
        read_history(binary)
