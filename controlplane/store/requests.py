"""Requests and what hangs off them: `requests` (a request and, once active, its grant),
`approvals` (one row per approver's decision, on the request or one of its extensions) and
`extensions`; plus the deadline sweep (`end_due`) and the counts the dashboard shows.

A record is loaded whole: `get_request(s)` and `query_requests` attach its extensions and
approvals (`_attach`), so callers never see a half-read request.
"""
from __future__ import annotations

import functools
import json
from collections import namedtuple
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import and_, bindparam, case, func, insert, select, text, update

from controlplane.model import (
    ACTIVE,
    CLAIM_EXPIRED,
    EXPIRED,
    EXT_CANCELLED,
    EXT_PENDING,
    PENDING,
    TIMED_OUT,
    UNCLAIMED,
    ApprovalRecord,
    ExtensionRecord,
    RequestRecord,
)
from controlplane.store.base import TxBase, chunks, from_us, json_object_from_text, td_us, to_us
from controlplane.store.prebuilt import Prebuilt
from controlplane.store.tables import approvals, extensions, requests

if TYPE_CHECKING:
    from policy import Decision

_r, _e, _a = requests.c, extensions.c, approvals.c
# The state as a literal, so the partial index ix_requests_pending_p can serve the query.
_IS_PENDING = text(f"requests.state = '{PENDING}'")
# The literal (not a bound parameter) lets SQLite use the partial index ix_requests_review_owed.
_REVIEW_OWED = text("requests.review_state = 'OWED'")

# Hot statements, built once (then only their parameters are bound).
_REQUEST_KEYS = [c.key for c in requests.c if c.key != "num"]
_INSERT_REQUEST = Prebuilt(insert(requests), _REQUEST_KEYS)
_UPDATE_REQUEST = Prebuilt(update(requests).where(_r.id == bindparam("key_id")),
                           [k for k in _REQUEST_KEYS if k != "id"])
# The columns a grant's end changes (`ledger.end_grants`): a lock ends hundreds at once.
_END_REQUEST = Prebuilt(update(requests).where(_r.id == bindparam("key_id")),
                        ["state", "ended_us", "end_reason", "message"])
_GET_REQUEST = Prebuilt(select(requests).where(_r.id == bindparam("rid")))
_GET_EXTENSIONS = Prebuilt(select(extensions).where(_e.request_id == bindparam("rid")).order_by(_e.number))
_GET_APPROVALS = Prebuilt(select(approvals).where(_a.request_id == bindparam("rid")).order_by(_a.num))


# Rows as plain tuples in table column order, and named views of them for the record builders.
_RequestRow = namedtuple("_RequestRow", [c.key for c in requests.c])  # type: ignore[misc]
_ExtensionRow = namedtuple("_ExtensionRow", [c.key for c in extensions.c])  # type: ignore[misc]
_ApprovalRow = namedtuple("_ApprovalRow", [c.key for c in approvals.c])  # type: ignore[misc]
_ID, _STATE, _ENDED, _EXPIRES, _END_REASON = map(_RequestRow._fields.index,
                                                 ("id", "state", "ended_us", "expires_us", "end_reason"))
_EXT_ID, _EXT_STATE, _EXT_REQUEST, _EXT_DECIDED = map(_ExtensionRow._fields.index,
                                                      ("id", "state", "request_id", "decided_us"))
_APPROVAL_REQUEST = _ApprovalRow._fields.index("request_id")
_DUE_ROWS = 20_000  # rows `due_grants` reads at most: what one prepared sweep may hold

# The sweep's UPDATEs return the ended rows whole: the events need no read after the commit.
# Each ends at most `lim` rows, soonest deadline first (a mass expiry goes in several commits).
def _due(*where: Any, deadline: Any) -> Any:
    return _r.num.in_(select(_r.num).where(and_(*where, deadline <= bindparam("now_us")))
                      .order_by(deadline).limit(bindparam("lim")))


