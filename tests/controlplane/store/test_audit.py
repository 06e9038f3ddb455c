"""The audit tables (controlplane/store/audit.py): appends chain onto the stored head, and a
full read in pages returns every event once, in order."""
from __future__ import annotations

from datetime import timedelta

from controlplane.audit import GENESIS
from controlplane.store import SqlStore
from tests.controlplane.core.helpers import START


def test_appends_chain_and_read_back_in_pages(store: SqlStore) -> None:
    events = [("test.event", "ada", f"s-{i}", {"n": i}, START + timedelta(seconds=i)) for i in range(5)]
    with store.write() as tx:
        first = tx.append_audit_many(events[:2])
        assert tx.append_audit_many([]) == []
    with store.write() as tx:
        rest = tx.append_audit_many(events[2:])
        assert tx.appended == rest
    stored = first + rest
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert [e.prev_hash for e in stored] == [GENESIS] + [e.hash for e in stored[:-1]]
    with store.read() as tx:
        assert tx.audit_head() == (5, stored[-1].hash)
        assert list(tx.iter_audit(batch=2)) == stored
        assert tx.audit_events(after_seq=3) == stored[3:]
        assert tx.audit_events(subject="s-1") == [stored[1]]
        assert [e.seq for e in tx.audit_events(type_="test.*", limit=2)] == [1, 2]
