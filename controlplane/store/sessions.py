"""Broker sessions: the `sessions` table (one row per session a broker opened on a grant)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, insert, select, update

from controlplane.model import SessionRecord
from controlplane.store.base import TxBase, from_us, to_us
from controlplane.store.tables import sessions

_s = sessions.c


class SessionTx(TxBase):
    """Sessions inside one transaction."""

    def insert_session(self, s: SessionRecord) -> None:
        self.conn.execute(insert(sessions).values(id=s.id, **_session_values(s)))

    def update_session(self, s: SessionRecord) -> None:
        self.conn.execute(update(sessions).where(_s.id == s.id).values(**_session_values(s)))

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self.conn.execute(select(sessions).where(_s.id == session_id)).first()
        return _session_record(row) if row is not None else None

    def query_sessions(self, *, grant_id: str | None = None, user: str | None = None,
                       resource: str | None = None, live_only: bool = False,
                       grant_ids: Sequence[str] | None = None,
                       before_num: int | None = None, limit: int = 100) -> list[tuple[int, SessionRecord]]:
        """Sessions newest first, with their paging key (`num`)."""
        q = select(sessions)
        if grant_id:
            q = q.where(_s.grant_id == grant_id)
        if grant_ids is not None:
            q = q.where(_s.grant_id.in_(list(grant_ids)))
        if user:
            q = q.where(_s.user == user)
        if resource:
            q = q.where(_s.resource == resource)
        if live_only:
            q = q.where(_s.ended_us.is_(None))
        if before_num is not None:
            q = q.where(_s.num < before_num)
        q = q.order_by(_s.num.desc()).limit(limit)
        return [(r.num, _session_record(r)) for r in self.conn.execute(q)]


def _session_values(s: SessionRecord) -> dict[str, Any]:
    return dict(grant_id=s.grant_id, user=s.user, resource=s.resource, kind=s.kind, login=s.login,
                role=s.role, broker=s.broker, client_address=s.client_address, channel=s.channel,
                started_us=to_us(s.started_at), ended_us=to_us(s.ended_at), end_reason=s.end_reason,
                bytes_in=s.bytes_in, bytes_out=s.bytes_out, recording_ref=s.recording_ref,
                recording_hash=s.recording_hash, last_activity_us=to_us(s.last_activity_at))


def _session_record(row: Row[Any]) -> SessionRecord:
    return SessionRecord(
        id=row.id, grant_id=row.grant_id, user=row.user, resource=row.resource, kind=row.kind,
        login=row.login, role=row.role, broker=row.broker, client_address=row.client_address,
        started_at=from_us(row.started_us),  # type: ignore[arg-type]
        ended_at=from_us(row.ended_us), end_reason=row.end_reason, bytes_in=row.bytes_in,
        bytes_out=row.bytes_out, recording_ref=row.recording_ref, recording_hash=row.recording_hash,
        last_activity_at=from_us(row.last_activity_us), channel=row.channel)
