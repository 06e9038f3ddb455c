"""The audit log's tables: `audit` (the hash-chained events) and `audit_head` (the chain's end).

Every write transaction locks the head first (`_lock_head`, called by the engine's `write()`),
so appends are serialized and each event's hash chains onto the one before it
(`controlplane.audit` makes the records; this module only stores and reads them).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Engine, Row, bindparam, insert, select, update
from sqlalchemy.pool import PoolProxiedConnection

from controlplane import audit as chain
from controlplane.audit import AuditEvent
from controlplane.model import AuditRecord
from controlplane.store.base import EPOCH, PAGE_ROWS, TxBase, from_us, to_us
from controlplane.store.prebuilt import Prebuilt
from controlplane.store.tables import audit, audit_head

# FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the write lock (no clause).
_LOCK_HEAD = Prebuilt(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update())
_UPDATE_HEAD = Prebuilt(update(audit_head).where(audit_head.c.id == 1).values(
    seq=bindparam("new_seq"), hash=bindparam("new_hash")))
_AUDIT_COLUMNS = ("seq", "at_us", "type", "actor", "subject", "data", "prev_hash", "hash")
_INSERT_AUDIT = Prebuilt(insert(audit), list(_AUDIT_COLUMNS))
BULK_ROWS = 100  # from this many events on, one bulk load (`_bulk_insert`): a sweep's 10,000 expiries
_HEAD = Prebuilt(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1))
_TAIL = Prebuilt(select(audit.c.seq, audit.c.at_us, audit.c.type, audit.c.subject)
                 .where(audit.c.seq > bindparam("after")).order_by(audit.c.seq).limit(bindparam("lim")))


class TailEvent(NamedTuple):
    """What an event tail publishes of an audit event (no data, no hashes)."""

    seq: int
    at: datetime
    type: str
    subject: str


class AuditTx(TxBase):
    """Appending to and reading the audit chain inside one transaction."""

    def __init__(self, engine: Engine, raw: PoolProxiedConnection, writable: bool) -> None:
        super().__init__(engine, raw, writable)
        self._head: tuple[int, str] | None = None  # (seq, hash) once locked: write transactions only
        self.appended: list[AuditRecord] = []  # the events this transaction appended, in order

    def _lock_head(self) -> None:
        """Lock the chain's end for this (write) transaction and remember it."""
        seq, hash_ = _LOCK_HEAD.one(self.cur, self.dialect)
        self._head = (int(seq), hash_)

    def append_audit(self, type_: str, actor: str, subject: str, data: dict[str, Any],
                     at: datetime) -> AuditRecord:
        """Append one chained event (written with the transaction)."""
        return self.append_audit_many([(type_, actor, subject, data, at)])[0]

    def append_audit_many(self, events: Iterable[AuditEvent]) -> list[AuditRecord]:
        """Append events in order with one multi-row INSERT per chunk."""
        assert self.writable and self._head is not None
        made = chain.make_records(self._head[0] + 1, events, self._head[1])
        if not made:
            return []
        out = [rec for rec, _ in made]
        at_us = {at: to_us(at) for at in {rec.at for rec in out}}  # a batch shares one or a few times
        rows = [(rec.seq, at_us[rec.at], rec.type, rec.actor, rec.subject, text, rec.prev_hash, rec.hash)
                for rec, text in made]
        seq, prev = out[-1].seq, out[-1].hash
        if len(rows) >= BULK_ROWS:
            self._bulk_insert(audit, _AUDIT_COLUMNS, rows)
        else:
            _INSERT_AUDIT.run_many(self.cur, self.dialect, [dict(zip(_AUDIT_COLUMNS, r, strict=True)) for r in rows])
        _UPDATE_HEAD.run(self.cur, self.dialect, {"new_seq": seq, "new_hash": prev})
        self._head = (seq, prev)
        self.appended.extend(out)
        return out

    def audit_head(self) -> tuple[int, str]:
        """The chain's end as stored: (last seq, its hash). Prebuilt: an event tail reads it at
        every poll."""
        seq, hash_ = _HEAD.one(self.cur, self.dialect)
        return int(seq), hash_

    def tail_events(self, after_seq: int, limit: int) -> list[TailEvent]:
        """The events after `after_seq` in seq order, at most `limit`, without their data and hashes
        (an event tail reads thousands a second: no JSON parsed, no SQLAlchemy row)."""
        _TAIL.run(self.cur, self.dialect, {"after": after_seq, "lim": limit})
        return [TailEvent(int(seq), EPOCH + timedelta(microseconds=at_us), type_, subject)
                for seq, at_us, type_, subject in self.cur.fetchall()]

    def audit_events(self, after_seq: int = 0, type_: str = "", subject: str = "",
                     limit: int = 100, before: datetime | None = None,
                     since: datetime | None = None) -> list[AuditRecord]:
        """Events after `after_seq` in order: of one type (`prefix*` for a family), one subject,
        at or after `since`; at most `limit`. `before` is not applied (no caller passes it)."""
        q = select(audit).where(audit.c.seq > after_seq)
        if type_:
            q = q.where(audit.c.type.like(type_[:-1] + "%") if type_.endswith("*") else audit.c.type == type_)
        if subject:
            q = q.where(audit.c.subject == subject)
        if since is not None:
            q = q.where(audit.c.at_us >= to_us(since))
        q = q.order_by(audit.c.seq).limit(limit)
        return [_audit_record(r) for r in self.conn.execute(q)]

    def iter_audit(self, batch: int = PAGE_ROWS) -> Iterator[AuditRecord]:
        """Every event in seq order, as stored (for verification), read `batch` at a time."""
        for row in self._pages(select(audit), audit.c.seq, batch):
            yield _audit_record(row)


def _audit_record(row: Row[Any]) -> AuditRecord:
    return AuditRecord(seq=int(row.seq), at=from_us(row.at_us),  # type: ignore[arg-type]
                       type=row.type, actor=row.actor, subject=row.subject,
                       data=json.loads(row.data), prev_hash=row.prev_hash, hash=row.hash)
