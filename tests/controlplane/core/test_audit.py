"""The hash-chained audit log: verify catches edited, removed, reordered, inserted and cut events."""
from __future__ import annotations

import itertools
import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.audit import GENESIS, clean_data, data_text, event_hash, make_records
from controlplane.store import from_us
from tests.controlplane.core.helpers import dev, prod


@pytest.fixture
def filled(core):
    rec = prod(core)
    core.approvals.approve("bob", rec.id)
    core.approvals.approve("sam", rec.id)
    core.grants.revoke("ada", dev(core).id, "test")
    ok, count, problems = core.audit.verify_audit()
    assert ok and problems == [] and count == 7
    return core


def tamper(db_path, *sql):
    conn = sqlite3.connect(db_path)
    with conn:
        for s in sql:
            conn.execute(s)
    conn.close()


def test_chain_links_and_hashes(filled):
    events = filled.audit.audit_events(limit=100)
    assert [e.seq for e in events] == list(range(1, 8))
    assert events[0].prev_hash == "0" * 64
    for a, b in itertools.pairwise(events):
        assert b.prev_hash == a.hash
    e = events[3]
    assert e.hash == event_hash(e.seq, e.at, e.type, e.actor, e.subject, e.data, e.prev_hash)


def test_a_batch_hashes_each_event_as_alone():
    """make_records shares the parts events have in common (type, actor, time, data): each hash is
    still the one of its own event, chained, whatever repeats or differs in the batch."""
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    events = [("grant.expired", "system", "r-1", {}, now), ("grant.expired", "system", "r-2", {}, now),
              ("extension.cancelled", "system", "r-1.1", {"reason": "the grant ended"}, now),
              ("grant.expired", "bø\b", 'r-"3', {}, now + timedelta(seconds=1)),
              ("grant.expired", "system", "r-4", {}, now)]
    prev = GENESIS
    for seq, ((rec, text), (type_, actor, subject, data, at)) in enumerate(
            zip(make_records(5, events, GENESIS), events, strict=True), start=5):
        assert (rec.seq, rec.prev_hash, rec.subject, text) == (seq, prev, subject, data_text(data))
        assert rec.hash == event_hash(seq, at, type_, actor, subject, data, prev)
        prev = rec.hash


def test_edited_event_is_caught(filled, db_path):
    row = filled.audit.audit_events(type="grant.revoked")[0]
    data = dict(row.data, reason="nothing to see")
    tamper(db_path, f"UPDATE audit SET data = '{json.dumps(data)}' WHERE seq = {row.seq}")
    ok, _count, problems = filled.audit.verify_audit()
    assert not ok and any(f"event {row.seq}" in p and "edited" in p for p in problems)


def test_edited_actor_is_caught(filled, db_path):
    tamper(db_path, "UPDATE audit SET actor = 'nobody' WHERE seq = 2")
    ok, _c, problems = filled.audit.verify_audit()
    assert not ok and any("event 2" in p for p in problems)


def test_removed_event_is_caught(filled, db_path):
    tamper(db_path, "DELETE FROM audit WHERE seq = 4")
    ok, count, problems = filled.audit.verify_audit()
    assert not ok and count == 6 and any("removed" in p for p in problems)


def test_removed_last_event_is_caught(filled, db_path):
    tamper(db_path, "DELETE FROM audit WHERE seq = 7")
    ok, _c, problems = filled.audit.verify_audit()
    assert not ok and any("head" in p for p in problems)


def test_reordered_events_are_caught(filled, db_path):
    # swap the contents of events 3 and 4 (each row keeps its own valid hash)
    tamper(db_path,
           "UPDATE audit SET seq = -3 WHERE seq = 3",
           "UPDATE audit SET seq = 3 WHERE seq = 4",
           "UPDATE audit SET seq = 4 WHERE seq = -3")
    ok, _c, problems = filled.audit.verify_audit()
    assert not ok and any("reordered" in p for p in problems)


def test_inserted_event_is_caught(filled, db_path):
    # a forged event with a correct hash of its own, slipped in between 5 and 6
    events = {e.seq: e for e in filled.audit.audit_events(limit=100)}
    tamper(db_path, "UPDATE audit SET seq = seq + 100 WHERE seq > 5",
           "UPDATE audit SET seq = seq - 99 WHERE seq > 100")
    e5 = events[5]
    forged = clean_data({"reason": "forged"})
    h = event_hash(6, e5.at, "grant.revoked", "ada", "x", forged, e5.hash)
    tamper(db_path, "INSERT INTO audit (seq, at_us, type, actor, subject, data, prev_hash, hash) VALUES "
           f"(6, (SELECT at_us FROM audit WHERE seq = 5), 'grant.revoked', 'ada', 'x', "
           f"'{json.dumps(forged)}', '{e5.hash}', '{h}')")
    ok, _c, problems = filled.audit.verify_audit()
    assert not ok and problems


def test_a_new_core_continues_the_chain(filled, make_core):
    again = make_core()
    dev(again)
    ok, count, _ = again.audit.verify_audit()
    assert ok and count == 9


def test_secrets_are_refused_in_event_data():
    with pytest.raises(ValueError):
        clean_data({"token": "abc"})


def test_times_round_trip_exactly(filled):
    e = filled.audit.audit_events()[0]
    assert from_us(int((e.at - from_us(0)).total_seconds() * 1_000_000)) == e.at
