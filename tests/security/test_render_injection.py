"""Issue 13 item 5: text from users reaches approvers' and admins' screens literally.

A requester writes rich markup (`[white on white]`, `[/]`), terminal escapes
(`\\e[8m` hides text) and bidi/invisible characters into a reason or ticket; a
client sends a PostgreSQL user name `x@[/]` that a broker reports as a refused
login. The real `jitgate` CLI, against a real control plane, must print all of
it literally (markup as text, hidden characters as `\\x1b`/`\\u202e` escapes)
and not fail; JSON output must stay exact JSON.

Before the fix: `[/]` made `requests`, `requests show` and `audit list` fail
with a rich MarkupError, `[white on white]` hid text and ESC passed through raw.
"""
from __future__ import annotations

import ast
import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from cli.output import is_hidden, json_text, safe_json, visible
from jitgate.v1 import access_pb2, broker_pb2, types_pb2
from tests.cluster import NO_MODEL, REPO, ControlPlane
from tests.controlplane.api.conftest import duration, jitgate

POLICIES = REPO / "tests" / "controlplane" / "api" / "policies.yaml"

ESC = "\x1b"
# Markup that hides text, closes what was never opened, an emoji code; SGR 8 (conceal);
# a C1 CSI; a right-to-left override; a zero-width space; a BEL in an OSC title.
HOSTILE_REASON = (f"[white on white]hidden-words[/] [/] :warning: {ESC}[8mconcealed{ESC}[0m "
                  f"\x9b31m RLO\u202eevil \u200bzw {ESC}]0;title\x07 end")
HOSTILE_TICKET = "[/]TICKET-1[bold]"
REFUSED_PG_USER = f"x@[/]{ESC}[2K"
# Every character a terminal acts on or does not draw, which must never be printed raw.
RAW_FORBIDDEN = [ESC, "\x9b", "\x07", "\u202e", "\u200b"]


def assert_literal(out: str) -> None:
    """`out` holds the hostile reason as the reader must see it, and nothing raw."""
    for ch in RAW_FORBIDDEN:
        assert ch not in out, f"raw {ch!r} reached the terminal:\n{out}"
    for shown in ("[white on white]hidden-words[/]", ":warning:", "\\x1b[8mconcealed\\x1b[0m", "\\x9b31m",
                  "RLO\\u202eevil", "\\u200bzw", "\\x1b]0;title\\x07"):
        assert shown in out, f"`{shown}` not shown literally in:\n{out}"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("render"), POLICIES, config=NO_MODEL) as plane:
        yield plane


@pytest.fixture(scope="module")
def pending(cp: ControlPlane) -> str:
    """A request by alice with the hostile reason, waiting for bob (alice's manager)."""
    msg = access_pb2.CreateRequestRequest(resource="web-prod-01", login="deploy", reason=HOSTILE_REASON,
                                          ticket=HOSTILE_TICKET)
    msg.duration.CopyFrom(duration(1800))
    req = cp.client("alice").access.CreateRequest(msg).request
    assert req.state == types_pb2.REQUEST_STATE_PENDING and req.reason == HOSTILE_REASON
    return req.id


def run_cli(cp: ControlPlane, who: str, *args: str) -> str:
    proc = jitgate(*args, env=cp.cli_env(who), check=False)
    assert proc.returncode == 0, f"jitgate {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_to_approve_shows_the_hostile_reason_literally(cp: ControlPlane, pending: str) -> None:
    out = run_cli(cp, "bob", "requests", "--to-approve")
    assert pending in out
    assert_literal(out)


def test_requests_list_and_show_do_not_fail_on_markup(cp: ControlPlane, pending: str) -> None:
    assert_literal(run_cli(cp, "alice", "requests"))
    shown = run_cli(cp, "bob", "requests", "show", pending)
    assert_literal(shown)
    assert HOSTILE_TICKET in shown


def test_comments_and_justifications_are_literal(cp: ControlPlane, pending: str) -> None:
    comment = f"ok [/] {ESC}[8mquiet\u2066"
    out = run_cli(cp, "bob", "approve", pending, "-c", comment)  # level 1 of 2: still pending
    assert "level 2/2 [next]" in out
    shown = run_cli(cp, "sam", "requests", "show", pending)
    assert "ok [/] \\x1b[8mquiet\\u2066" in shown and ESC not in shown and "\u2066" not in shown


def test_json_output_is_exact_and_terminal_safe(cp: ControlPlane, pending: str) -> None:
    raw = run_cli(cp, "bob", "requests", "show", pending, "--output", "json")
    for ch in RAW_FORBIDDEN:
        assert ch not in raw
    data = json.loads(raw)
    assert data["reason"] == HOSTILE_REASON and data["ticket"] == HOSTILE_TICKET


def test_audit_list_shows_a_refused_postgres_user_literally(cp: ControlPlane, pending: str) -> None:
    # What the PostgreSQL broker reports for an unauthenticated startup with user `x@[/]...`.
    cp.client("broker").broker.ReportRefusal(broker_pb2.ReportRefusalRequest(
        kind="postgres", user=REFUSED_PG_USER, resource="", code="login.bad_name",
        message=f"bad user name `{REFUSED_PG_USER}`", client_address="127.0.0.1:5555"))
    out = run_cli(cp, "ada", "audit", "list", "--limit", "500")
    assert "x@[/]\\x1b[2K" in out, out
    assert ESC not in out
    events = json.loads(run_cli(cp, "ada", "audit", "list", "--limit", "500", "--output", "json"))["events"]
    assert any(e["subject"] == REFUSED_PG_USER for e in events)


