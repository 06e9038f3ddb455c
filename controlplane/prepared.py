"""Expired grants' records built before their deadline, so a mass expiry publishes at once.

A sweep that ends 10,000 grants at one instant publishes 10,000 events, each carrying its
request as stored. Reading and building those records after the commit (and, in the event
hub, their messages) took seconds while every watcher waited; before the deadline nobody
waits. `prepare(until)` (the sweeper calls it a few seconds ahead, on every plane) reads the
ACTIVE grants due by `until` and builds each one's record as the sweep will store it;
listeners (the event hub) build their messages from those records meanwhile.

When the rows are stored (the sweep's UPDATE ... RETURNING, or another plane's event tail
reading them), `records(stored)` hands out a prepared record only for a request whose stored
rows equal, column for column, the rows it was built from with the expiry applied: the very
record a fresh read would build. Any other request (changed since, extended, never prepared)
is built from its stored rows, as before.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime

from controlplane.model import RequestRecord
from controlplane.store import SqlStore
from controlplane.store.requests import StoredRequest, stored_record

log = logging.getLogger("jitgate.prepared")

PreparedListener = Callable[[list[RequestRecord]], None]


class PreparedExpiries:
    """The records of grants due soon, as they will be once expired; each handed out at most once."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._by_id: dict[str, tuple[StoredRequest, RequestRecord]] = {}
        self._listeners: list[PreparedListener] = []
        self._lock = threading.Lock()
        self.hits = 0  # records handed out prepared (for tests and the benchmark)

    def add_listener(self, listener: PreparedListener) -> None:
        """Call `listener(records)` with every prepared batch (e.g. to build their messages ahead)."""
        self._listeners.append(listener)

    def prepare(self, until: datetime) -> int:
        """Build the expired records of the grants due by `until` (replacing any built before);
        returns how many. Grants with a pending extension are left out (the sweep cancels it at
        a time not known yet)."""
        with self.store.read() as tx:
            due = tx.due_grants(until)
        built: dict[str, tuple[StoredRequest, RequestRecord]] = {}
        for stored in due:
            if not stored.has_pending_extension():
                ended = stored.expired()
                built[stored.id] = (ended, stored_record(ended))
        with self._lock:
            self._by_id = built
        records = [rec for _, rec in built.values()]
        for listener in list(self._listeners):
            try:
                listener(records)
            except Exception:  # preparing is an optimization: a failed listener only costs time
                log.exception("prepared-records listener failed")
        return len(built)

    def records(self, stored: Mapping[str, StoredRequest]) -> dict[str, RequestRecord]:
        """The record of each stored request: the prepared one if it was built from exactly these
        rows, else one built now."""
        out: dict[str, RequestRecord] = {}
        with self._lock:
            for rid, rows in stored.items():
                hit = self._by_id.pop(rid, None)
                if hit is not None and hit[0] == rows:
                    out[rid] = hit[1]
        self.hits += len(out)
        for rid, rows in stored.items():
            if rid not in out:
                out[rid] = stored_record(rows)
        return out

    def __len__(self) -> int:
        return len(self._by_id)


__all__ = ["PreparedExpiries", "PreparedListener"]
