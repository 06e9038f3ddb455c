"""Dashboard, exports (policy-diff requests, recommender history), recommendations, a failed change.

The store's own tests (migrations, engine, each table group) are in tests/controlplane/store/."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from controlplane.errors import JitError
from policy import PolicyRequest
from tests.controlplane.core.helpers import dev, prod


def used_session(core, clock, rec, minutes):
    """A broker session on a grant that lasts `minutes` (no credential needed: a db grant with a token)."""
    token, _ = core.credentials.issue_database_token(rec.user, rec.id)
    sess, _, _ = core.sessions.authorize_session("broker-1", "postgres", rec.resource, db_token=token, channel="pg")
    clock.advance(minutes=minutes)
    core.sessions.end_session("broker-1", sess.id, "client_exit")


def db_grant(core, user="alice", minutes=60, reason="weekly report", ticket=""):
    rec, _ = core.requests.create_request(user, "dev-db", role="readonly", duration=timedelta(minutes=minutes),
                                 reason=reason, ticket=ticket)
    return rec


def test_dashboard(core, clock):
    a = db_grant(core, minutes=60)
    used_session(core, clock, a, 20)
    pending = prod(core)
    denied = prod(core, minutes=600)
    bg, _ = core.requests.create_request("alice", "web-prod-01", login="deploy", duration=timedelta(minutes=30),
                                reason="outage", emergency=True)
    clock.advance(minutes=45)
    core.grants.sweep()  # a expires (60 min), bg expires (30 min)
    d = core.dashboards.dashboard("ada")
    assert [r.id for r in d.pending] == [pending.id]
    assert d.active == []
    assert d.expired_24h == 2
    assert d.avg_granted_minutes == pytest.approx(45.0)       # (60 + 30) / 2
    assert d.avg_used_minutes == pytest.approx(20.0)
    assert d.approval_rate == pytest.approx(2 / 3)            # a, bg activated; `denied` denied
    assert [r.id for r in d.reviews_owed] == [bg.id]
    assert denied.state == "DENIED"
    mine = core.dashboards.dashboard("dave")
    assert mine.pending == [] and mine.reviews_owed == [] and mine.expired_24h == 0
    assert [r.id for r in core.dashboards.dashboard("sam").reviews_owed] == [bg.id]


def test_export_requests_round_trips_through_the_policy_request_shape(core, clock, policy_set):
    a = dev(core, minutes=30, ticket="OPS-1")
    core.grants.extend("alice", a.id, timedelta(minutes=15), "more")
    p = prod(core)
    rows = list(core.audit.export_requests(days=7))
    assert [r["id"] for r in rows] == [a.id, f"{a.id}.1", p.id]
    assert rows[0]["time"] == "2026-11-18T10:00:00Z" and rows[0]["ticket"] == "OPS-1"
    assert rows[1]["extension"] == 1 and rows[1]["duration"] == "15m"
    json.dumps(rows)  # JSON lines
    for row in rows:
        req = PolicyRequest.from_mapping(row)
        # replaying gives the decision that was recorded
        decision = policy_set.decide(req)
        assert decision.effect == "allow"
    assert policy_set.decide(PolicyRequest.from_mapping(rows[2])).approval.mode == "levels"
    clock.advance(days=10)
    assert list(core.audit.export_requests(days=7)) == []


def test_export_history_rows(core, clock):
    a = db_grant(core, minutes=60, ticket="REP-7")
    used_session(core, clock, a, 25)
    core.grants.revoke("alice", a.id, "done early")
    b = db_grant(core, minutes=30)  # no session: not in the history
    core.grants.revoke("alice", b.id)
    live = db_grant(core, minutes=30)  # still active: its use is not known yet
    used_session(core, clock, live, 5)
    rows = list(core.audit.export_history(days=30))
    assert len(rows) == 1
    row = rows[0]
    assert row == {"user": "alice", "resource": "dev-db", "kind": "postgres", "labels": {"env": "dev"},
                   "role": "readonly", "reason": "weekly report", "ticket": "REP-7",
                   "requested_at": "2026-11-18T10:00:00Z", "asked_minutes": 60.0, "used_minutes": 25.0,
                   "extensions": 0}
    from recommend import parse_lines
    parsed = list(parse_lines([json.dumps(row)], "export"))
    assert parsed[0].used_minutes == 25.0
    # and the requester's history now carries the median used time on this resource
    nxt = db_grant(core)
    assert nxt.history["median_minutes"] == pytest.approx(15.0)  # median of 25 and 5
    assert nxt.history["revoked_90d"] == 2


def test_past_rows_keep_the_requesters_and_the_resources_apart(core, clock):
    """The risk score reads the requester's rows and anyone's on the resource apart; the duration
    model every row once."""
    for user, minutes in (("alice", 25), ("dave", 10)):
        rec = db_grant(core, user=user)
        used_session(core, clock, rec, minutes)
        core.grants.revoke(user, rec.id, "done")
    past = core.history.past_rows("alice", "dev-db", clock.now)
    assert [(r.user, r.used_minutes) for r in past.rows] == [("alice", 25.0), ("dave", 10.0)]
    assert [r.user for r in past.mine] == ["alice"]
    assert [r.user for r in past.on_resource] == ["alice", "dave"]
    assert past.mine[0] is past.on_resource[0]  # one row, in both lists
    elsewhere = core.history.past_rows("alice", "orders-db", clock.now)
    assert [r.user for r in elsewhere.rows] == [r.user for r in elsewhere.mine] == ["alice"]
    assert elsewhere.on_resource == []


def test_recommender_is_optional_and_used_when_given(make_core, clock, tmp_path):
    plain = make_core()
    with pytest.raises(JitError) as e:
        plain.history.recommend("alice", "dev-db", role="readonly", reason="report")
    assert e.value.code == "recommend.unavailable"
    from recommend import Recommender
    core = make_core(recommender=Recommender(None))
    rec = core.history.recommend("alice", "dev-db", role="readonly", reason="report")
    assert rec.fallback and rec.duration > timedelta(0) and rec.max_duration == timedelta(hours=8)
    created, recommendation = core.requests.create_request("alice", "dev-db", role="readonly", duration=None,
                                                  reason="report")
    assert created.duration == recommendation.duration and created.state == "ACTIVE"
    with pytest.raises(JitError) as e:
        core.history.recommend("alice", "nope", reason="x")
    assert e.value.code == "resource.not_found"


def test_a_failed_change_writes_nothing(core):
    rec = prod(core)
    before = core.audit.audit_events(limit=1000)
    with pytest.raises(JitError):
        core.approvals.approve("sam", rec.id)  # level order: refused inside the write transaction
    assert core.audit.audit_events(limit=1000) == before
    assert core.requests.get_request("ada", rec.id).approvals == []
