"""History reads (controlplane/store/history.py): imported rows round-trip and page completely.
The policy history counters are tested against counting every row in
tests/controlplane/core/test_hot_path.py (on SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import timedelta

from controlplane.store import SqlStore
from tests.controlplane.core.helpers import START


def _row(i: int, user: str = "alice") -> dict:
    return dict(user=user, resource=f"db-{i % 2}", kind="postgres", labels={"env": "dev"}, login=None,
                role="readonly", reason=f"report {i}", ticket="", requested_at=START + timedelta(hours=i),
                asked_minutes=60.0, used_minutes=float(i), extensions=0)


def test_imported_rows_round_trip_and_page_completely(store: SqlStore) -> None:
    rows = [_row(i, user="alice" if i < 5 else "bob") for i in range(7)]
    with store.write() as tx:
        assert not tx.imported_batch_exists("sha")
        assert tx.insert_imported_history(rows, "sha", START) == 7
    with store.read() as tx:
        assert tx.imported_batch_exists("sha") and tx.count_imported_history() == 7
        assert list(tx.iter_imported_history(page=3)) == rows  # pages of 3, 3 and 1: none lost, none twice
        assert list(tx.iter_imported_history(since=START + timedelta(hours=5), page=1)) == rows[5:]
        newest = tx.imported_by_user("alice", limit=2)  # newest finished first
        assert [r for _num, r in newest] == [rows[4], rows[3]]
        assert [r["reason"] for _num, r in tx.imported_on_resource("db-1")] == ["report 5", "report 3", "report 1"]
        assert tx.imported_generation() == max(num for num, _r in tx.imported_by_user("bob"))
