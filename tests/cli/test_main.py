"""`cli/main.py`: a command line click refuses is one `error:` line with exit code 1.

The README promises every error is one line with exit 1; before, a malformed
`--duration` (and every bad option value, unknown option or command) printed
click's three-line usage block with exit 2. The check happens when the command
line is read: no identity or server is needed to be told `--duration` is wrong.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.conftest import jitgate, one_error_line


@pytest.fixture
def nowhere(tmp_path: Path) -> dict[str, str]:
    """An environment whose identity does not exist and whose server does not listen."""
    return {**os.environ, "JITGATE_IDENTITY": str(tmp_path / "no-identity"), "JITGATE_SERVER": "127.0.0.1:9"}


@pytest.mark.parametrize("args,words", [
    (["request", "web-01", "--login", "root", "-r", "why", "-d", "3x"],
     ["'--duration' / '-d'", "`3x` is not a duration", "`jitgate request --help`"]),
    (["extend", "g1", "-d", "0s", "-j", "more"], ["'--duration' / '-d'", "must be positive"]),
    (["request", "web-01", "-r", "why", "-d", "400d"], ["`400d` is longer than the maximum"]),
    (["ssh", "web-01", "--duration", "soon"], ["'--duration'", "`soon` is not a duration", "`jitgate ssh --help`"]),
    (["psql", "orders-db", "-d", "1y"], ["`1y` is not a duration"]),
    (["db-connect", "orders-db", "-d", "1h1h"], ["units must go d, h, m, s"]),
    (["whoami", "--output", "yaml"], ["'--output' / '-o'", "'yaml' is not one of"]),
    (["requests", "--state", "SLEEPING"], ["'--state'"]),
    (["sessions", "list", "--limit", "many"], ["'many' is not a valid integer", "`jitgate sessions list --help`"]),
    (["request", "web-01", "--login", "root"], ["missing option '--reason'"]),
    (["approve"], ["missing argument 'ID'"]),
    (["--no-such-option"], ["no such option"]),
    (["no-such-command"], ["no such command 'no-such-command'"]),
])
def test_a_refused_command_line_is_one_error_line(nowhere: dict[str, str], args: list[str], words: list[str]) -> None:
    line = one_error_line(jitgate(*args, env=nowhere))
    for word in words:
        assert word in line, line
    assert "no-identity" not in line  # refused before anything tried to connect


def test_a_refused_value_is_shown_literally(nowhere: dict[str, str]) -> None:
    line = one_error_line(jitgate("request", "web-01", "-r", "x", "-d", "\x1b[2J1h\u202e", env=nowhere))
    assert "\x1b" not in line and "\u202e" not in line
    assert "\\x1b[2J1h\\u202e" in line


def test_help_and_version_still_work(nowhere: dict[str, str]) -> None:
    shown = jitgate("request", "--help", env=nowhere)
    assert shown.returncode == 0 and "Usage: jitgate request" in shown.stdout
    version = jitgate("--version", env=nowhere)
    assert version.returncode == 0 and "0.1.0" in version.stdout
