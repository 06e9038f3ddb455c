"""`cli/access_cmd.py`: approving what is waiting, as an approver would type it.

Before: `requests --to-approve` listed a grant whose extension waited under the
grant's id; `approve GRANT` answered "is ACTIVE, not waiting for approval" with
no hint of the extension's id; approving level 1 of an extension did not say
that level 2 still waits. And after a break-glass review the request's
`message` still said "a review by group:security is owed".
"""
from __future__ import annotations

from typing import Any

import pytest

from jitgate.v1 import access_pb2, types_pb2
from tests.cli.conftest import as_json, ok
from tests.cluster import ControlPlane


def active_prod_grant(cp: ControlPlane, reason: str) -> str:
    """An ACTIVE grant of alice's on web-prod-01 (two levels: bob as manager, then security)."""
    msg = access_pb2.CreateRequestRequest(resource="web-prod-01", login="deploy", reason=reason)
    msg.duration.FromSeconds(1800)
    req = cp.client("alice").access.CreateRequest(msg).request
    cp.client("bob").access.Approve(access_pb2.DecideRequest(id=req.id))
    active = cp.client("sam").access.Approve(access_pb2.DecideRequest(id=req.id))
    assert active.state == types_pb2.REQUEST_STATE_ACTIVE
    return req.id


def row_of(table: str, first_cell: str) -> str:
    return next(line for line in table.splitlines() if line.strip("│┃ ").startswith(first_cell + " "))


def test_an_extension_is_listed_approved_and_followed_by_its_own_id(cp: ControlPlane) -> None:
    grant = active_prod_grant(cp, "prod fix")
    out = ok("extend", grant, "-d", "30m", "-j", "migration still running", env=cp.cli_env("alice"))
    ext = f"{grant}.1"
    assert f"extension {ext} of request {grant}: +30m is PENDING" in out
    assert f"waiting for level 1/2: `jitgate approve {ext}`" in out

    listed = ok("requests", "--to-approve", env=cp.cli_env("bob"))
    row = row_of(listed, ext)  # the id the approver types
    assert "EXTENSION PENDING" in row and "+30m" in row and "1/2" in row and "migration still running" in row

    before = cp.client("alice").access.GetRequest(access_pb2.GetRequestRequest(id=grant)).expires_at.seconds
    proc_out = ok("approve", grant, "-c", "ok by me", env=cp.cli_env("bob"))  # the grant's id works too
    assert f"extension {ext} of request {grant}: +30m is PENDING" in proc_out
    assert f"waiting for level 2/2: `jitgate approve {ext}`" in proc_out
    assert "level 1/2 [done]: 1 of manager, owner — approved by bob" in proc_out
    assert "level 2/2 [next]: 1 of group:security" in proc_out

    assert "2/2" in row_of(ok("requests", "--to-approve", env=cp.cli_env("sam")), ext)
    done = ok("approve", ext, env=cp.cli_env("sam"))
    assert f"extension {ext} of request {grant}: +30m is APPROVED" in done and "access active until" in done
    after = as_json("requests", "show", grant, env=cp.cli_env("alice"))
    assert after["extensions"][0]["state"] == "EXTENSION_STATE_APPROVED" and after["extensions_used"] == 1
    assert cp.client("alice").access.GetRequest(
        access_pb2.GetRequestRequest(id=grant)).expires_at.seconds == before + 1800


def test_deny_of_a_grant_denies_its_waiting_extension_and_the_grant_stays(cp: ControlPlane) -> None:
    grant = active_prod_grant(cp, "prod check")
    ok("extend", grant, "-d", "15m", "-j", "one more look", env=cp.cli_env("alice"))
    out = ok("deny", grant, "-c", "not today", env=cp.cli_env("bob"))
    assert f"extension {grant}.1 of request {grant}: +15m is DENIED" in out and "access active until" in out
    assert as_json("requests", "show", grant, env=cp.cli_env("alice"))["state"] == "REQUEST_STATE_ACTIVE"


def test_a_pending_request_is_still_approved_by_its_own_id(cp: ControlPlane) -> None:
    out = ok("request", "web-prod-01", "--login", "deploy", "-d", "10m", "-r", "plain", env=cp.cli_env("alice"))
    request_id = out.split()[1].rstrip(":")
    assert "level 2/2 [next]" in ok("approve", request_id, env=cp.cli_env("bob"))


def message_of(cp: ControlPlane, who: str, grant: str) -> Any:
    return as_json("requests", "show", grant, env=cp.cli_env(who))["message"]


@pytest.mark.parametrize("flag", [False, True])
def test_a_break_glass_review_replaces_the_owed_message(cp: ControlPlane, flag: bool) -> None:
    out = ok("request", "web-prod-01", "--login", "deploy", "-d", "15m", "-r", "outage", "--emergency",
             env=cp.cli_env("alice"))
    grant = out.split()[1].rstrip(":")
    assert message_of(cp, "alice", grant) == "break-glass: a review by group:security is owed"
    ok("review", grant, "-c", "seen", *(["--flag"] if flag else []), env=cp.cli_env("sam"))
    word = "flagged" if flag else "reviewed"
    assert message_of(cp, "alice", grant) == f"break-glass: {word} by sam"
    shown = ok("requests", "show", grant, env=cp.cli_env("alice"))
    assert f"break-glass: {word} by sam" in shown and "owed" not in shown


def test_a_revoked_break_glass_grant_keeps_its_revocation_after_review(cp: ControlPlane) -> None:
    out = ok("request", "web-prod-01", "--login", "deploy", "-d", "15m", "-r", "outage 2", "--emergency",
             env=cp.cli_env("alice"))
    grant = out.split()[1].rstrip(":")
    ok("revoke", grant, "-r", "over", env=cp.cli_env("ada"))
    ok("review", grant, "-c", "fine", env=cp.cli_env("sam"))
    assert message_of(cp, "alice", grant) == "revoked by ada: over"
