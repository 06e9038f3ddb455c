"""The request life cycle of DESIGN.md / POLICY.md, refusals as hard as the happy path."""
from __future__ import annotations

from datetime import timedelta

import pytest

from controlplane.errors import JitError, grpc_status_name
from tests.controlplane.core.helpers import dev, prod


def types(core, subject=None):
    return [e.type for e in core.audit.audit_events(limit=1000, subject=subject or "")]


def refused(code, fn, *args, **kw):
    with pytest.raises(JitError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value
    assert info.value.message
    return info.value


# -- creation -------------------------------------------------------------------------

def test_auto_approval_is_active_at_once_with_the_clock_started(core, clock):
    rec = dev(core, minutes=90)
    assert rec.state == "ACTIVE"
    assert rec.activated_at == clock.now
    assert rec.expires_at == clock.now + timedelta(minutes=90)
    assert rec.decision.approval.mode == "auto"
    assert types(core, rec.id) == ["request.created", "grant.activated"]
    assert core.requests.get_request("alice", rec.id).state == "ACTIVE"


def test_validation_refuses_and_stores_nothing(core):
    refused("resource.not_found", core.requests.create_request, "alice", "nope", login="deploy",
            duration=timedelta(hours=1), reason="x")
    refused("invalid.argument", core.requests.create_request, "alice", "web-dev-01", login="admin",
            duration=timedelta(hours=1), reason="x")
    refused("invalid.argument", core.requests.create_request, "alice", "web-dev-01", role="readonly",
            duration=timedelta(hours=1), reason="x")
    refused("invalid.argument", core.requests.create_request, "alice", "orders-db", role="superuser",
            duration=timedelta(hours=1), reason="x")
    refused("invalid.argument", core.requests.create_request, "alice", "web-dev-01", login="deploy",
            duration=timedelta(hours=1), reason="   ")
    refused("invalid.argument", core.requests.create_request, "alice", "web-dev-01", login="deploy",
            duration=timedelta(0), reason="x")
    refused("invalid.argument", core.requests.create_request, "alice", "web-dev-01", login="deploy",
            duration=None, reason="x")  # no duration and no recommender
    refused("permission.denied", core.requests.create_request, "mallory", "web-dev-01", login="deploy",
            duration=timedelta(hours=1), reason="x")
    assert core.requests.list_requests("ada")[0] == []
    assert core.audit.audit_events() == []


def test_duration_over_max_is_denied_on_the_record_with_the_maximum(core):
    rec = prod(core, minutes=180)
    assert rec.state == "DENIED"
    assert "2h" in rec.message
    assert core.requests.get_request("alice", rec.id).state == "DENIED"
    denied = core.audit.audit_events(type="request.denied")
    assert denied[0].data["code"] == "duration.over_max"


def test_policy_deny_is_stored_with_the_message(core):
    rec, _ = core.requests.create_request("cora", "orders-db", role="readonly", duration=timedelta(minutes=30),
                                 reason="report")
    assert rec.state == "DENIED"
    assert rec.message == "contractors have no production access"
    assert rec.decision.rules == ["no-contractors-in-prod"]


def test_dry_run_decides_and_stores_nothing(core):
    rec, rec_rec = core.requests.create_request("alice", "web-prod-01", login="deploy", duration=timedelta(hours=1),
                                       reason="look", dry_run=True)
    assert rec.id == "" and rec.state == "PENDING" and rec_rec is None
    assert core.requests.list_requests("ada")[0] == [] and core.audit.audit_events() == []


# -- approvals ------------------------------------------------------------------------

def test_multi_level_approval_then_the_clock_starts_at_activation(core, clock):
    rec = prod(core, minutes=60)
    assert rec.state == "PENDING" and rec.current_level == 0
    assert "manager or owner" in rec.message
    clock.advance(minutes=10)
    rec = core.approvals.approve("bob", rec.id, "ok from manager")
    assert rec.state == "PENDING" and rec.current_level == 1
    assert "group:security" in rec.message
    clock.advance(minutes=5)
    rec = core.approvals.approve("sam", rec.id)
    assert rec.state == "ACTIVE"
    assert rec.activated_at == clock.now
    assert rec.expires_at == clock.now + timedelta(minutes=60)
    assert [(a.approver, a.level) for a in rec.approvals] == [("bob", 0), ("sam", 1)]
    assert types(core, rec.id) == ["request.created", "approval.granted", "approval.granted", "grant.activated"]


def test_self_approval_is_refused(core):
    rec, _ = core.requests.create_request("mia", "web-prod-01", login="deploy", duration=timedelta(hours=1),
                                 reason="x")
    core.approvals.approve("bob", rec.id)  # mia's manager
    # mia is in security: eligible, but she is the requester
    e = refused("approval.self", core.approvals.approve, "mia", rec.id)
    assert grpc_status_name(e.code) == "PERMISSION_DENIED"


def test_ineligible_approver_is_refused(core):
    rec = prod(core)
    refused("approval.not_eligible", core.approvals.approve, "dave", rec.id)
    refused("approval.not_eligible", core.approvals.approve, "cora", rec.id)
    assert core.requests.get_request("ada", rec.id).approvals == []


def test_second_level_approver_cannot_approve_first(core):
    rec = prod(core)
    e = refused("approval.level_order", core.approvals.approve, "sam", rec.id)
    assert "level 1" in e.message
    assert core.requests.get_request("ada", rec.id).current_level == 0


def test_nobody_counts_for_two_levels(core):
    rec = prod(core)
    rec = core.approvals.approve("olive", rec.id)  # owner of web-prod-01: level 1
    assert rec.current_level == 1
    refused("approval.two_levels", core.approvals.approve, "olive", rec.id)  # also security: level 2, but not twice
    assert core.approvals.approve("sara", rec.id).state == "ACTIVE"


def test_any_eligible_deny_ends_it(core, clock):
    rec = prod(core)
    core.approvals.approve("bob", rec.id)
    refused("approval.not_eligible", core.approvals.deny, "dave", rec.id)
    refused("approval.self", core.approvals.deny, "alice", rec.id)
    rec = core.approvals.deny("sam", rec.id, "not during the freeze")
    assert rec.state == "DENIED" and "not during the freeze" in rec.message
    assert rec.ended_at == clock.now
    refused("approval.not_pending", core.approvals.approve, "sam", rec.id)


def test_approve_unknown_id(core):
    refused("request.not_found", core.approvals.approve, "bob", "feedface")


# -- cancel, revoke -------------------------------------------------------------------


def test_cancel_by_requester_only_and_only_while_pending(core):
    rec = prod(core)
    refused("permission.denied", core.requests.cancel, "bob", rec.id)
    refused("permission.denied", core.requests.cancel, "ada", rec.id)
    assert core.requests.cancel("alice", rec.id).state == "CANCELLED"
    refused("request.not_pending", core.requests.cancel, "alice", rec.id)
    active = dev(core)
    refused("request.not_pending", core.requests.cancel, "alice", active.id)


def test_revoke_by_admin_or_requester_only(core):
    a, b = dev(core), dev(core)
    refused("permission.denied", core.grants.revoke, "dave", a.id, "no")
    refused("permission.denied", core.grants.revoke, "bob", a.id, "no")
    r = core.grants.revoke("ada", a.id, "suspicious")
    assert r.state == "REVOKED" and "suspicious" in r.end_reason
    assert core.grants.revoke("alice", b.id).state == "REVOKED"
    refused("grant.not_active", core.grants.revoke, "ada", a.id)
    pending = prod(core)
    refused("grant.not_active", core.grants.revoke, "ada", pending.id)


# -- break-glass ----------------------------------------------------------------------


def test_break_glass_is_active_at_once_and_owes_a_review(core):
    rec, _ = core.requests.create_request(
        "alice", "web-prod-01", login="deploy", duration=timedelta(minutes=30), reason="outage", emergency=True
    )
    assert rec.state == "ACTIVE" and rec.review_state == "OWED"
    assert rec.decision.approval.mode == "break_glass"
    refused("review.self", core.approvals.review, "alice", rec.id, False, "fine")
    refused("review.not_eligible", core.approvals.review, "bob", rec.id, False, "fine")
    rec = core.approvals.review("sam", rec.id, True, "ran rm -rf on the wrong host")
    assert rec.review_state == "FLAGGED" and rec.review_by == "sam"
    refused("review.not_owed", core.approvals.review, "sara", rec.id, False, "")
    # the flag is in the requester's history for the next decision
    nxt = dev(core)
    assert nxt.history["flagged_90d"] == 1
    assert nxt.history["granted_90d"] == 1


def test_break_glass_not_for_non_oncall(core):
    rec, _ = core.requests.create_request(
        "dave", "web-prod-01", login="deploy", duration=timedelta(minutes=30), reason="outage", emergency=True
    )
    assert rec.state == "PENDING" and rec.review_state == ""
    refused("review.not_owed", core.approvals.review, "sam", rec.id, False, "")


# -- extensions -----------------------------------------------------------------------


def test_auto_extension_moves_the_deadline_up_to_the_limit(core, clock):
    rec = dev(core, minutes=60)
    first_expiry = rec.expires_at
    refused("invalid.argument", core.grants.extend, "alice", rec.id, timedelta(minutes=30), "  ")
    refused("permission.denied", core.grants.extend, "bob", rec.id, timedelta(minutes=30), "more")
    rec = core.grants.extend("alice", rec.id, timedelta(minutes=30), "tests still running")
    assert rec.expires_at == first_expiry + timedelta(minutes=30)
    assert rec.extensions_used == 1 and rec.extensions[0].state == "APPROVED"
    rec = core.grants.extend("alice", rec.id, timedelta(minutes=30), "one more")
    assert rec.extensions_used == 2
    e = refused("extension.limit", core.grants.extend, "alice", rec.id, timedelta(minutes=30), "again")
    assert "2" in e.message
    assert core.requests.get_request("alice", rec.id).expires_at == first_expiry + timedelta(minutes=60)
    refusal = core.audit.audit_events(type="extension.refused")
    assert refusal and refusal[-1].data["code"] == "extension.limit"


def test_extension_needing_approval(core):
    rec, _ = core.requests.create_request(
        "alice", "web-stage-01", login="deploy", duration=timedelta(hours=1), reason="migration"
    )
    assert rec.state == "ACTIVE"
    before = rec.expires_at
    rec = core.grants.extend("alice", rec.id, timedelta(minutes=45), "migration is slow")
    ext = rec.pending_extension
    assert ext is not None and ext.id == f"{rec.id}.1" and ext.state == "PENDING"
    assert rec.expires_at == before
    refused("extension.pending", core.grants.extend, "alice", rec.id, timedelta(minutes=10), "more")
    refused("approval.self", core.approvals.approve, "alice", ext.id)
    refused("approval.not_eligible", core.approvals.approve, "owen", ext.id)
    assert rec.id in [r.id for r in core.requests.list_requests("sam", to_approve=True)[0]]
    rec = core.approvals.approve("sam", ext.id)
    assert rec.expires_at == before + timedelta(minutes=45)
    assert rec.extensions[0].state == "APPROVED" and rec.extensions_used == 1
    # a second one can be denied by an eligible approver; the deadline stays
    rec = core.grants.extend("alice", rec.id, timedelta(minutes=15), "cleanup")
    rec = core.approvals.deny("sara", rec.pending_extension.id, "enough")
    assert rec.extensions[-1].state == "DENIED" and rec.expires_at == before + timedelta(minutes=45)


def test_extension_over_the_limit_and_over_max(core):
    rec = prod(core, minutes=60)
    core.approvals.approve("bob", rec.id)
    rec = core.approvals.approve("sam", rec.id)
    refused("duration.over_max", core.grants.extend, "alice", rec.id, timedelta(hours=3), "long job")
    rec = core.grants.extend("alice", rec.id, timedelta(minutes=30), "still on it")
    ext = rec.pending_extension
    refused("approval.level_order", core.approvals.approve, "sam", ext.id)
    core.approvals.approve("bob", ext.id)
    rec = core.approvals.approve("sara", ext.id)
    assert rec.extensions_used == 1
    refused("extension.limit", core.grants.extend, "alice", rec.id, timedelta(minutes=30), "again")  # max_extensions: 1


def test_extension_of_an_ended_grant_is_refused(core):
    rec = dev(core)
    core.grants.revoke("ada", rec.id)
    refused("grant.not_active", core.grants.extend, "alice", rec.id, timedelta(minutes=5), "more")


# -- deadlines (the sweep, driven by the clock) ---------------------------------------


def test_expiry_and_pending_timeout_via_sweep(core, clock):
    grant = dev(core, minutes=30)
    pending = prod(core)
    assert core.grants.sweep() == grant.expires_at
    clock.advance(minutes=30)
    nxt = core.grants.sweep()
    g = core.requests.get_request("alice", grant.id)
    assert g.state == "EXPIRED" and g.ended_at == grant.expires_at and g.end_reason == "expired"
    assert nxt == pending.pending_deadline
    clock.advance(minutes=30)  # pending_timeout is 1h in the test policy
    assert core.grants.sweep() is None
    p = core.requests.get_request("alice", pending.id)
    assert p.state == "TIMED_OUT"
    refused("approval.not_pending", core.approvals.approve, "bob", pending.id)
    # both stay queryable after they end
    ended = core.requests.list_requests("ada", states=["EXPIRED", "TIMED_OUT"])[0]
    assert {r.id for r in ended} == {grant.id, pending.id}


def test_pending_extension_is_cancelled_when_the_grant_expires(core, clock):
    rec, _ = core.requests.create_request(
        "alice", "web-stage-01", login="deploy", duration=timedelta(minutes=20), reason="migration"
    )
    rec = core.grants.extend("alice", rec.id, timedelta(minutes=30), "slow")
    clock.advance(minutes=21)
    core.grants.sweep()
    rec = core.requests.get_request("alice", rec.id)
    assert rec.state == "EXPIRED" and rec.extensions[0].state == "CANCELLED"
    refused("approval.not_pending", core.approvals.approve, "sam", rec.extensions[0].id)


# -- visibility -----------------------------------------------------------------------


def test_visibility_own_approvable_admin(core):
    mine = prod(core)
    other = dev(core, user="dave")
    refused("permission.denied", core.requests.get_request, "dave", mine.id)
    assert core.requests.get_request("bob", mine.id).id == mine.id  # alice's manager may approve it
    assert core.requests.get_request("sam", mine.id).id == mine.id  # security: level 2
    refused("permission.denied", core.requests.get_request, "bob", other.id)
    assert {r.id for r in core.requests.list_requests("ada")[0]} == {mine.id, other.id}
    assert [r.id for r in core.requests.list_requests("dave")[0]] == [other.id]
    assert [r.id for r in core.requests.list_requests("alice", mine=True)[0]] == [mine.id]
    assert [r.id for r in core.requests.list_requests("bob", to_approve=True)[0]] == [mine.id]
    assert core.requests.list_requests("sam", to_approve=True)[0] == []  # level 1 first
    core.approvals.approve("bob", mine.id)
    assert core.requests.list_requests("bob", to_approve=True)[0] == []
    assert [r.id for r in core.requests.list_requests("sam", to_approve=True)[0]] == [mine.id]


def test_paging_is_complete_and_without_duplicates(core):
    ids = {dev(core).id for _ in range(7)}
    seen, token, pages = [], "", 0
    while True:
        page, token = core.requests.list_requests("alice", page_size=3, page_token=token)
        seen += [r.id for r in page]
        pages += 1
        if not token:
            break
    assert pages == 3 and len(seen) == 7 and set(seen) == ids
    refused("invalid.argument", core.requests.list_requests, "alice", page_token="zzz")


def test_listeners_hear_changes_after_commit(core):
    got = []
    unsubscribe = core.ledger.subscribe(
        lambda ch: got.append(
            (
                ch.type,
                ch.request.state if ch.request else None,
                core.requests.get_request("ada", ch.request.id).state if ch.request else None,
            )
        )
    )
    rec = prod(core)
    core.approvals.approve("bob", rec.id)
    core.approvals.approve("sam", rec.id)
    unsubscribe()
    dev(core)
    # each change is visible in the store when the listener runs (called after commit)
    assert got == [
        ("request.created", "PENDING", "PENDING"),
        ("approval.granted", "PENDING", "PENDING"),
        ("approval.granted", "ACTIVE", "ACTIVE"),
        ("grant.activated", "ACTIVE", "ACTIVE"),
    ]


def test_roles(core):
    assert core.ledger.roles_of("ada") >= {"user", "admin"}
    assert "approver" in core.ledger.roles_of("bob") and "approver" in core.ledger.roles_of("sam")
    assert "approver" in core.ledger.roles_of("owen")  # owner of web-prod-01 (owner approves level 1)
    assert core.ledger.roles_of("dave") == frozenset({"user"})
    assert core.ledger.roles_of("broker-1") == frozenset({"broker"})
    assert core.ledger.roles_of("stranger") == frozenset()
