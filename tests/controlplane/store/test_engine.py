"""The engine (controlplane/store/engine.py): a write commits whole or not at all, and a writer
blocked by another process gets the plain `store.busy` refusal, not a driver error."""
from __future__ import annotations

import sqlite3

import pytest

from controlplane.errors import JitError
from controlplane.store import SqlStore
from tests.controlplane.store.records import request


def test_a_failed_write_leaves_nothing_and_a_good_one_everything(store: SqlStore) -> None:
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.insert_request(request("r-1"))
        raise RuntimeError("the change is refused halfway")
    with store.write() as tx:
        tx.insert_request(request("r-2"))
    with store.read() as tx:
        assert [rec.id for _num, rec in tx.query_requests()] == ["r-2"]
        assert tx.get_request("r-1") is None


def test_a_writer_held_by_another_process_is_store_busy(tmp_path) -> None:
    path = tmp_path / "busy.db"
    store = SqlStore.open_sqlite(path, busy_timeout_ms=50)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction holds the lock
        with pytest.raises(JitError) as e, store.write() as tx:
            tx.insert_request(request("r-1"))
        assert e.value.code == "store.busy"
        other.execute("ROLLBACK")
        with store.write() as tx:  # and the store carries on once the lock is free
            tx.insert_request(request("r-1"))
        with store.read() as tx:
            assert tx.get_request("r-1") is not None
    finally:
        other.close()
        store.close()
