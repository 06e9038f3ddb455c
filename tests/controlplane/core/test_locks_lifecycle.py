"""Locks, on-first-use claims and session counts in the core, on SQLite and on PostgreSQL
(the same store code on both: the lock table, the claim marker and CLAIM_EXPIRED in `end_due`)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from controlplane.errors import JitError
from policy import load_policy_text
from tests.controlplane.core.conftest import POLICIES
from tests.controlplane.core.helpers import dev
from tests.controlplane.core.test_postgres import pg_make_core, pg_schema  # noqa: F401 (fixtures)

EXTRA_RULES = """
  - name: dev-db-first-use
    when: resource.name == "dev-db"
    effect: require
    activate: on_first_use
    claim_within: 10m
    max_sessions: 2
"""


@pytest.fixture(params=["sqlite", "postgres"])
def make(request, make_core):
    if request.param == "sqlite":
        return make_core
    return request.getfixturevalue("pg_make_core")


def _policy():
    return load_policy_text(POLICIES.read_text() + EXTRA_RULES, "policies.yaml")


def test_a_lock_ends_grants_refuses_new_ones_ends_by_itself_and_is_lifted(make, clock) -> None:
    core = make()
    mine, theirs = dev(core, "alice"), dev(core, "dave")
    with pytest.raises(JitError) as info:
        core.locks.lock("alice", "user", "dave", "no")
    assert info.value.code == "permission.denied"
    lock, ended = core.locks.lock("ada", "user", "alice", "laptop stolen", until=clock() + timedelta(minutes=30))
    assert ended == [mine.id]
    assert core.requests.get_request("ada", mine.id).state == "REVOKED"
    assert core.requests.get_request("ada", theirs.id).state == "ACTIVE"
    with pytest.raises(JitError) as info:
        dev(core, "alice")
    assert info.value.code == "lock.active" and "laptop stolen" in info.value.message
    assert [lk.id for lk in core.locks.list_locks("ada")] == [lock.id]
    clock.advance(minutes=31)  # `until` passed: the lock ends by itself
    assert core.locks.list_locks("ada") == []
    dev(core, "alice")
    second, _ = core.locks.lock("ada", "resource", "web-dev-01", "incident")
    with pytest.raises(JitError):
        dev(core, "dave")
    core.locks.unlock("ada", second.id, "over")
    dev(core, "dave")
    with pytest.raises(JitError) as info:
        core.locks.unlock("ada", second.id)
    assert info.value.code == "lock.not_active"
    assert len(core.locks.list_locks("ada", include_inactive=True)) == 2


def test_first_use_claims_at_the_first_session_and_unused_grants_lapse(make, clock) -> None:
    core = make(policy=_policy())
    used, _ = core.requests.create_request("alice", "dev-db", role="readonly", duration=timedelta(minutes=30),
                                           reason="report")
    unused, _ = core.requests.create_request("dave", "dev-db", role="readonly", duration=timedelta(minutes=30),
                                             reason="report")
    assert used.state == "ACTIVE" and used.expires_at == clock() + timedelta(minutes=10)
    token, _ = core.credentials.issue_database_token("alice", used.id)
    with pytest.raises(JitError) as info:
        core.grants.extend("alice", used.id, timedelta(minutes=5), "more")
    assert info.value.code == "grant.unclaimed"
    clock.advance(minutes=5)
    _sess, rec, _ = core.sessions.authorize_session("broker-1", "postgres", "dev-db", role="readonly", db_token=token)
    assert rec.activated_at == clock() and rec.expires_at == clock() + timedelta(minutes=30)
    core.sessions.authorize_session("broker-1", "postgres", "dev-db", role="readonly", db_token=token)
    with pytest.raises(JitError) as info:  # max_sessions: 2
        core.sessions.authorize_session("broker-1", "postgres", "dev-db", role="readonly", db_token=token)
    assert info.value.code == "session.limit"
    clock.advance(minutes=6)
    core.grants.sweep()
    assert core.requests.get_request("ada", unused.id).state == "CLAIM_EXPIRED"
    assert core.requests.get_request("ada", used.id).state == "ACTIVE"  # claimed: its own 30 minutes
    events = [e.type for e in core.audit.audit_events(limit=1000)]
    assert "grant.claimed" in events and "grant.claim_expired" in events


def test_a_lock_over_many_pages_of_grants_ends_them_all(make_core, monkeypatch) -> None:
    import controlplane.locks

    monkeypatch.setattr(controlplane.locks, "GRANTS_PAGE", 2)  # five grants: three pages
    core = make_core()
    grants = [dev(core, "alice") for _ in range(5)]
    other = dev(core, "dave")
    _lock, ended = core.locks.lock("ada", "all", "", "incident")
    assert sorted(ended) == sorted([g.id for g in grants] + [other.id])
    assert {core.requests.get_request("ada", g.id).state for g in grants} == {"REVOKED"}


def test_grants_a_crash_left_under_a_lock_are_ended_by_the_sweepers_pass(make, clock, monkeypatch) -> None:
    """The lock and its event commit first, the grants under it end in a second transaction: when
    the plane stops in between, the lock already refuses everything and the sweeper ends the rest."""
    from controlplane.locks import LockService
    from controlplane.sweeper import Sweeper

    core = make()
    mine, theirs = dev(core, "alice"), dev(core, "dave")

    def crash(*_a, **_kw):
        raise RuntimeError("the plane stopped here")

    with monkeypatch.context() as m:
        m.setattr(LockService, "_end_grants", crash)
        with pytest.raises(RuntimeError):
            core.locks.lock("ada", "user", "alice", "laptop stolen")
    [lock] = core.locks.list_locks("ada")
    assert core.requests.get_request("ada", mine.id).state == "ACTIVE"  # not ended yet ...
    with pytest.raises(JitError) as info:  # ... but nothing new starts under the lock
        dev(core, "alice")
    assert info.value.code == "lock.active"
    sweeper = Sweeper(core, clock)
    sweeper.start()  # one pass before returning, as at every start
    sweeper.stop()
    ended = core.requests.get_request("ada", mine.id)
    assert ended.state == "REVOKED" and "laptop stolen" in ended.end_reason
    assert core.requests.get_request("ada", theirs.id).state == "ACTIVE"  # not under the lock
    revoked = [e for e in core.audit.audit_events(limit=1000) if e.type == "grant.revoked"]
    assert [(e.subject, e.data["lock_id"]) for e in revoked] == [(mine.id, lock.id)]
    # Nothing left under a lock in force: a pass ends nothing and writes nothing.
    before = len(core.audit.audit_events(limit=1000))
    assert core.locks.end_locked_grants() == []
    assert len(core.audit.audit_events(limit=1000)) == before
    # A lifted lock ends nothing.
    core.locks.unlock("ada", lock.id, "found")
    later = dev(core, "alice")
    assert core.locks.end_locked_grants() == []
    assert core.requests.get_request("ada", later.id).state == "ACTIVE"
