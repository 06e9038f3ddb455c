"""History read for decisions and recommendations: POLICY.md's `history` counters (the
`history_days` table, kept by triggers, plus the first partial day from `requests`), the
minutes grants were used (from `sessions`), finished grants, and `imported_history` (past
grants imported from a file for the duration recommender only).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import Column, ColumnElement, Row, Select, Table, and_, bindparam, case, func, insert, select

from controlplane.model import RequestRecord
from controlplane.store.base import (
    PAGE_ROWS,
    TxBase,
    chunks,
    from_us,
    json_object_from_text,
    minutes_between,
    to_us,
)
from controlplane.store.prebuilt import Prebuilt
from controlplane.store.requests import request_record
from controlplane.store.tables import DAY_US, history_days, imported_history, requests, sessions

FINISHED_LIMIT = 250  # finished grants (or imported rows) read per user and per resource: the recommender's window
_FAR_FUTURE_US = 2**62  # an upper bound past any stored time


class ImportedRow(TypedDict):
    """An imported history row: the fields of `recommend.HistoryRow`."""

    user: str
    resource: str
    kind: str
    labels: dict[str, Any]
    login: str | None  # exactly one of login (ssh) / role (database)
    role: str | None
    reason: str
    ticket: str
    requested_at: datetime
    asked_minutes: float
    used_minutes: float
    extensions: int


_r, _s, _hd, _h = requests.c, sessions.c, history_days.c, imported_history.c
# When a session's use ended: its end, else its last activity, else its start (still open, idle).
_SESSION_END = func.coalesce(_s.ended_us, _s.last_activity_us, _s.started_us)

_HISTORY_COUNTS = Prebuilt(select(
    func.count(_r.activated_us),
    func.coalesce(func.sum(case((_r.state == "DENIED", 1), else_=0)), 0),
    func.coalesce(func.sum(case((_r.state == "REVOKED", 1), else_=0)), 0),
    func.coalesce(func.sum(case((_r.review_state == "FLAGGED", 1), else_=0)), 0),
).where(and_(_r.user == bindparam("u"), _r.created_us >= bindparam("since"),
             _r.created_us < bindparam("until"))))
_HISTORY_DAYS = Prebuilt(select(func.sum(_hd.granted), func.sum(_hd.denied), func.sum(_hd.revoked),
                                func.sum(_hd.flagged))
                         .where(and_(_hd.user == bindparam("u"), _hd.day > bindparam("day"))))
# Driven from the requester's sessions on the resource (a session has its grant's user and
# resource): a user's many grants without sessions cost nothing here.
_USED_OF = Prebuilt(
    select(func.min(_s.started_us), func.max(_SESSION_END))
    .select_from(sessions.join(requests, _r.id == _s.grant_id))
    .where(and_(_s.user == bindparam("u"), _s.resource == bindparam("res"), _r.created_us >= bindparam("since")))
    .group_by(_s.grant_id))


def _newest(table: Table, ended: Column[Any], *conds: ColumnElement[bool]) -> Select[Any]:
    """Rows of `table` matching `conds`, the latest `ended` first, at most the `n` parameter."""
    return select(table).where(and_(*conds)).order_by(ended.desc()).limit(bindparam("n"))


_FINISHED_BY_USER = _newest(requests, _r.ended_us, _r.user == bindparam("u"), _r.ended_us >= bindparam("since"))
_FINISHED_ON_RESOURCE = _newest(requests, _r.ended_us, _r.resource == bindparam("res"),
                                _r.ended_us >= bindparam("since"))
_IMPORTED_BY_USER = _newest(imported_history, _h.finished_us, _h.user == bindparam("u"))
_IMPORTED_ON_RESOURCE = _newest(imported_history, _h.finished_us, _h.resource == bindparam("res"))


class HistoryTx(TxBase):
    """History counters, used minutes and imported history inside one transaction."""

    # -- POLICY.md's history counters -------------------------------------------------

    def history_counts(self, user: str, since: datetime) -> dict[str, int]:
        """POLICY.md's history counters for `user`'s requests created at or after `since`.

        Whole days after `since`'s day come from the `history_days` counters; only the rows
        of `since`'s own (partial) day are counted in `requests`. Same figures as counting
        every row, in constant work.
        """
        since_us = to_us(since)
        assert since_us is not None
        day = since_us // DAY_US
        whole = _HISTORY_DAYS.one(self.cur, self.dialect, {"u": user, "day": day})
        edge = _HISTORY_COUNTS.one(self.cur, self.dialect, {"u": user, "since": since_us,
                                                             "until": (day + 1) * DAY_US})
        return _counters(int(a or 0) + int(b or 0) for a, b in zip(whole, edge, strict=True))

    def history_counts_scan(self, user: str, since: datetime) -> dict[str, int]:
        """The same counters by counting every row (the reference `history_counts` must equal)."""
        counts = _HISTORY_COUNTS.one(self.cur, self.dialect, {"u": user, "since": to_us(since),
                                                              "until": _FAR_FUTURE_US})
        return _counters(int(c) for c in counts)

    # -- used minutes and finished grants -------------------------------------------

    def used_minutes_of(self, user: str, resource: str, since: datetime) -> list[float]:
        """Minutes used per grant of `user` on `resource` since `since` (grants with sessions)."""
        rows = _USED_OF.run(self.cur, self.dialect, {"u": user, "res": resource, "since": to_us(since)}).fetchall()
        return [minutes_between(start, end) for start, end in rows]

    def used_minutes(self, grant_ids: Sequence[str]) -> dict[str, float]:
        """Minutes used per grant: first session start to last session end or activity."""
        out: dict[str, float] = {}
        for part in chunks(list(grant_ids)):
            q = (select(_s.grant_id, func.min(_s.started_us), func.max(_SESSION_END))
                 .where(_s.grant_id.in_(part)).group_by(_s.grant_id))
            for gid, start, end in self.conn.execute(q):
                out[gid] = minutes_between(start, end)
        return out

    def finished_grants(self, user: str, resource: str, since: datetime,
                        limit: int = FINISHED_LIMIT) -> list[RequestRecord]:
        """Grants that ended since `since`: `user`'s anywhere and anyone's on `resource`,
        at most `limit` of each, newest first (no approvals or extensions loaded)."""
        seen: dict[str, RequestRecord] = {}
        for stmt, params in ((_FINISHED_BY_USER, {"u": user}), (_FINISHED_ON_RESOURCE, {"res": resource})):
            for row in self.conn.execute(stmt, {**params, "since": to_us(since), "n": limit}):
                if row.activated_us is not None and row.id not in seen:
                    seen[row.id] = request_record(row)
        return sorted(seen.values(), key=_ended_at, reverse=True)

    # -- imported history (recommender only) ------------------------------------------

    def insert_imported_history(self, rows: Sequence[Mapping[str, Any]], batch: str, at: datetime) -> int:
        """Store imported history rows (mappings of HistoryRow fields) under `batch`; returns the count."""
        at_us = to_us(at)
        assert at_us is not None
        values = [_imported_values(r, batch, at_us) for r in rows]
        for part in chunks(values):
            self.conn.execute(insert(imported_history), list(part))
        return len(values)

    def imported_batch_exists(self, batch: str) -> bool:
        return self.conn.execute(select(_h.num).where(_h.batch == batch).limit(1)).first() is not None

    def imported_generation(self) -> int:
        """Changes whenever rows are imported (the highest row number; rows are never deleted)."""
        return int(self.conn.execute(select(func.max(_h.num))).scalar() or 0)

    def imported_by_user(self, user: str, limit: int = FINISHED_LIMIT) -> list[tuple[int, ImportedRow]]:
        """`user`'s newest finished imported rows: (row number, the row)."""
        return self._numbered(_IMPORTED_BY_USER, {"u": user, "n": limit})

    def imported_on_resource(self, resource: str, limit: int = FINISHED_LIMIT) -> list[tuple[int, ImportedRow]]:
        """Anyone's newest finished imported rows on `resource`: (row number, the row)."""
        return self._numbered(_IMPORTED_ON_RESOURCE, {"res": resource, "n": limit})

    def iter_imported_history(self, since: datetime | None = None,
                              page: int = PAGE_ROWS) -> Iterator[ImportedRow]:
        """Every imported row requested since `since`, in import order."""
        q = select(imported_history)
        if since is not None:
            q = q.where(_h.requested_us >= to_us(since))
        for row in self._pages(q, _h.num, page):
            yield _imported_row(row)

    def count_imported_history(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(imported_history)).scalar() or 0)

    def _numbered(self, stmt: Select[Any], params: dict[str, Any]) -> list[tuple[int, ImportedRow]]:
        return [(r.num, _imported_row(r)) for r in self.conn.execute(stmt, params)]


