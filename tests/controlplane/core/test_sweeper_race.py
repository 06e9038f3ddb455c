"""The sweeper thread, restarts, and the approval race (real threads, real SQLite file)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from controlplane.core import utcnow
from controlplane.errors import JitError
from controlplane.sweeper import Sweeper
from tests.controlplane.core.helpers import dev, prod


def wait_for(core, event_type: str, count: int = 1):
    """A listener that sets an Event once `count` changes of `event_type` were committed."""
    done = threading.Event()
    seen = []

    def on_change(ch):
        if ch.type == event_type:
            seen.append(ch)
            if len(seen) >= count:
                done.set()
    core.ledger.subscribe(on_change)
    return done, seen


def test_sweeper_ends_a_grant_at_its_deadline_without_polling(make_core):
    core = make_core(clock=utcnow)
    done, seen = wait_for(core, "grant.expired")
    sweeper = Sweeper(core)
    sweeper.start()
    try:
        first = sweeper.sweeps
        rec = dev(core, minutes=0.02)  # 1.2 s: created after start, so the sweeper must be woken for it
        assert done.wait(10), "the grant did not expire"
        got = core.requests.get_request("alice", rec.id)
        assert got.state == "EXPIRED" and got.ended_at == rec.expires_at
        assert seen[0].request.id == rec.id
        assert sweeper.sweeps - first <= 10  # woke for the change and the deadline, no polling loop
    finally:
        sweeper.stop()


def test_sweeper_times_out_pending_requests(make_core, clock):
    core = make_core()
    rec = prod(core)
    clock.advance(hours=1)
    sweeper = Sweeper(core, clock=clock)
    sweeper.start()  # start sweeps once, synchronously
    sweeper.stop()
    assert core.requests.get_request("alice", rec.id).state == "TIMED_OUT"


def test_restart_ends_grants_that_expired_while_down(make_core, clock):
    first = make_core()
    grants = [dev(first, minutes=m) for m in (5, 10, 120)]
    pending = prod(first)
    first.ledger.store.close()
    clock.advance(minutes=61)  # "the server was down for an hour"
    second = make_core()
    sweeper = Sweeper(second, clock=clock)
    sweeper.start()
    sweeper.stop()
    states = [second.requests.get_request("ada", g.id).state for g in grants]
    assert states == ["EXPIRED", "EXPIRED", "ACTIVE"]
    assert second.requests.get_request("ada", pending.id).state == "TIMED_OUT"
    assert second.audit.verify_audit()[0]


def test_many_grants_expiring_together_end_in_one_sweep(make_core, clock):
    core = make_core()
    ids = [dev(core, user=u, minutes=30).id for u in ("alice", "dave", "bob", "sam") for _ in range(30)]
    clock.advance(minutes=30)
    changes = []
    core.ledger.subscribe(changes.append)
    core.grants.sweep()
    assert all(r.state == "EXPIRED" for r in (core.requests.get_request("ada", i) for i in ids))
    assert sorted(c.request.id for c in changes if c.type == "grant.expired") == sorted(ids)
    assert core.audit.verify_audit()[0]


def test_approval_race_activates_once(make_core):
    core = make_core(clock=utcnow)
    for _round in range(5):
        rec = prod(core)
        core.approvals.approve("bob", rec.id)
        barrier = threading.Barrier(3)
        results: dict[str, object] = {}

        def approve(who: str) -> None:
            barrier.wait()
            try:
                results[who] = core.approvals.approve(who, rec.id).state
            except JitError as e:
                results[who] = e.code

        threads = [threading.Thread(target=approve, args=(w,)) for w in ("sam", "sara", "mia")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(map(str, results.values())) == ["ACTIVE", "approval.not_pending", "approval.not_pending"]
        got = core.requests.get_request("ada", rec.id)
        assert got.state == "ACTIVE" and len(got.approvals) == 2
        assert [e.type for e in core.audit.audit_events(subject=rec.id)].count("grant.activated") == 1
    assert core.audit.verify_audit()[0]


def test_concurrent_writers_keep_one_chain(make_core):
    core = make_core(clock=utcnow)
    errors = []

    def work() -> None:
        try:
            for _ in range(10):
                rec = dev(core)
                core.grants.extend("alice", rec.id, timedelta(minutes=5), "more")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    ok, count, problems = core.audit.verify_audit()
    assert ok, problems
    assert count == 40 * 4  # created, activated, extension.requested, grant.extended


@pytest.mark.parametrize("flag", [False, True])
def test_deny_race_with_approve(make_core, flag):
    core = make_core(clock=utcnow)
    rec = prod(core)
    core.approvals.approve("bob", rec.id)
    barrier = threading.Barrier(2)
    out = {}

    def act(who, fn):
        barrier.wait()
        try:
            out[who] = fn(who, rec.id).state
        except JitError as e:
            out[who] = e.code

    order = [("sam", core.approvals.approve), ("sara", core.approvals.deny)]
    if flag:
        order.reverse()
    threads = [threading.Thread(target=act, args=a) for a in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    final = core.requests.get_request("ada", rec.id).state
    assert final in ("ACTIVE", "DENIED")
    assert sorted(out.values()) == sorted([final, "approval.not_pending"])


def test_approval_race_across_two_stores_on_one_file(make_core):
    """Two cores with their own engines and process locks (as two server processes would be):
    SQLite's BEGIN IMMEDIATE alone must keep the second approval from activating again."""
    a, b = make_core(clock=utcnow), make_core(clock=utcnow)
    for _round in range(5):
        rec = prod(a)
        a.approvals.approve("bob", rec.id)
        barrier = threading.Barrier(2)
        results = []

        def approve(core, who):
            barrier.wait()
            try:
                results.append(core.approvals.approve(who, rec.id).state)
            except JitError as e:
                results.append(e.code)

        threads = [threading.Thread(target=approve, args=(a, "sam")),
                   threading.Thread(target=approve, args=(b, "sara"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert sorted(results) == ["ACTIVE", "approval.not_pending"]
        assert [e.type for e in b.audit.audit_events(subject=rec.id)].count("grant.activated") == 1
    ok, _n, problems = a.audit.verify_audit()
    assert ok, problems


def test_sweeper_wakes_only_for_an_earlier_deadline(make_core):
    """Changes whose deadline is later than the one awaited cause no sweep (each is a write
    transaction); a change with an earlier deadline still ends on time."""
    core = make_core(clock=utcnow)
    dev(core, minutes=60)
    done, seen = wait_for(core, "grant.expired")
    sweeper = Sweeper(core)
    sweeper.start()
    try:
        first = sweeper.sweeps
        for _ in range(30):
            dev(core, minutes=120)  # later than the awaited deadline: nothing to do
        core.grants.revoke("alice", dev(core, minutes=90).id)  # no deadline left at all
        short = dev(core, minutes=0.01)  # 0.6 s: earlier, so the sweeper must wake for it
        assert done.wait(10), "the grant did not expire"
        assert seen[0].request.id == short.id
        assert core.requests.get_request("alice", short.id).state == "EXPIRED"
        assert sweeper.sweeps - first <= 2
    finally:
        sweeper.stop()
