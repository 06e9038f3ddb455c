"""Locks: the `locks` table (one row per lock an admin placed; lifted rows stay, for history).

A lock is active at `t` when `created_us <= t`, it was not lifted, and `until_us`
is NULL or later than `t`. Few rows ever exist (admins place them by hand), so
the active ones are read whole and matched in Python (`controlplane/locks.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Index, Row, String, Table, Text, insert, or_, select, update

from controlplane.store.base import TxBase, from_us, to_us
from controlplane.store.tables import metadata

# What a lock matches: a user, a resource, a login (SSH login or database role), or everything.
LOCK_TARGETS = ("user", "resource", "login", "all")

locks = Table(
    "locks", metadata,
    Column("id", String(64), primary_key=True),
    Column("target", String(16), nullable=False),  # one of LOCK_TARGETS
    Column("value", String(200), nullable=False, default=""),  # "" for `all`
    Column("reason", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("until_us", BigInteger),  # NULL: until lifted
    Column("lifted_us", BigInteger),
    Column("lifted_by", String(200), nullable=False, default=""),
)
Index("ix_locks_lifted", locks.c.lifted_us)

_l = locks.c


@dataclass
class LockRecord:
    """One lock as stored."""

    id: str
    target: str
    value: str
    reason: str
    created_by: str
    created_at: datetime
    until: datetime | None = None
    lifted_at: datetime | None = None
    lifted_by: str = ""

    def active_at(self, now: datetime) -> bool:
        return self.lifted_at is None and self.created_at <= now and (self.until is None or self.until > now)

    def matches(self, user: str, resource: str, login: str) -> bool:
        """Whether a grant, request or session of (`user`, `resource`, `login` or role) is under this lock."""
        if self.target == "all":
            return True
        return {"user": user, "resource": resource, "login": login}.get(self.target) == self.value

    def describe(self) -> str:
        """`user alice`, `resource web-01`, `login root` or `everything`, for messages."""
        return "everything" if self.target == "all" else f"{self.target} `{self.value}`"


def create_lock_tables(conn: Connection) -> None:
    """The schema step that adds the `locks` table (one migration; one Alembic revision later)."""
    metadata.create_all(conn, tables=[locks])


class LockTx(TxBase):
    """Locks inside one transaction."""

    def insert_lock(self, lock: LockRecord) -> None:
        self.conn.execute(insert(locks).values(id=lock.id, **_values(lock)))

    def update_lock(self, lock: LockRecord) -> None:
        self.conn.execute(update(locks).where(_l.id == lock.id).values(**_values(lock)))

    def get_lock(self, lock_id: str) -> LockRecord | None:
        row = self.conn.execute(select(locks).where(_l.id == lock_id)).first()
        return _record(row) if row is not None else None

    def query_locks(self, *, now: datetime, include_inactive: bool = False, limit: int = 1000) -> list[LockRecord]:
        """Locks newest first: the ones in force at `now`, or (`include_inactive`) all of them."""
        q = select(locks)
        if not include_inactive:
            now_us = to_us(now)
            q = q.where(_l.lifted_us.is_(None), _l.created_us <= now_us,
                        or_(_l.until_us.is_(None), _l.until_us > now_us))
        q = q.order_by(_l.created_us.desc(), _l.id).limit(limit)
        return [_record(r) for r in self.conn.execute(q)]


def _values(lock: LockRecord) -> dict[str, Any]:
    return dict(target=lock.target, value=lock.value, reason=lock.reason, created_by=lock.created_by,
                created_us=to_us(lock.created_at), until_us=to_us(lock.until), lifted_us=to_us(lock.lifted_at),
                lifted_by=lock.lifted_by)


def _record(row: Row[Any]) -> LockRecord:
    return LockRecord(id=row.id, target=row.target, value=row.value, reason=row.reason, created_by=row.created_by,
                      created_at=from_us(row.created_us),  # type: ignore[arg-type]
                      until=from_us(row.until_us), lifted_at=from_us(row.lifted_us), lifted_by=row.lifted_by)


__all__ = ["LOCK_TARGETS", "LockRecord", "LockTx", "create_lock_tables", "locks"]