def _counters(values: Iterable[int]) -> dict[str, int]:
    granted, denied, revoked, flagged = values
    return {"granted_90d": granted, "denied_90d": denied, "revoked_90d": revoked, "flagged_90d": flagged}


def _ended_at(r: RequestRecord) -> datetime:
    assert r.ended_at is not None  # finished grants only
    return r.ended_at


def _imported_values(r: Mapping[str, Any], batch: str, at_us: int) -> dict[str, Any]:
    requested: datetime = r["requested_at"]
    used = float(r["used_minutes"])
    return dict(batch=batch, user=r["user"], resource=r["resource"], kind=r["kind"],
                labels=json.dumps(dict(r.get("labels") or {}), sort_keys=True),
                login=r.get("login"), role=r.get("role"), reason=r.get("reason", ""), ticket=r.get("ticket", ""),
                requested_us=to_us(requested), finished_us=to_us(requested + timedelta(minutes=used)),
                asked_minutes=float(r["asked_minutes"]), used_minutes=used,
                extensions=int(r.get("extensions", 0)), imported_us=at_us)


def _imported_row(row: Row[Any]) -> ImportedRow:
    return ImportedRow(user=row.user, resource=row.resource, kind=row.kind, labels=json_object_from_text(row.labels),
                       login=row.login, role=row.role, reason=row.reason, ticket=row.ticket,
                       requested_at=from_us(row.requested_us),  # type: ignore[typeddict-item]
                       asked_minutes=float(row.asked_minutes), used_minutes=float(row.used_minutes),
                       extensions=int(row.extensions))