# -- the renderers themselves, without a server: every string field hostile ---------------------


def fill_strings(msg: Any, value: str, depth: int = 0) -> Any:
    """Set every string field of `msg` (and of its sub-messages, one of each repeated) to `value`."""
    for fd in msg.DESCRIPTOR.fields:
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
        if fd.type == fd.TYPE_STRING:
            getattr(msg, fd.name).append(value) if repeated else setattr(msg, fd.name, value)
        elif (fd.type == fd.TYPE_MESSAGE and depth < 3 and not fd.message_type.GetOptions().map_entry
              and not fd.message_type.full_name.startswith("google.")):
            sub = getattr(msg, fd.name).add() if repeated else getattr(msg, fd.name)
            fill_strings(sub, value, depth + 1)
    return msg


def test_every_rendered_field_of_requests_and_sessions_is_literal() -> None:
    """A new column or line built from a message cannot slip past the escaping unnoticed."""
    from cli.output import print_table
    from cli.render import SESSION_COLUMNS, print_outcome, print_request, print_requests, session_row

    req = fill_strings(types_pb2.AccessRequest(state=types_pb2.REQUEST_STATE_PENDING), HOSTILE_REASON)
    sess = fill_strings(types_pb2.Session(), HOSTILE_REASON)
    buf = io.StringIO()
    with redirect_stdout(buf):
        print_requests("requests", [req])
        print_request(req)
        print_outcome(req)
        print_table("sessions", SESSION_COLUMNS, [session_row(sess)])
    assert_literal(buf.getvalue())


@pytest.mark.parametrize("ch", ["\x00", "\x08", "\r", "\n", "\x1b", "\x7f", "\x85", "\x9b", "\u00ad", "\u061c",
                                "\u200b", "\u200e", "\u200f", "\u202a", "\u202e", "\u2028", "\u2066", "\u2069",
                                "\ufeff", "\U000e0041", "\u3164"])
def test_hidden_characters_are_escaped(ch: str) -> None:
    assert is_hidden(ch)
    shown = visible(f"a{ch}b")
    assert ch not in shown and shown.startswith("a\\") and shown.endswith("b")
    assert json.loads(json_text({"k": f"a{ch}b"}))["k"] == f"a{ch}b"
    assert ch not in json_text({"k": f"a{ch}b"}) and ch not in safe_json(json.dumps(f"a{ch}b", ensure_ascii=False))


def test_ordinary_text_is_unchanged() -> None:
    text = "Zürich 東京 café — naïve [ok] C:\\temp 100% ✓"
    assert visible(text) == text
    assert visible("two\nlines", keep_newlines=True) == "two\nlines"


def test_rich_is_used_only_through_cli_output() -> None:
    """Every table and styled line goes through cli/output.py, where user text is made literal."""
    offenders = []
    for path in sorted((REPO / "cli").glob("*.py")):
        if path.name == "output.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "rich"]
    assert not offenders, f"rich used outside cli/output.py (print through cli.output instead): {offenders}"


# -- recordings: what a session's user typed reaches the auditor's screen literally -----------------


def test_recordings_and_replay_tables_are_literal(tmp_path: Path) -> None:
    import time

    from click.testing import CliRunner

    from cli.main import cli
    from recorder import DbStatement, FileRecordingStore, Kind, SftpOp

    store = FileRecordingStore(tmp_path, passphrase=b"recordings-test-passphrase-0123456789")
    w = store.create("sess-db", Kind.DB, {"user": HOSTILE_TICKET, "resource": "orders", "role": "ro"})
    w.write_event(DbStatement(text=f"SELECT '{HOSTILE_REASON}'", started_at=time.time(), duration_ms=1.0, rows=1))
    w.close_sync("revoked")
    w = store.create("sess-sftp", Kind.SFTP, {"user": "bob"})
    w.write_event(SftpOp("open", f"/srv/{HOSTILE_REASON}", flags="w"))
    w.close_sync()

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), env={"JITGATE_DATA_DIR": str(tmp_path)}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    listed = run("recordings", "list")
    assert HOSTILE_TICKET in listed and ESC not in listed
    assert_literal(run("recordings", "search", "hidden-words"))
    assert_literal(run("replay", "sess-db"))
    assert_literal(run("replay", "sess-sftp", "--output", "text"))
    raw = run("recordings", "list", "--output", "json")
    assert ESC not in raw and json.loads(raw)["recordings"][0]["metadata"]["user"] == HOSTILE_TICKET


def test_ssh_config_takes_only_plain_words() -> None:
    """`jitgate ssh-config` writes names into an ssh_config: a newline there would add a directive."""
    from cli.ssh_cmd import _config_word

    assert _config_word("web-01") and _config_word("deploy")
    for bad in ("", "web 01", "web\nProxyCommand sh", "a#b", 'a"b', "web\u202e", "web\x1b"):
        assert not _config_word(bad), bad
