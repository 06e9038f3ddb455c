"""The notification outbox: one row per message owed to one channel, written in the transaction
of the state change that owes it (see `controlplane/notify/`).

A row is `pending` until the worker settles it: `sent`, `skipped` (nothing to say any more,
e.g. the request was decided before its reminder was due) or `dead` (gave up after its
attempts or its age; kept with the last error). The worker claims due rows by moving their
`next_us` one lease ahead inside a write transaction, so a crash between claim and send
leaves the row due again after the lease: at-least-once, with the row's `key` as the
idempotency key the receiver deduplicates on.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from controlplane.store.base import TxBase
from controlplane.store.prebuilt import Prebuilt
from controlplane.store.tables import _AutoKey, metadata

PENDING = "pending"
SENT = "sent"
SKIPPED = "skipped"
DEAD = "dead"
MAX_ERROR_CHARS = 500  # the last error kept on a row (already scrubbed of secrets)

notify_outbox = Table(
    "notify_outbox", metadata,
    Column("id", _AutoKey, primary_key=True, autoincrement=True),
    # The idempotency key receivers see: unique by construction (it holds the audit seq of the
    # event that owed it), so no unique index costs every request a B-tree write.
    Column("key", String(200), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("subject", String(80), nullable=False),  # the request or extension id the message is about
    Column("level", Integer, nullable=False),  # 0-based approval level it tells about (-1: none)
    Column("data", Text, nullable=False),  # JSON: what the event said (actor, comment, expected expiry)
    Column("created_us", BigInteger, nullable=False),
    Column("next_us", BigInteger, nullable=False),  # due (first) / next attempt / end of a claim's lease
    Column("attempts", Integer, nullable=False),
    Column("state", String(10), nullable=False),
    Column("last_error", Text, nullable=False),
    Column("done_us", BigInteger),
)
_o = notify_outbox.c

# Due rows of one channel, oldest due first: the one index a new row writes, partial so that
# only pending rows are in it. Queries name the state as a literal (a bound parameter could not
# be proven to match the index's WHERE, and the planner would scan every row ever written).
_INDEX_DDL = [
    "CREATE INDEX IF NOT EXISTS ix_notify_outbox_due ON notify_outbox (channel, next_us) WHERE state = 'pending'",
]
_IS_PENDING = text("notify_outbox.state = 'pending'")


def create_outbox(conn: Connection) -> None:
    """The outbox table and its index (one migration step; one Alembic revision later)."""
    metadata.create_all(conn, tables=[notify_outbox])
    for ddl in _INDEX_DDL:
        conn.exec_driver_sql(ddl)


@dataclass(frozen=True)
class OutboxRow:
    """One message owed to one channel."""

    key: str
    channel: str
    kind: str
    request_id: str
    subject: str
    level: int
    data: dict[str, Any]
    created_us: int
    next_us: int
    id: int = 0
    attempts: int = 0
    state: str = PENDING
    last_error: str = ""


_INSERT = Prebuilt(insert(notify_outbox), column_keys=[
    "key", "channel", "kind", "request_id", "subject", "level", "data", "created_us", "next_us", "attempts",
    "state", "last_error"])
_COLS = [_o.id, _o.key, _o.channel, _o.kind, _o.request_id, _o.subject, _o.level, _o.data, _o.created_us,
         _o.next_us, _o.attempts, _o.state, _o.last_error]


def add_rows(tx: TxBase, rows: Sequence[OutboxRow]) -> None:
    """Write `rows` in the caller's (write) transaction: the state change's own."""
    _INSERT.run_many(tx.cur, tx.dialect, [
        {"key": r.key, "channel": r.channel, "kind": r.kind, "request_id": r.request_id, "subject": r.subject,
         "level": r.level, "data": json.dumps(r.data, separators=(",", ":")), "created_us": r.created_us,
         "next_us": r.next_us, "attempts": 0, "state": PENDING, "last_error": ""} for r in rows])


def _row(r: Any) -> OutboxRow:
    m = r._mapping
    return OutboxRow(id=int(m["id"]), key=m["key"], channel=m["channel"], kind=m["kind"],
                     request_id=m["request_id"], subject=m["subject"], level=int(m["level"]),
                     data=json.loads(m["data"]), created_us=int(m["created_us"]), next_us=int(m["next_us"]),
                     attempts=int(m["attempts"]), state=m["state"], last_error=m["last_error"])


def claim(tx: TxBase, channel: str, now_us: int, lease_us: int, limit: int) -> list[OutboxRow]:
    """Up to `limit` due rows of `channel`, oldest due first, leased until `now_us + lease_us`
    (their attempt counted). Run in a write transaction: two planes never claim one row."""
    if limit <= 0:
        return []
    rows = [_row(r) for r in tx.conn.execute(
        select(*_COLS).where(_IS_PENDING, _o.channel == channel, _o.next_us <= now_us)
        .order_by(_o.next_us).limit(limit)).all()]
    if rows:
        tx.conn.execute(update(notify_outbox).where(_o.id.in_([r.id for r in rows]))
                        .values(next_us=now_us + lease_us, attempts=_o.attempts + 1))
    return rows


_SETTLE = update(notify_outbox).where(_o.id == bindparam("b_id")).values(
    state=bindparam("b_state"), last_error=bindparam("b_error"), next_us=bindparam("b_next"),
    done_us=bindparam("b_done"))


def settle_many(tx: TxBase, outcomes: Sequence[tuple[OutboxRow, str, str, int | None]], now_us: int) -> None:
    """Record many attempts' outcomes (row, state, error, next_us) in one executemany; a row sent
    after failures keeps its last failure (what went wrong, for support)."""
    if not outcomes:
        return
    tx.conn.execute(_SETTLE, [
        {"b_id": row.id, "b_state": state, "b_error": (error or row.last_error)[:MAX_ERROR_CHARS],
         "b_next": next_us if state == PENDING and next_us is not None else row.next_us,
         "b_done": None if state == PENDING else now_us}
        for row, state, error, next_us in outcomes])


def next_due(tx: TxBase, channels: Sequence[str]) -> int | None:
    """When the earliest pending row of `channels` is due (None: none is pending); one indexed
    lookup per channel."""
    found = [tx.conn.execute(select(func.min(_o.next_us)).where(_IS_PENDING, _o.channel == ch)).scalar()
             for ch in channels]
    due = [int(v) for v in found if v is not None]
    return min(due) if due else None


def counts(tx: TxBase) -> dict[str, int]:
    """Rows per state (the backlog is `pending`)."""
    return {s: int(n) for s, n in tx.conn.execute(
        select(_o.state, func.count()).group_by(_o.state)).all()}


def rows_for(tx: TxBase, request_id: str) -> list[OutboxRow]:
    """Every row about one request, oldest first (tests, support)."""
    return [_row(r) for r in tx.conn.execute(
        select(*_COLS).where(_o.request_id == request_id).order_by(_o.id)).all()]


def purge(tx: TxBase, before_us: int, limit: int = 5000) -> int:
    """Delete up to `limit` settled rows finished before `before_us`; returns how many."""
    ids = [r[0] for r in tx.conn.execute(
        select(_o.id).where(_o.state != PENDING, _o.done_us < before_us).limit(limit)).all()]
    if ids:
        tx.conn.execute(delete(notify_outbox).where(_o.id.in_(ids)))
    return len(ids)


__all__ = ["DEAD", "PENDING", "SENT", "SKIPPED", "OutboxRow", "add_rows", "claim", "counts", "create_outbox",
           "next_due", "notify_outbox", "purge", "rows_for", "settle_many"]
