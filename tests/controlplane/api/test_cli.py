"""The same life cycle driven through the `jitgate` CLI (subprocesses) against the real server."""
from __future__ import annotations

import json
from pathlib import Path

from jitgate.v1 import types_pb2
from tests.controlplane.api.conftest import jitgate, wait_state


def run_json(cp, who: str, *args: str) -> dict:
    return json.loads(jitgate(*args, "--output", "json", env=cp.cli_env(who)).stdout)


def fails(cp, who: str, *args: str) -> str:
    proc = jitgate(*args, env=cp.cli_env(who), check=False)
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_multi_level_approval_from_the_cli(cp):
    out = jitgate("request", "web-prod-01", "--login", "deploy", "-d", "30m", "-r", "rotate certs",
                  env=cp.cli_env("alice")).stdout
    assert "PENDING" in out and "level 1/2 [next]: 1 of manager, owner" in out
    request_id = out.split()[1].rstrip(":")
    listed = run_json(cp, "bob", "requests", "--to-approve")
    assert request_id in [r["id"] for r in listed["requests"]]

    line = fails(cp, "alice", "approve", request_id)
    assert line.startswith("error: PERMISSION_DENIED: ") and "own" in line
    assert "level 2/2 [next]" in jitgate("approve", request_id, "-c", "ok", env=cp.cli_env("bob")).stdout
    active = run_json(cp, "sam", "approve", request_id)
    assert active["state"] == "REQUEST_STATE_ACTIVE"
    shown = jitgate("requests", "show", request_id, env=cp.cli_env("alice")).stdout
    assert "bob approved level 1: ok" in shown and "sam approved level 2" in shown


def test_auto_extend_limit_revoke_from_the_cli(cp):
    out = jitgate("request", "web-dev-01", "--login", "deploy", "-d", "1h", "-r", "deploy",
                  env=cp.cli_env("alice")).stdout
    assert "ACTIVE" in out and "access active until" in out and "approved automatically" in out
    grant = out.split()[1].rstrip(":")
    from jitgate.v1 import access_pb2
    from tests.controlplane.api.conftest import duration

    first = access_pb2.ExtendRequest(id=grant, justification="more 1")
    first.duration.CopyFrom(duration(600))
    assert cp.client("alice").access.Extend(first).extensions_used == 1
    assert run_json(cp, "alice", "extend", grant, "-d", "10m", "-j", "more 2")["extensions_used"] == 2
    line = fails(cp, "alice", "extend", grant, "-d", "10m", "-j", "again")
    assert line.startswith("error: FAILED_PRECONDITION: ")
    assert run_json(cp, "ada", "revoke", grant, "-r", "done")["state"] == "REQUEST_STATE_REVOKED"


def test_break_glass_review_and_expiry_from_the_cli(cp):
    out = jitgate("request", "web-prod-01", "--login", "deploy", "-d", "15m", "-r", "outage", "--emergency",
                  env=cp.cli_env("alice")).stdout
    assert "ACTIVE" in out and "break-glass: a review is owed by group:security" in out
    grant = out.split()[1].rstrip(":")
    assert run_json(cp, "sam", "review", grant, "-c", "justified")["review_state"] == "REVIEW_STATE_REVIEWED"

    short = run_json(cp, "alice", "request", "dev-db", "--role", "readonly", "-d", "2s", "-r", "peek")["request"]
    assert short["state"] == "REQUEST_STATE_ACTIVE"
    wait_state(cp.client("alice"), short["id"], types_pb2.REQUEST_STATE_EXPIRED)
    assert run_json(cp, "alice", "requests", "show", short["id"])["state"] == "REQUEST_STATE_EXPIRED"


def test_refusals_are_one_plain_line(cp):
    assert fails(cp, "mallory", "whoami").startswith("error: UNAUTHENTICATED: identity `mallory`")
    env = {**cp.cli_env("alice"), "JITGATE_IDENTITY": "/nonexistent"}
    proc = jitgate("whoami", env=env, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "/nonexistent" in proc.stderr


def test_recommendation_dashboard_whoami(cp):
    out = jitgate("request", "web-dev-01", "--login", "root", "-r", "look at logs", env=cp.cli_env("alice")).stdout
    assert "recommended" in out and "ACTIVE" in out
    dash = run_json(cp, "ada", "dashboard")
    assert len(dash.get("active", [])) >= 1 and "approval_rate" in dash


def test_audit_and_admin_commands(cp, tmp_path: Path):
    assert jitgate("audit", "verify", env=cp.cli_env("ada")).stdout.startswith("audit chain ok: ")
    events = [json.loads(line) for line in
              jitgate("audit", "export", "--format", "jsonl", env=cp.cli_env("ada")).stdout.splitlines()]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and seqs[0] == 1 and len(seqs) == len(set(seqs))
    assert {"request.created", "grant.activated"} <= {e["type"] for e in events}
    requests = [json.loads(line) for line in
                jitgate("audit", "export-requests", env=cp.cli_env("ada")).stdout.splitlines()]
    assert requests and {"user", "resource", "duration", "time"} <= set(requests[0])

    # Local issue against the data directory while the server runs, then over gRPC.
    jitgate("admin", "issue-identity", "dave", "--out", str(tmp_path / "dave"), "--data-dir", str(cp.data.root),
            env=cp.env)
    remote = tmp_path / "sam"
    jitgate("admin", "issue-identity", "sam", "--out", str(remote), "--remote", env=cp.cli_env("ada"))
    env = {**cp.cli_env("ada"), "JITGATE_IDENTITY": str(remote)}
    assert json.loads(jitgate("whoami", "-o", "json", env=env).stdout)["name"] == "sam"
    issued = run_json(cp, "ada", "audit", "list", "--type", "identity.issued")["events"]
    assert {("dave", "local-admin"), ("sam", "ada")} <= {(e["subject"], e["actor"]) for e in issued}
    upstream = jitgate("admin", "ssh-ca", "--upstream", "--remote", env=cp.cli_env("alice")).stdout
    assert upstream.startswith("ssh-ed25519 ") and "upstream" in upstream
