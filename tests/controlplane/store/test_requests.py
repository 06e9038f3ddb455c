"""Requests, approvals and extensions (controlplane/store/requests.py)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.model import CLAIM_EXPIRED, EXT_CANCELLED, PENDING, UNCLAIMED, ApprovalRecord
from controlplane.scaleout.storeurl import normalize
from controlplane.store import SqlStore
from controlplane.store.requests import stored_record
from tests.controlplane.core.helpers import START
from tests.controlplane.store.records import extension, request
from tests.pgstore import pg_store


@pytest.fixture(params=["sqlite", "postgresql"])
def either_store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[SqlStore]:
    """A bare store on SQLite and on PostgreSQL (their bulk reads differ: IN chunks, = ANY)."""
    if request.param == "sqlite":
        s = SqlStore.open_sqlite(db_path)
        yield s
        s.close()
        return
    with pg_store("jg_requests") as url:
        s = SqlStore.open_url(normalize(url))
        yield s
        s.close()


def test_a_request_reads_the_same_by_id_by_ids_and_by_query(store: SqlStore) -> None:
    """One record whichever way it is read: its extensions and approvals (on the request and on
    each extension) attached in order, by the prebuilt single read and the batched one alike."""
    with store.write() as tx:
        tx.insert_request(request("r-1"))
        tx.insert_request(request("r-2", user="bob"))
        tx.insert_extension(extension("r-1", 1))
        tx.insert_extension(extension("r-1", 2))
        tx.add_approval("r-1", "", ApprovalRecord("sam", 0, True, "ok", START))
        tx.add_approval("r-1", "r-1.2", ApprovalRecord("sam", 0, True, "ext", START))
        tx.add_approval("r-1", "", ApprovalRecord("sec", 1, False, "no", START + timedelta(seconds=1)))
    with store.read() as tx:
        one = tx.get_request("r-1")
        assert one is not None
        assert [a.approver for a in one.approvals] == ["sam", "sec"]
        assert [e.id for e in one.extensions] == ["r-1.1", "r-1.2"]
        assert [a.comment for a in one.extensions[1].approvals] == ["ext"] and one.extensions[0].approvals == []
        assert tx.get_requests(["r-1", "nope", "r-2"]) == [one, tx.get_request("r-2")]
        assert [rec for _num, rec in tx.query_requests(user="alice")] == [one]
        assert tx.find_extension("r-1.2") == "r-1"
        assert tx.requests_with_pending_extensions() == ["r-1", "r-1"]


def test_end_due_names_what_it_ended_and_returns_it_as_stored(either_store: SqlStore) -> None:
    """The sweep's records come from its own UPDATE ... RETURNING and the extension rows it
    read, with its cancellations applied: the same records a read after the commit builds."""
    store = either_store
    with store.write() as tx:
        tx.insert_request(request("live", minutes=120))
        tx.insert_request(request("over", minutes=30))
        tx.insert_request(request("waiting", state=PENDING, pending_deadline=START + timedelta(minutes=10)))
        tx.insert_extension(extension("over"))
        assert tx.next_deadline() == START + timedelta(minutes=10)
    with store.write() as tx:
        ended = tx.end_due(START + timedelta(hours=1), limit=100)
    assert ended[:4] == (["over"], ["waiting"], ["over.1"], ())
    assert not ended.more
    assert sorted(ended.stored) == ["over", "waiting"]
    with store.read() as tx:
        over = tx.get_request("over")
        assert over is not None and over.ended_at == START + timedelta(minutes=30)
        assert stored_record(ended.stored["over"]) == over
        assert stored_record(ended.stored["waiting"]) == tx.get_request("waiting")
        assert tx.stored_requests(["waiting", "over"]) == ended.stored
        assert over.extensions[0].state == EXT_CANCELLED
        assert tx.next_deadline() == START + timedelta(minutes=120)
        assert tx.count_requests(states=["EXPIRED", "TIMED_OUT"]) == 2


def test_end_due_ends_at_most_its_limit_soonest_first_and_says_more_are_due(either_store: SqlStore) -> None:
    """A mass expiry goes in steps of `limit` per kind: the soonest deadlines first, `more` while
    a kind filled its limit; an unclaimed on-first-use grant ends CLAIM_EXPIRED in the same step."""
    store = either_store
    with store.write() as tx:
        for minutes in (40, 10, 30, 20):
            tx.insert_request(request(f"g{minutes}", minutes=minutes))
        tx.insert_request(request("unclaimed", minutes=15, end_reason=UNCLAIMED))
        tx.insert_request(request("waiting", state=PENDING, pending_deadline=START + timedelta(minutes=5)))
    now = START + timedelta(hours=1)
    with store.write() as tx:
        first = tx.end_due(now, limit=3)
    assert (sorted(first.expired), first.claim_expired, first.timed_out, first.more) == (
        ["g10", "g20"], ("unclaimed",), ["waiting"], True)
    with store.write() as tx:
        second = tx.end_due(now, limit=3)
        third = tx.end_due(now, limit=3)
    assert (sorted(second.expired), second.more) == (["g30", "g40"], False)
    assert third[:4] == ([], [], [], ())
    with store.read() as tx:
        unclaimed = tx.get_request("unclaimed")
        assert unclaimed is not None and unclaimed.state == CLAIM_EXPIRED
        assert (unclaimed.end_reason, unclaimed.message) == ("claim_expired", "not used within its claim window")
        assert tx.count_requests(states=["EXPIRED"]) == 4
