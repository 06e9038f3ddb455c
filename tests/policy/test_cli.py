"""`jitgate policy check|test|eval|diff`: exit codes, JSON output, plain errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "policies.yaml"
REQUESTS = ROOT / "examples" / "requests.jsonl"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["policy", *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def looser(tmp_path: Path) -> Path:
    """The example with prod's maximum raised from 2h to 4h (and its tests adjusted)."""
    text = EXAMPLE.read_text()
    text = text.replace("    max_duration: 2h\n    max_extensions: 1", "    max_duration: 4h\n    max_extensions: 1")
    text = text.replace("max_duration: 2h, max_extensions: 0", "max_duration: 4h, max_extensions: 0")
    text = text.replace("expect: {effect: deny, message: maximum of 2h, max_duration: 2h}", "expect: {effect: allow}")
    text = text.replace(
        "      max_duration: 2h\n      max_extensions: 1\n", "      max_duration: 4h\n      max_extensions: 1\n"
    )
    p = tmp_path / "new.yaml"
    p.write_text(text)
    return p


def test_check_ok_and_json() -> None:
    code, out, _ = run("check", str(EXAMPLE))
    assert code == 0 and "ok" in out and "sha256:" in out
    code, out, _ = run("check", str(EXAMPLE), "--output", "json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["rules"] >= 9 and data["warnings"] == []


def test_check_refuses_with_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nusers:\n  ann: {manager: zed}\n  ann: {}\nrules:\n  - {name: r, when: 'x ==', approval: auto}\n"
    )
    code, out, err = run("check", str(bad))
    assert code == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert f"{bad}:3:18: user `ann`: unknown manager `zed`" in lines
    assert any(line.startswith(f"{bad}:4:3: users: duplicate key `ann`") for line in lines)
    assert any(line.startswith(f"{bad}:6:") and "CEL syntax error" in line for line in lines)
    assert lines[-1] == f"{bad}: 3 error(s)"
    code, out, _ = run("check", str(bad), "-o", "json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and {e["code"] for e in data["errors"]} == {
        "policy.unknown_user", "policy.duplicate", "policy.cel_syntax"}


def test_test_command_passes_and_fails_with_expected_vs_got(tmp_path: Path) -> None:
    code, out, _ = run("test", str(EXAMPLE))
    assert code == 0 and "0 failed" in out
    broken = tmp_path / "p.yaml"
    broken.write_text(EXAMPLE.read_text().replace(
        "expect: {effect: allow, approval: auto, rules: [dev-auto], max_duration: 8h, max_extensions: 2}",
        "expect: {effect: allow, approval: auto, rules: [dev-auto], max_duration: 4h, max_extensions: 2}"))
    code, out, _ = run("test", str(broken))
    assert code == 1
    assert "FAIL dev access is automatic" in out
    assert "max_duration: expected '4h', got '8h'" in out and "1 failed" in out
    code, out, _ = run("test", str(broken), "-o", "json")
    data = json.loads(out)
    assert code == 1 and data["failed"] == 1
    (failed,) = [r for r in data["results"] if not r["passed"]]
    assert failed["got"]["max_duration"] == "8h" and failed["expected"]["max_duration"] == "4h"


def test_eval_prints_the_decision_json() -> None:
    req = '{"user":"alice","resource":"web-prod-01","login":"deploy","duration":"1h","time":"2026-11-18T10:00:00Z"}'
    code, out, _ = run("eval", str(EXAMPLE), "--request", req, "--output", "json")
    d = json.loads(out)
    assert code == 0 and d["effect"] == "allow" and d["approval"]["mode"] == "levels"
    assert d["rules"] == ["prod-needs-manager-and-security"] and d["max_duration"] == "2h"
    code, out, _ = run("eval", str(EXAMPLE), "-r", req)
    assert code == 0 and "group:security" in out and "allow" in out


def test_eval_request_file_yaml_and_bad_requests(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("user: cora\nresource: orders-db\nrole: readonly\nduration: 30m\ntime: 2026-11-18T10:00:00Z\n")
    code, out, _ = run("eval", str(EXAMPLE), "--request-file", str(f), "-o", "json")
    assert code == 0 and json.loads(out)["message"] == "contractors have no production access"
    code, _, err = run("eval", str(EXAMPLE), "-r", '{"user": "alice"}')
    assert code == 1 and err.strip() == "error: bad request: a request needs `resource`"
    code, _, err = run("eval", str(EXAMPLE), "-r", "{nope")
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    code, _, err = run("eval", str(EXAMPLE))
    assert code == 1 and "exactly one of" in err


def test_diff_exit_codes_and_markdown(looser: Path) -> None:
    code, out, _ = run("diff", str(EXAMPLE), str(EXAMPLE), "--requests", str(REQUESTS))
    assert code == 0 and "no decision changes" in out
    code, out, _ = run("diff", str(EXAMPLE), str(looser), "--requests", str(REQUESTS), "--format", "markdown")
    assert code == 3
    assert "| line | request | time | old | new |" in out
    assert "| 11 | req-011: alice -> web-prod-01 as deploy for 3h |" in out
    assert "Newly allowed: **1**" in out
    code, out, _ = run("diff", str(EXAMPLE), str(looser), "--requests", str(REQUESTS), "-o", "json")
    data = json.loads(out)
    assert code == 3 and data["changed"] == 2 and data["requests"] == 12
    assert {c["line"] for c in data["changes"]} == {2, 11}
    assert data["changes"][0]["changed"] == ["max_duration"]


def test_diff_refuses_a_bad_requests_file(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text('{"user":"alice","resource":"demo","login":"demo","duration":"1h","time":"2026-11-18T10:00:00Z"}\n'
                 '{"user":"alice","resource":"demo","duration":"forever","time":"2026-11-18T10:00:00Z"}\n')
    code, _, err = run("diff", str(EXAMPLE), str(EXAMPLE), "--requests", str(f))
    assert code == 1 and err.strip().startswith(f"error: {f}:2: `duration`:")


def test_console_script_from_the_venv() -> None:
    exe = Path(sys.executable).parent / "jitgate"
    assert exe.exists(), "the jitgate console script is installed in the venv"
    r = subprocess.run([str(exe), "policy", "check", str(EXAMPLE)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
