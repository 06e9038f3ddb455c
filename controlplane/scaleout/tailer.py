"""Changes made on other planes, published to this plane's watchers and sweeper.

Every commit that appends audit events updates the chain's head row, whose PostgreSQL trigger
(`store/shared.py`) sends `NOTIFY jitgate_audit, '<seq>'`, delivered at commit. Each plane
LISTENs on its own connection and keeps a cursor: the last audit seq it has handled. On a
notification (and every `POLL_SECONDS` without one, and after reconnecting) it reads the
events after the cursor in seq order (their seq, time, type and subject only), leaves out
those this plane appended itself (already published by its ledger), loads the request or
session each concerns, and publishes them through the ledger as if they were local. The cursor
is the audit sequence, so a lost notification or a dropped connection delays events but never
loses one: nothing is skipped.

Seqs become visible in order: writers serialize on the chain head (FOR UPDATE), so seq N+1
commits after seq N. Which events are this plane's is known from the store's commit hook,
which runs while the store's process write lock is still held; `local_commits_settled()`
after each read waits for any local writer whose commit that read could have seen. When a
notification's seq and all before it are known to be this plane's, no read is made at all; a
poll reads the chain head's seq first and reads no events when all up to it are this plane's.
The requests are read as stored and built through the sweeper's prepared records
(controlplane/prepared.py): another plane's mass expiry needs no record built after it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from controlplane.ledger import Ledger
from controlplane.model import AuditRecord, Change
from controlplane.prepared import PreparedExpiries
from controlplane.store import SqlStore
from controlplane.store.audit import TailEvent
from controlplane.store.requests import stored_record

log = logging.getLogger("jitgate.tailer")

CHANNEL = "jitgate_audit"
POLL_SECONDS = 0.5  # catch up at least this often even without a notification
PAGE = 2000  # events read per catch-up query
RECONNECT_SECONDS = 0.5
_SESSION_SUBJECT = ("session.started", "session.ended", "credential.upstream_issued")


class AuditTailer:
    """Follows the audit log from `start()`'s head onwards; see the module doc."""

    def __init__(self, store: SqlStore, ledger: Ledger,
                 on_policy_version: Callable[[str], None] | None = None,
                 prepared: PreparedExpiries | None = None) -> None:
        self.store = store
        self.ledger = ledger
        self.prepared = prepared
        self.on_policy_version = on_policy_version
        self.cursor = 0
        self.published = 0  # remote changes published (for tests and the benchmark)
        self._mine: set[int] = set()
        self._mu = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._down = False  # between a lost connection and the next successful catch-up

    def start(self) -> None:
        with self.store.read() as tx:
            self.cursor = tx.audit_head()[0]  # what came before is in the snapshot watchers read
        self.store.commit_hooks.append(self._local)
        self._thread = threading.Thread(target=self._run, name="jitgate-tailer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._local in self.store.commit_hooks:
            self.store.commit_hooks.remove(self._local)
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    def _local(self, appended: Sequence[AuditRecord]) -> None:
        with self._mu:
            self._mine.update(r.seq for r in appended)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._conn is None:
                    raw = self.store.engine.raw_connection()
                    self._conn = raw.driver_connection
                    raw.detach()  # its own session: LISTEN lasts as long as this connection
                    self._conn.rollback()  # a pooled connection may be inside an implicit transaction
                    self._conn.autocommit = True
                    self._conn.execute(f"LISTEN {CHANNEL}")
                self.catch_up()  # after (re)connecting: what was committed meanwhile
                if self._down:
                    log.info("event tail resumed at seq %d", self.cursor)
                    self._down = False
                for note in self._conn.notifies(timeout=POLL_SECONDS):
                    if self._stopping.is_set():
                        break
                    try:
                        seq = int(note.payload)
                    except ValueError:
                        seq = 0
                    if seq and (seq <= self.cursor or self._only_mine(seq)):
                        continue  # already read, or this plane's own events: nothing to read
                    self.catch_up()
            except Exception as e:  # the store is away: reconnect and resume from the cursor
                if self._conn is not None or not self._down:  # once per outage, not every retry
                    log.warning("event tail interrupted (%s); resuming from seq %d", type(e).__name__, self.cursor)
                self._down = True
                self._close()
                self._stopping.wait(RECONNECT_SECONDS)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the tail connection failed", exc_info=True)

    def _only_mine(self, seq: int) -> bool:
        """Whether every event after the cursor up to `seq` was appended here (then the cursor
        moves on without a read: a lone plane's own commits cost it no query). Seqs have no gaps.
        No cap on how many: the check stops at the first seq not in `_mine`, so it costs at most
        what this plane appended. With a cap (one page), a sweep of 10,000 expiries had the sweeping
        plane read its own 10,000 events back, page by page, while it was publishing them."""
        with self._mu:
            wanted = range(self.cursor + 1, seq + 1)
            if not all(s in self._mine for s in wanted):
                return False  # unknown ones (another plane's, or a local hook not run yet): read them
            self._mine.difference_update(wanted)
            self.cursor = seq
            return True

    def catch_up(self) -> int:
        """Publish every event after the cursor that another plane appended; returns how many."""
        with self.store.read() as tx:
            head = tx.audit_head()[0]
        if head <= self.cursor:
            return 0
        self.store.local_commits_settled()
        if self._only_mine(head):
            # The poll after a local sweep: the head's row, not this plane's own 10,000 events read back.
            return 0
        total = 0
        while True:
            with self.store.read() as tx:
                recs = tx.tail_events(self.cursor, PAGE)
            if not recs:
                return total
            self.store.local_commits_settled()
            last = recs[-1].seq
            with self._mu:
                remote = [r for r in recs if r.seq not in self._mine]
                self._mine = {s for s in self._mine if s > last}
            if remote:
                self._publish(remote)
                total += len(remote)
            self.cursor = last

    def _publish(self, recs: list[TailEvent]) -> None:
        with self.store.read() as tx:
            sessions = {r.subject: tx.get_session(r.subject) for r in recs if r.type in _SESSION_SUBJECT}
            ids = {r.subject.split(".", 1)[0] for r in recs}
            ids.update(s.grant_id for s in sessions.values() if s is not None)
            stored = tx.stored_requests(sorted(ids))
        # The records the sweeper prepared when they match what is stored (a mass expiry on another plane).
        requests = self.prepared.records(stored) if self.prepared is not None else \
            {rid: stored_record(s) for rid, s in stored.items()}
        changes = []
        for r in recs:
            sess = sessions.get(r.subject)
            req = requests.get(sess.grant_id if sess is not None else r.subject.split(".", 1)[0])
            changes.append(Change(r.seq, r.type, r.at, request=req, session=sess))
            if r.type == "policy.reloaded" and self.on_policy_version is not None:
                try:
                    self.on_policy_version(r.subject)
                except Exception:
                    log.exception("policy reload after another plane's failed")
        self.ledger.publish(changes)
        self.published += len(changes)


__all__ = ["CHANNEL", "AuditTailer"]