# Active grants end EXPIRED; unclaimed on-first-use grants (their `expires_us` is the claim
# deadline) CLAIM_EXPIRED. One statement for both: one index scan of the due grants, not two.
_UNCLAIMED = _r.end_reason == UNCLAIMED
_END_ACTIVE = Prebuilt(
    update(requests).where(_due(_r.state == ACTIVE, deadline=_r.expires_us))
    .values(state=case((_UNCLAIMED, CLAIM_EXPIRED), else_=EXPIRED), ended_us=_r.expires_us,
            message=case((_UNCLAIMED, "not used within its claim window"), else_=_r.message),
            end_reason=case((_UNCLAIMED, "claim_expired"), else_="expired"))
    .returning(*requests.c))
_END_PENDING = Prebuilt(
    update(requests).where(_due(_IS_PENDING, deadline=_r.pending_deadline_us))
    .values(state=TIMED_OUT, ended_us=bindparam("now_us2"), end_reason="pending timeout",
            message="nobody decided in time").returning(*requests.c))
_DUE_GRANTS = Prebuilt(
    select(requests).where(and_(_r.state == ACTIVE, _r.expires_us <= bindparam("until_us"),
                                _r.end_reason != UNCLAIMED))
    .order_by(_r.expires_us).limit(bindparam("lim")))


class StoredRequest(NamedTuple):
    """A request exactly as stored: its row and its extension and approval rows, as plain tuples
    in column order. Equal StoredRequests make equal records (`stored_record`): a record built
    ahead of time is used only if what is stored when it is needed still equals what it was built from."""

    row: tuple[Any, ...]
    extensions: tuple[tuple[Any, ...], ...] = ()
    approvals: tuple[tuple[Any, ...], ...] = ()

    @property
    def id(self) -> str:
        return str(self.row[_ID])

    def expired(self) -> StoredRequest:
        """This ACTIVE grant as the sweep stores it once it expires (its extensions unchanged:
        only grants without a pending one are built ahead)."""
        row = list(self.row)
        row[_STATE], row[_ENDED], row[_END_REASON] = EXPIRED, row[_EXPIRES], "expired"
        return StoredRequest(tuple(row), self.extensions, self.approvals)

    def has_pending_extension(self) -> bool:
        return any(e[_EXT_STATE] == EXT_PENDING for e in self.extensions)


def _cancelled_row(ext: tuple[Any, ...], now_us: int) -> tuple[Any, ...]:
    """A pending extension's row as `end_due` stores it: CANCELLED, decided now."""
    row = list(ext)
    row[_EXT_STATE], row[_EXT_DECIDED] = EXT_CANCELLED, now_us
    return tuple(row)


def stored_record(stored: StoredRequest) -> RequestRecord:
    """The record of a stored request, with its extensions and approvals."""
    rec = request_record(_RequestRow._make(stored.row))
    if stored.extensions or stored.approvals:
        _attach_rows({rec.id: rec}, map(_ExtensionRow._make, stored.extensions),
                     map(_ApprovalRow._make, stored.approvals))
    return rec


class DueEnded(NamedTuple):
    """What one `end_due` sweep ended."""

    expired: list[str]  # grant ids now EXPIRED
    timed_out: list[str]  # request ids now TIMED_OUT
    cancelled: list[str]  # ids of the pending extensions of those, now CANCELLED
    claim_expired: Sequence[str] = ()  # on-first-use grants unused in their claim window, now CLAIM_EXPIRED
    stored: Mapping[str, StoredRequest] = {}  # every request ended, as stored by this sweep
    more: bool = False  # the limit was reached: more may be due


