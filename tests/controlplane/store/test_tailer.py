"""The event tail (controlplane/scaleout/tailer.py) without its thread, on the local PostgreSQL:
which catch-ups read events, and that another plane's are published after this plane's own."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.ledger import Ledger
from controlplane.model import Change
from controlplane.scaleout.storeurl import normalize
from controlplane.scaleout.tailer import AuditTailer
from controlplane.store import SqlStore
from controlplane.store.engine import Tx
from tests.pgstore import pg_store


@pytest.fixture
def planes() -> Iterator[tuple[SqlStore, SqlStore]]:
    """Two planes' stores on one database."""
    with pg_store("jg_tail") as url:
        a, b = SqlStore.open_url(normalize(url)), SqlStore.open_url(normalize(url))
        yield a, b
        a.close()
        b.close()


def _append(store: SqlStore, *subjects: str) -> None:
    with store.write() as tx:
        tx.append_audit_many([("grant.expired", "system", s, {}, datetime.now(UTC)) for s in subjects])


def test_a_poll_reads_no_events_when_all_are_this_planes(planes: tuple[SqlStore, SqlStore],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """After a local sweep, a poll reads the head's seq only; another plane's events are read and
    published, in order, and this plane's own among them left out."""
    a, b = planes
    published: list[Change] = []
    ledger = Ledger(a, None)  # type: ignore[arg-type]  # no policy: the tail only publishes
    ledger.subscribe(published.append)
    tailer = AuditTailer(a, ledger)
    with a.read() as tx:
        tailer.cursor = tx.audit_head()[0]
    a.commit_hooks.append(tailer._local)  # what start() does, without the thread
    reads: list[int] = []
    tail_events = Tx.tail_events

    def counted(self: Tx, after_seq: int, limit: int) -> Any:
        reads.append(after_seq)
        return tail_events(self, after_seq, limit)

    monkeypatch.setattr(Tx, "tail_events", counted)

    _append(a, *(f"mine-{i}" for i in range(50)))
    assert tailer.catch_up() == 0 and reads == [] and published == []
    with a.read() as tx:
        assert tailer.cursor == tx.audit_head()[0]

    _append(b, "theirs-1")
    _append(a, "mine-50")
    _append(b, "theirs-2")
    assert tailer.catch_up() == 2
    assert [c.type for c in published] == ["grant.expired"] * 2
    assert [c.seq for c in published] == sorted(c.seq for c in published)
    with a.read() as tx:
        assert tailer.cursor == tx.audit_head()[0]
        theirs = {e.seq for e in tx.tail_events(0, 1000) if e.subject.startswith("theirs")}
    assert {c.seq for c in published} == theirs
    assert tailer.catch_up() == 0  # nothing new: the head's seq only
