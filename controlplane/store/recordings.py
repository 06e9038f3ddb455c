"""Uploaded recordings: what the control plane knows of each one, its parts, and the seal keys.

Tables (created by `create_recording_tables`, one migration step):
- `recordings`: one row per recording (ref): its session, owner (the session's user, from
  the `sessions` table, never from the broker's metadata), broker, where it is stored, how
  many bytes of its data and chain files the store holds, and once complete its size and
  SHA-256; `hold` (legal hold) keeps it past retention; `watched_until_us` tells the
  broker to send small parts often while someone follows it live.
- `recording_parts`: each stored part (data or chain bytes from one offset), in order.
- `seal_keys`: every recorder public key a broker published (old ones stay: rotation).

Functions take the transaction's `Connection` (`tx.conn`), so this module needs no change
to the store's `Tx` class.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Row,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from controlplane.store.tables import metadata

recordings = Table(
    "recordings", metadata,
    Column("ref", String(200), primary_key=True),
    Column("session_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("user", String(200), nullable=False, default=""),
    Column("broker", String(200), nullable=False),
    Column("metadata_json", Text, nullable=False, default="{}"),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("end_reason", Text, nullable=False, default=""),
    Column("location", Text, nullable=False),
    Column("data_bytes", BigInteger, nullable=False, default=0),
    Column("chain_bytes", BigInteger, nullable=False, default=0),
    Column("sealed", Boolean, nullable=False, default=False),
    Column("complete_us", BigInteger),
    Column("sha256", String(64), nullable=False, default=""),
    Column("final_hash", String(64), nullable=False, default=""),
    Column("events", BigInteger, nullable=False, default=0),
    Column("hold", Boolean, nullable=False, default=False),
    Column("watched_until_us", BigInteger, nullable=False, default=0),
    Column("created_us", BigInteger, nullable=False),
)
Index("ix_recordings_session", recordings.c.session_id)
Index("ix_recordings_user", recordings.c.user)
Index("ix_recordings_created", recordings.c.created_us)

recording_parts = Table(
    "recording_parts", metadata,
    Column("ref", String(200), primary_key=True),
    Column("part", String(8), primary_key=True),  # "data" or "chain"
    Column("offset", BigInteger, primary_key=True, autoincrement=False),
    Column("length", BigInteger, nullable=False),
)

seal_keys = Table(
    "seal_keys", metadata,
    Column("key_id", String(100), primary_key=True),
    Column("broker", String(200), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
)

TABLES = [recordings, recording_parts, seal_keys]


def create_recording_tables(conn: Connection) -> None:
    """The migration step: the three tables and their indexes."""
    metadata.create_all(conn, tables=TABLES)


@dataclass(slots=True)
class RecordingRow:
    ref: str
    session_id: str
    kind: str
    user: str
    broker: str
    metadata_json: str
    started_at: float
    ended_at: float | None
    end_reason: str
    location: str
    data_bytes: int
    chain_bytes: int
    sealed: bool
    complete_us: int | None
    sha256: str
    final_hash: str
    events: int
    hold: bool
    watched_until_us: int
    created_us: int

    @property
    def complete(self) -> bool:
        return self.complete_us is not None


def _row(r: Row[Any]) -> RecordingRow:
    return RecordingRow(**{c.name: getattr(r, c.name) for c in recordings.columns})


_r = recordings.c
_p = recording_parts.c


def get_recording(conn: Connection, ref: str) -> RecordingRow | None:
    r = conn.execute(select(recordings).where(_r.ref == ref)).first()
    return _row(r) if r is not None else None


def insert_recording(conn: Connection, row: RecordingRow) -> None:
    conn.execute(insert(recordings).values(**{c.name: getattr(row, c.name) for c in recordings.columns}))


def update_recording(conn: Connection, ref: str, **values: Any) -> None:
    conn.execute(update(recordings).where(_r.ref == ref).values(**values))


def add_part(conn: Connection, ref: str, part: str, offset: int, length: int) -> None:
    conn.execute(insert(recording_parts).values(ref=ref, part=part, offset=offset, length=length))


def parts_of(conn: Connection, ref: str, part: str, from_offset: int = 0) -> list[tuple[int, int]]:
    """(offset, length) of `ref`'s `part` parts that end after `from_offset`, in order."""
    rows = conn.execute(select(_p.offset, _p.length).where(_p.ref == ref, _p.part == part)
                        .where(_p.offset + _p.length > from_offset).order_by(_p.offset)).all()
    return [(int(o), int(n)) for o, n in rows]


def query_recordings(conn: Connection, *, session_id: str = "", refs: Sequence[str] | None = None,
                     user: str = "", kind: str = "", before_created_us: int | None = None,
                     limit: int = 100) -> list[RecordingRow]:
    """Recordings newest first (by created_us, then ref)."""
    q = select(recordings)
    if session_id:
        q = q.where((_r.session_id == session_id) | (_r.ref == session_id))
    if refs is not None:
        q = q.where(_r.ref.in_(list(refs)))
    if user:
        q = q.where(_r.user == user)
    if kind:
        q = q.where(_r.kind == kind)
    if before_created_us is not None:
        q = q.where(_r.created_us < before_created_us)
    q = q.order_by(_r.created_us.desc(), _r.ref.desc()).limit(limit)
    return [_row(r) for r in conn.execute(q).all()]


def expired_recordings(conn: Connection, created_before_us: int, limit: int = 100) -> list[RecordingRow]:
    """Recordings made before the cut-off, not held, complete or abandoned (oldest first)."""
    q = (select(recordings).where(_r.created_us < created_before_us, _r.hold.is_(False))
         .order_by(_r.created_us).limit(limit))
    return [_row(r) for r in conn.execute(q).all()]


def delete_recording(conn: Connection, ref: str) -> None:
    conn.execute(delete(recording_parts).where(_p.ref == ref))
    conn.execute(delete(recordings).where(_r.ref == ref))


def upsert_seal_key(conn: Connection, key_id: str, broker: str, public_key: str, now_us: int) -> bool:
    """Record a published key; True when it is new."""
    found = conn.execute(select(seal_keys.c.key_id).where(seal_keys.c.key_id == key_id)).first()
    if found is not None:
        conn.execute(update(seal_keys).where(seal_keys.c.key_id == key_id).values(last_seen_us=now_us))
        return False
    conn.execute(insert(seal_keys).values(key_id=key_id, broker=broker, public_key=public_key,
                                          first_seen_us=now_us, last_seen_us=now_us))
    return True


def list_seal_keys(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(select(seal_keys).order_by(seal_keys.c.first_seen_us)).all())