class RequestTx(TxBase):
    """Requests, approvals and extensions inside one transaction."""

    # -- requests -------------------------------------------------------------------

    def insert_request(self, r: RequestRecord) -> None:
        _INSERT_REQUEST.run(self.cur, self.dialect, dict(id=r.id, **_request_values(r)))

    def update_request(self, r: RequestRecord) -> None:
        _UPDATE_REQUEST.run(self.cur, self.dialect, dict(key_id=r.id, **_request_values(r)))

    def end_requests(self, recs: Sequence[RequestRecord]) -> None:
        """Store the end of these requests: their state, ended_at, end_reason and message (the
        other columns are left as stored; rewriting them, decision JSON included, was most of a
        lock's cost per grant)."""
        _END_REQUEST.run_many(self.cur, self.dialect, [
            dict(key_id=r.id, state=r.state, ended_us=to_us(r.ended_at), end_reason=r.end_reason, message=r.message)
            for r in recs])

    def get_request(self, request_id: str) -> RequestRecord | None:
        """One request with its extensions and approvals (None if there is none)."""
        row = _GET_REQUEST.first(self.cur, self.dialect, {"rid": request_id})
        if row is None:
            return None
        rec = request_record(row)
        _attach_rows({rec.id: rec}, _GET_EXTENSIONS.rows(self.cur, self.dialect, {"rid": request_id}),
                     _GET_APPROVALS.rows(self.cur, self.dialect, {"rid": request_id}))
        return rec

    def get_requests(self, ids: Sequence[str]) -> list[RequestRecord]:
        """Full records for ids (in the order given; missing ids left out)."""
        stored = self.stored_requests(ids)
        return [stored_record(stored[i]) for i in ids if i in stored]

    def stored_requests(self, ids: Sequence[str]) -> dict[str, StoredRequest]:
        """The requests `ids` as stored (missing ids left out), read on the cursor."""
        rows = {r[_ID]: r for r in self._rows_in(requests, "id", list(dict.fromkeys(ids)))}
        return self._with_details(rows)

    def due_grants(self, until: datetime) -> list[StoredRequest]:
        """ACTIVE grants (not unclaimed) whose deadline is at or before `until`, soonest first, as
        stored; at most _DUE_ROWS (the sweep builds their ended records ahead of time)."""
        cur = _DUE_GRANTS.run(self.cur, self.dialect, {"until_us": to_us(until), "lim": _DUE_ROWS})
        rows = {r[_ID]: tuple(r) for r in cur.fetchall()}
        return list(self._with_details(rows).values())

    def _with_details(self, rows: Mapping[str, tuple[Any, ...]]) -> dict[str, StoredRequest]:
        """Stored requests of rows (by id): their extension rows (by number) and approvals (by num)."""
        exts: dict[str, list[tuple[Any, ...]]] = {}
        apps: dict[str, list[tuple[Any, ...]]] = {}
        ext_rows, app_rows = self._detail_rows(list(rows))
        for e in ext_rows:
            exts.setdefault(e[_EXT_REQUEST], []).append(e)
        for a in app_rows:
            apps.setdefault(a[_APPROVAL_REQUEST], []).append(a)
        return {i: StoredRequest(row, tuple(exts.get(i, ())), tuple(apps.get(i, ()))) for i, row in rows.items()}

    def query_requests(self, *, user: str | None = None, resource: str | None = None,
                       states: Sequence[str] = (), since: datetime | None = None,
                       before_num: int | None = None, limit: int = 100,
                       with_details: bool = True) -> list[tuple[int, RequestRecord]]:
        """Requests newest first, with their paging key (`num`)."""
        q = select(requests)
        if user:
            q = q.where(_r.user == user)
        if resource:
            q = q.where(_r.resource == resource)
        if states:
            q = q.where(_r.state.in_(list(states)))
        if since is not None:
            q = q.where(_r.created_us >= to_us(since))
        if before_num is not None:
            q = q.where(_r.num < before_num)
        q = q.order_by(_r.num.desc()).limit(limit)
        rows = self.conn.execute(q).all()
        recs = [request_record(r) for r in rows]
        if with_details:
            recs = self._attach(recs)
        return [(r.num, rec) for r, rec in zip(rows, recs, strict=True)]

    def owed_reviews(self) -> list[RequestRecord]:
        """Break-glass grants whose review is still owed, oldest first."""
        rows = self.conn.execute(select(requests).where(_REVIEW_OWED).order_by(_r.num)).all()
        return self._attach([request_record(r) for r in rows])

    def count_requests(self, *, states: Sequence[str] = (), ended_since: datetime | None = None) -> int:
        q = select(func.count()).select_from(requests)
        if states:
            q = q.where(_r.state.in_(list(states)))
        if ended_since is not None:
            q = q.where(_r.ended_us >= to_us(ended_since))
        return int(self.conn.execute(q).scalar() or 0)

    def _attach(self, recs: list[RequestRecord]) -> list[RequestRecord]:
        """Load approvals and extensions of the records in a few queries."""
        by_id = {r.id: r for r in recs}
        ext_rows, app_rows = self._detail_rows(list(by_id))
        _attach_rows(by_id, map(_ExtensionRow._make, ext_rows), map(_ApprovalRow._make, app_rows))
        return recs

    def _detail_rows(self, ids: Sequence[str]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The extension rows (by number) and approval rows (by num) of requests `ids`."""
        return (self._rows_in(extensions, "request_id", ids, "number"),
                self._rows_in(approvals, "request_id", ids, "num"))

    # -- approvals and extensions ---------------------------------------------------

    def add_approval(self, request_id: str, extension_id: str, a: ApprovalRecord) -> None:
        """One approver's decision on a request (`extension_id` ""), or on one of its extensions."""
        self.conn.execute(insert(approvals).values(
            request_id=request_id, extension_id=extension_id, approver=a.approver, level=a.level,
            approved=a.approved, comment=a.comment, at_us=to_us(a.at)))

    def insert_extension(self, e: ExtensionRecord) -> None:
        self.conn.execute(insert(extensions).values(id=e.id, **_extension_values(e)))

    def update_extension(self, e: ExtensionRecord) -> None:
        self.conn.execute(update(extensions).where(_e.id == e.id).values(**_extension_values(e)))

    def find_extension(self, extension_id: str) -> str | None:
        """The request id an extension id belongs to."""
        found: str | None = self.conn.execute(select(_e.request_id).where(_e.id == extension_id)).scalar()
        return found

    def requests_with_pending_extensions(self) -> list[str]:
        return [r.request_id for r in self.conn.execute(select(_e.request_id).where(_e.state == EXT_PENDING))]

    # -- deadlines ------------------------------------------------------------------

    def end_due(self, now: datetime, limit: int) -> DueEnded:
        """Batch-end overdue grants (EXPIRED) and pending requests (TIMED_OUT), at most `limit` of
        each kind, soonest first, and cancel their pending extensions; returns them as now stored
        too (`more`: a kind hit the limit, so more may be due)."""
        now_us = to_us(now) or 0
        # UPDATE ... RETURNING (SQLite >= 3.35 and PostgreSQL both have it).
        params = {"now_us": now_us, "now_us2": now_us, "lim": limit}
        active = [tuple(r) for r in _END_ACTIVE.run(self.cur, self.dialect, params).fetchall()]
        pending = [tuple(r) for r in _END_PENDING.run(self.cur, self.dialect, params).fetchall()]
        rows = {r[_ID]: r for r in (*active, *pending)}
        expired = [r[_ID] for r in active if r[_STATE] == EXPIRED]
        claim_expired = [r[_ID] for r in active if r[_STATE] == CLAIM_EXPIRED]
        timed_out = [r[_ID] for r in pending]
        # The ended requests' extension and approval rows, read once: their pending extensions are
        # cancelled from them, and the stored requests given back carry the cancellations as stored.
        stored = self._with_details(rows)
        cancelled: list[str] = []
        for rid, s in stored.items():
            if s.has_pending_extension():
                exts = tuple(_cancelled_row(e, now_us) if e[_EXT_STATE] == EXT_PENDING else e
                             for e in s.extensions)
                cancelled.extend(e[_EXT_ID] for e in s.extensions if e[_EXT_STATE] == EXT_PENDING)
                stored[rid] = s._replace(extensions=exts)
        for part in chunks(cancelled):
            self.conn.execute(update(extensions).where(_e.id.in_(part)).values(state=EXT_CANCELLED, decided_us=now_us))
        more = len(active) >= limit or len(pending) >= limit
        return DueEnded(expired, timed_out, cancelled, tuple(claim_expired), stored, more)

    def next_deadline(self) -> datetime | None:
        """The earliest expiry of an active grant or deadline of a pending request."""
        a = self.conn.execute(select(func.min(_r.expires_us)).where(_r.state == ACTIVE)).scalar()
        b = self.conn.execute(select(func.min(_r.pending_deadline_us)).where(_IS_PENDING)).scalar()
        vals = [v for v in (a, b) if v is not None]
        return from_us(min(vals)) if vals else None


# -- row <-> record ---------------------------------------------------------------------
# `row`: a SQLAlchemy Row or a Prebuilt named tuple; both give the columns as attributes.

def _attach_rows(by_id: Mapping[str, RequestRecord], extension_rows: Iterable[Any],
                 approval_rows: Iterable[Any]) -> None:
    """Hang extension and approval rows (of requests in `by_id`) on their records, in row order."""
    exts: dict[str, ExtensionRecord] = {}
    for row in extension_rows:
        ext = _extension_record(row)
        exts[ext.id] = ext
        by_id[ext.request_id].extensions.append(ext)
    for row in approval_rows:
        a = ApprovalRecord(approver=row.approver, level=row.level, approved=bool(row.approved),
                           comment=row.comment, at=from_us(row.at_us))  # type: ignore[arg-type]
        if not row.extension_id:
            by_id[row.request_id].approvals.append(a)
        elif row.extension_id in exts:
            exts[row.extension_id].approvals.append(a)


def _decision_to_text(decision: Decision | Mapping[str, Any] | None) -> str:
    """A policy decision as POLICY.md JSON text ("null" for none)."""
    if decision is None:
        return "null"
    d = decision.to_json() if hasattr(decision, "to_json") else decision
    return json.dumps(d, sort_keys=True)


@functools.lru_cache(maxsize=4096)
def _decision_from_text(text: str) -> Decision | None:
    """Decisions repeat (one per rule combination): each text is parsed once. Decisions are frozen."""
    d = json.loads(text)
    if d is None:
        return None
    from policy import Decision  # here, not at import: the store opens without loading the policy engine
    return Decision.from_json(d)


def _request_values(r: RequestRecord) -> dict[str, Any]:
    return dict(
        user=r.user, resource=r.resource, kind=r.kind, login=r.login, role=r.role,
        duration_us=td_us(r.duration), reason=r.reason, ticket=r.ticket, emergency=r.emergency,
        state=r.state, decision=_decision_to_text(r.decision), history=json.dumps(r.history, sort_keys=True),
        created_us=to_us(r.created_at), activated_us=to_us(r.activated_at), expires_us=to_us(r.expires_at),
        ended_us=to_us(r.ended_at), pending_deadline_us=to_us(r.pending_deadline),
        extensions_used=r.extensions_used, current_level=r.current_level, review_state=r.review_state,
        review_by=r.review_by, review_comment=r.review_comment, end_reason=r.end_reason, message=r.message,
        start_us=to_us(r.start),
    )


def request_record(row: Any) -> RequestRecord:
    """A `requests` row as a record, without its extensions and approvals (see `_attach`)."""
    return RequestRecord(
        id=row.id, user=row.user, resource=row.resource, kind=row.kind, login=row.login, role=row.role,
        duration=timedelta(microseconds=row.duration_us), reason=row.reason, ticket=row.ticket,
        # A stored decision is never null but in test rows built without one.
        emergency=bool(row.emergency), state=row.state,
        decision=_decision_from_text(row.decision),  # type: ignore[arg-type]
        created_at=from_us(row.created_us),  # type: ignore[arg-type]
        activated_at=from_us(row.activated_us), expires_at=from_us(row.expires_us),
        ended_at=from_us(row.ended_us), extensions_used=row.extensions_used,
        current_level=row.current_level, review_state=row.review_state, end_reason=row.end_reason,
        message=row.message, pending_deadline=from_us(row.pending_deadline_us),
        history=json_object_from_text(row.history or "{}"), review_by=row.review_by,
        review_comment=row.review_comment, start=from_us(row.start_us),
    )


def _extension_values(e: ExtensionRecord) -> dict[str, Any]:
    return dict(request_id=e.request_id, number=e.number, duration_us=td_us(e.duration),
                justification=e.justification, state=e.state, decision=_decision_to_text(e.decision),
                created_us=to_us(e.created_at), decided_us=to_us(e.decided_at),
                current_level=e.current_level)


def _extension_record(row: Any) -> ExtensionRecord:
    return ExtensionRecord(
        id=row.id, request_id=row.request_id, number=row.number,
        duration=timedelta(microseconds=row.duration_us), justification=row.justification,
        # A stored decision is never null but in test rows built without one.
        state=row.state, decision=_decision_from_text(row.decision), approvals=[],  # type: ignore[arg-type]
        created_at=from_us(row.created_us), decided_at=from_us(row.decided_us),
        current_level=row.current_level)
