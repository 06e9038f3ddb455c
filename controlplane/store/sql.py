"""The one store of the control plane: SQLAlchemy Core over SQLite (WAL) or PostgreSQL.

`SqlStore.write()` opens a transaction that holds the write lock (SQLite:
`BEGIN IMMEDIATE` plus a process lock; PostgreSQL: `SELECT ... FOR UPDATE` on the
audit chain head), so a state change read-check-write cannot race, and every
change and its audit events commit together. `read()` opens a snapshot.
The queries are dialect-neutral Core; only connection set-up differs.
"""
from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection, Engine, and_, bindparam, case, create_engine, delete, event, func, insert, select,
    text, update,
)
from sqlalchemy.exc import OperationalError

from controlplane import audit as chain
from controlplane.errors import JitError
from controlplane.model import (
    ACTIVE, EXPIRED, EXT_CANCELLED, EXT_PENDING, PENDING, TIMED_OUT,
    ApprovalRecord, AuditRecord, ExtensionRecord, RequestRecord, SessionRecord,
)
from controlplane.store import schema as t
from controlplane.store.checkpoint import Checkpointer
from controlplane.store.files import prepare_private_db_file
from controlplane.store.prebuilt import Prebuilt, dbapi_cursor

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_IN_CHUNK = 500  # ids per IN (...) clause: below SQLite's variable limit


def to_us(dt: datetime | None) -> int | None:
    """Datetime -> integer microseconds since the epoch (a naive datetime is taken as UTC)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - EPOCH) // timedelta(microseconds=1)


def from_us(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + timedelta(microseconds=us)


def td_us(td: timedelta) -> int:
    return td // timedelta(microseconds=1)


def _decision_to_text(decision: Any) -> str:
    if decision is None:
        return "null"
    d = decision.to_json() if hasattr(decision, "to_json") else decision
    return json.dumps(d, sort_keys=True)


@functools.lru_cache(maxsize=4096)
def _decision_from_text(text: str) -> Any:
    """Decisions repeat (one per rule combination): parse each text once. Decisions are frozen."""
    d = json.loads(text)
    if d is None:
        return None
    from policy import Decision  # the store keeps decisions as POLICY.md JSON
    return Decision.from_json(d)


@functools.lru_cache(maxsize=4096)
def _history_cached(text: str) -> dict[str, Any]:
    return json.loads(text)


def _history_from_text(text: str) -> dict[str, Any]:
    """Histories repeat a lot (mostly zeros): parse once, hand out copies."""
    return dict(_history_cached(text))


def _chunks(items: Sequence[Any], n: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class SqlStore:
    """Engine set-up, migrations and transactions."""

    def __init__(self, engine: Engine, *, sqlite: bool, checkpointer: Checkpointer | None = None) -> None:
        self.engine = engine
        self.sqlite = sqlite
        self.checkpointer = checkpointer
        self._write_lock = threading.Lock()  # one writer per process; the database lock covers others
        # Prebuilt statements raise the driver's own errors (not wrapped by SQLAlchemy).
        self._dbapi_operational: type[Exception] = getattr(
            engine.dialect.loaded_dbapi, "OperationalError", OperationalError)
        with self.engine.begin() as conn:
            if not sqlite and engine.dialect.name == "postgresql":
                # Two servers starting at once must not both migrate (SQLite: BEGIN IMMEDIATE does it).
                conn.execute(text("SELECT pg_advisory_xact_lock(7283540)"))
            t.migrate(conn, to_us(datetime.now(timezone.utc)) or 0)

    @classmethod
    def open_sqlite(cls, path: str | Path, busy_timeout_ms: int = 10_000) -> "SqlStore":
        """A SQLite file store in WAL mode (created and migrated when new)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        prepare_private_db_file(path)  # 0600 before SQLite makes it (and its -wal/-shm) 0644
        # Pool sized for a threaded gRPC server: readers never wait on each other in WAL mode.
        engine = create_engine(f"sqlite:///{path}", pool_size=16, max_overflow=16,
                               connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (pysqlite's own is broken)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a process crash (kill -9) loses no committed transaction.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's thread does it
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            options = conn.get_execution_options()
            if options.get("jit_in_tx"):
                return  # a Tx's Connection: the transaction is already open
            write = options.get("jit_write", True)
            # On the DBAPI connection: SQLAlchemy's statement path costs ~30 us per transaction here.
            conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                "BEGIN IMMEDIATE" if write else "BEGIN")

        checkpointer = Checkpointer(path)
        store = cls(engine, sqlite=True, checkpointer=checkpointer)
        checkpointer.start()
        return store

    @classmethod
    def open_url(cls, url: str) -> "SqlStore":
        """A store at a SQLAlchemy URL (e.g. `postgresql+psycopg://...`), migrated."""
        if url.startswith("sqlite:///"):
            return cls.open_sqlite(url[len("sqlite:///"):])
        engine = create_engine(url, pool_pre_ping=True)
        return cls(engine, sqlite=False)

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()

    def schema_version(self) -> int:
        with self.read() as tx:
            return t.current_version(tx.conn)

    @contextmanager
    def write(self) -> Iterator["Tx"]:
        """A write transaction: serialized with every other writer, committed on success."""
        with self._write_lock:
            try:
                with self._transaction(write=True) as tx:
                    tx._lock_head()
                    yield tx
            except (OperationalError, self._dbapi_operational) as e:
                if "locked" in str(e) or "busy" in str(e):
                    raise JitError("store.busy", "the database is busy; try again") from None
                raise

    @contextmanager
    def read(self) -> Iterator["Tx"]:
        """A read-only snapshot."""
        with self._transaction(write=False) as tx:
            yield tx

    @contextmanager
    def _transaction(self, write: bool) -> Iterator["Tx"]:
        """A transaction on a pooled DBAPI connection: BEGIN (SQLite; PostgreSQL's driver begins
        by itself), then COMMIT on success or ROLLBACK. SQLAlchemy's Connection and transaction
        objects cost ~30 us per transaction; a Tx builds a Connection only when a statement
        needs one (`Tx.conn`), and the hot path runs prebuilt statements on the cursor only."""
        raw = self.engine.raw_connection()
        try:
            if self.sqlite:
                raw.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")  # type: ignore[union-attr]
            tx = Tx(None, self, writable=write, raw=raw)
        except BaseException:
            raw.close()
            raise
        try:
            yield tx
        except BaseException:
            tx._end(commit=False)
            raise
        tx._end(commit=True)


class Tx:
    """The store's operations inside one transaction."""

    def __init__(self, conn: Connection | None, store: SqlStore, writable: bool, raw: Any = None) -> None:
        self._conn = conn
        self._raw = raw  # the pooled DBAPI connection this transaction runs on (None: `conn`'s)
        self.store = store
        self.writable = writable
        self._head: tuple[int, str] | None = None
        self.appended: list[AuditRecord] = []
        self.dialect = store.engine.dialect
        self._cur: Any = None

    @property
    def conn(self) -> Connection:
        """A SQLAlchemy Connection inside this transaction (made on first use)."""
        if self._conn is None:
            # Already in our transaction: the begin hook must not BEGIN again.
            self._conn = Connection(self.store.engine, connection=self._raw).execution_options(jit_in_tx=True)
        return self._conn

    @property
    def cur(self) -> Any:
        """The DBAPI cursor prebuilt statements run on (inside this transaction)."""
        if self._cur is None:
            self._cur = self._raw.cursor() if self._raw is not None else dbapi_cursor(self.conn)
        return self._cur

    def _end(self, commit: bool) -> None:
        """COMMIT or ROLLBACK on the DBAPI connection, then give it back to the pool."""
        try:
            if commit:
                self._raw.commit()
            else:
                self._raw.rollback()
        finally:
            if self._cur is not None:
                self._cur.close()
            if self._conn is not None:
                self._conn.close()  # its own transaction object (if any) rolls back: a no-op now
            else:
                self._raw.close()

    # -- audit chain ----------------------------------------------------------------

    def _lock_head(self) -> None:
        seq, hash_ = _LOCK_HEAD.run(self.cur, self.dialect).fetchone()
        self._head = (int(seq), hash_)

    def append_audit(self, type_: str, actor: str, subject: str, data: dict[str, Any],
                     at: datetime) -> AuditRecord:
        """Append one chained event (written with the transaction)."""
        return self.append_audit_many([(type_, actor, subject, data, at)])[0]

    def append_audit_many(self, events: Iterable[tuple[str, str, str, dict[str, Any], datetime]]
                          ) -> list[AuditRecord]:
        """Append events in order with one multi-row INSERT per chunk."""
        assert self.writable and self._head is not None
        seq, prev = self._head
        out: list[AuditRecord] = []
        rows: list[dict[str, Any]] = []
        for type_, actor, subject, data, at in events:
            seq += 1
            rec, text = chain.make_record(seq, at, type_, actor, subject, data, prev)
            prev = rec.hash
            out.append(rec)
            rows.append(dict(seq=seq, at_us=to_us(at), type=type_, actor=actor, subject=subject,
                             data=text, prev_hash=rec.prev_hash, hash=rec.hash))
        if not out:
            return out
        _INSERT_AUDIT.run_many(self.cur, self.dialect, rows)
        _UPDATE_HEAD.run(self.cur, self.dialect, {"new_seq": seq, "new_hash": prev})
        self._head = (seq, prev)
        self.appended.extend(out)
        return out

    def audit_head(self) -> tuple[int, str]:
        row = self.conn.execute(select(t.audit_head.c.seq, t.audit_head.c.hash)
                                .where(t.audit_head.c.id == 1)).one()
        return int(row.seq), row.hash

    def audit_events(self, after_seq: int = 0, type_: str = "", subject: str = "",
                     limit: int = 100, before: datetime | None = None,
                     since: datetime | None = None) -> list[AuditRecord]:
        q = select(t.audit).where(t.audit.c.seq > after_seq)
        if type_:
            q = q.where(t.audit.c.type.like(type_[:-1] + "%") if type_.endswith("*")
                        else t.audit.c.type == type_)
        if subject:
            q = q.where(t.audit.c.subject == subject)
        if since is not None:
            q = q.where(t.audit.c.at_us >= to_us(since))
        q = q.order_by(t.audit.c.seq).limit(limit)
        return [_audit_row(r) for r in self.conn.execute(q)]

    def iter_audit(self, batch: int = 5000) -> Iterator[AuditRecord]:
        """Every event in seq order, as stored (for verification)."""
        last = None
        while True:
            q = select(t.audit).order_by(t.audit.c.seq).limit(batch)
            if last is not None:
                q = q.where(t.audit.c.seq > last)
            rows = self.conn.execute(q).all()
            if not rows:
                return
            for r in rows:
                yield _audit_row(r)
            last = rows[-1].seq

    # -- requests -------------------------------------------------------------------

    def insert_request(self, r: RequestRecord) -> None:
        _INSERT_REQUEST.run(self.cur, self.dialect, dict(id=r.id, **_request_values(r)))

    def update_request(self, r: RequestRecord) -> None:
        _UPDATE_REQUEST.run(self.cur, self.dialect, dict(key_id=r.id, **_request_values(r)))

    def get_request(self, request_id: str) -> RequestRecord | None:
        row = _GET_REQUEST.first(self.cur, self.dialect, {"rid": request_id})
        if row is None:
            return None
        rec = _request_row(row)
        exts = {}
        for erow in _GET_EXTENSIONS.rows(self.cur, self.dialect, {"rid": request_id}):
            ext = _extension_row(erow)
            exts[ext.id] = ext
            rec.extensions.append(ext)
        for arow in _GET_APPROVALS.rows(self.cur, self.dialect, {"rid": request_id}):
            _add_approval(rec, exts, arow)
        return rec

    def get_requests(self, ids: Sequence[str]) -> list[RequestRecord]:
        """Full records for ids (in the order given; missing ids left out)."""
        rows: dict[str, RequestRecord] = {}
        for part in _chunks(list(ids)):
            for row in self.conn.execute(select(t.requests).where(t.requests.c.id.in_(part))):
                rows[row.id] = _request_row(row)
        recs = [rows[i] for i in ids if i in rows]
        return self._attach(recs)

    def query_requests(self, *, user: str | None = None, resource: str | None = None,
                       states: Sequence[str] = (), since: datetime | None = None,
                       before_num: int | None = None, limit: int = 100,
                       with_details: bool = True) -> list[tuple[int, RequestRecord]]:
        """Requests newest first, with their paging key (`num`)."""
        q = select(t.requests)
        if user:
            q = q.where(t.requests.c.user == user)
        if resource:
            q = q.where(t.requests.c.resource == resource)
        if states:
            q = q.where(t.requests.c.state.in_(list(states)))
        if since is not None:
            q = q.where(t.requests.c.created_us >= to_us(since))
        if before_num is not None:
            q = q.where(t.requests.c.num < before_num)
        q = q.order_by(t.requests.c.num.desc()).limit(limit)
        rows = self.conn.execute(q).all()
        recs = [_request_row(r) for r in rows]
        if with_details:
            recs = self._attach(recs)
        return [(r.num, rec) for r, rec in zip(rows, recs)]

    def owed_reviews(self) -> list[RequestRecord]:
        """Break-glass grants whose review is still owed, oldest first."""
        # The literal (not a bound parameter) lets SQLite use the partial index ix_requests_review_owed.
        rows = self.conn.execute(select(t.requests).where(text("requests.review_state = 'OWED'"))
                                 .order_by(t.requests.c.num)).all()
        return self._attach([_request_row(r) for r in rows])

    def requests_with_pending_extensions(self) -> list[str]:
        q = select(t.extensions.c.request_id).where(t.extensions.c.state == EXT_PENDING)
        return [r.request_id for r in self.conn.execute(q)]

    def _attach(self, recs: list[RequestRecord]) -> list[RequestRecord]:
        """Load approvals and extensions of the records in a few queries."""
        if not recs:
            return recs
        by_id = {r.id: r for r in recs}
        ids = list(by_id)
        exts: dict[str, ExtensionRecord] = {}
        for part in _chunks(ids):
            for row in self.conn.execute(select(t.extensions).where(t.extensions.c.request_id.in_(part))
                                         .order_by(t.extensions.c.number)):
                ext = _extension_row(row)
                exts[ext.id] = ext
                by_id[ext.request_id].extensions.append(ext)
            for row in self.conn.execute(select(t.approvals).where(t.approvals.c.request_id.in_(part))
                                         .order_by(t.approvals.c.num)):
                _add_approval(by_id[row.request_id], exts, row)
        return recs

    def add_approval(self, request_id: str, extension_id: str, a: ApprovalRecord) -> None:
        self.conn.execute(insert(t.approvals).values(
            request_id=request_id, extension_id=extension_id, approver=a.approver, level=a.level,
            approved=a.approved, comment=a.comment, at_us=to_us(a.at)))

    def insert_extension(self, e: ExtensionRecord) -> None:
        self.conn.execute(insert(t.extensions).values(id=e.id, **_extension_values(e)))

    def update_extension(self, e: ExtensionRecord) -> None:
        self.conn.execute(update(t.extensions).where(t.extensions.c.id == e.id)
                          .values(**_extension_values(e)))

    def find_extension(self, extension_id: str) -> str | None:
        """The request id an extension id belongs to."""
        return self.conn.execute(select(t.extensions.c.request_id)
                                 .where(t.extensions.c.id == extension_id)).scalar()

    # -- history --------------------------------------------------------------------

    def history_counts(self, user: str, since: datetime) -> dict[str, int]:
        """POLICY.md's history counters for `user`'s requests created at or after `since`.

        Whole days after `since`'s day come from the `history_days` counters; only the rows
        of `since`'s own (partial) day are counted in `requests`. Same figures as counting
        every row, in constant work.
        """
        since_us = to_us(since)
        assert since_us is not None
        day = since_us // t.DAY_US
        cur = self.cur
        whole = _HISTORY_DAYS.run(cur, self.dialect, {"u": user, "day": day}).fetchone()
        edge = _HISTORY_COUNTS.run(cur, self.dialect, {"u": user, "since": since_us,
                                                        "until": (day + 1) * t.DAY_US}).fetchone()
        g, d, rv, f = (int(a or 0) + int(b or 0) for a, b in zip(whole, edge))
        return {"granted_90d": g, "denied_90d": d, "revoked_90d": rv, "flagged_90d": f}

    def history_counts_scan(self, user: str, since: datetime) -> dict[str, int]:
        """The same counters by counting every row (the reference `history_counts` must equal)."""
        g, d, rv, f = _HISTORY_COUNTS.run(self.cur, self.dialect, {"u": user, "since": to_us(since),
                                                                   "until": 2**62}).fetchone()
        return {"granted_90d": int(g), "denied_90d": int(d), "revoked_90d": int(rv), "flagged_90d": int(f)}

    def used_minutes_of(self, user: str, resource: str, since: datetime) -> list[float]:
        """Minutes used per grant of `user` on `resource` since `since` (grants with sessions)."""
        rows = _USED_OF.run(self.cur, self.dialect, {"u": user, "res": resource, "since": to_us(since)}).fetchall()
        return [max(0.0, (int(b) - int(a)) / 60e6) for a, b in rows]

    def finished_grants(self, user: str, resource: str, since: datetime, limit: int = 250) -> list[RequestRecord]:
        """Grants that ended since `since`: `user`'s anywhere and anyone's on `resource`,
        at most `limit` of each, newest first (no approvals or extensions loaded)."""
        seen: dict[str, RequestRecord] = {}
        for stmt, params in ((_FINISHED_BY_USER, {"u": user}), (_FINISHED_ON_RESOURCE, {"res": resource})):
            for row in self.conn.execute(stmt, {**params, "since": to_us(since), "n": limit}):
                if row.activated_us is not None and row.id not in seen:
                    seen[row.id] = _request_row(row)
        return sorted(seen.values(), key=lambda r: r.ended_at, reverse=True)  # type: ignore[arg-type,return-value]

    def used_minutes(self, grant_ids: Sequence[str]) -> dict[str, float]:
        """Minutes used per grant: first session start to last session end or activity."""
        out: dict[str, float] = {}
        end = func.coalesce(t.sessions.c.ended_us, t.sessions.c.last_activity_us, t.sessions.c.started_us)
        for part in _chunks(list(grant_ids)):
            q = select(t.sessions.c.grant_id, func.min(t.sessions.c.started_us), func.max(end)) \
                .where(t.sessions.c.grant_id.in_(part)).group_by(t.sessions.c.grant_id)
            for gid, start, stop in self.conn.execute(q):
                out[gid] = max(0.0, (int(stop) - int(start)) / 60e6)
        return out

    # -- imported history (recommender only) ------------------------------------------

    def insert_imported_history(self, rows: Sequence[dict[str, Any]], batch: str, at: datetime) -> int:
        """Store imported history rows (dicts of HistoryRow fields) under `batch`; returns the count."""
        at_us = to_us(at)
        values = [_imported_values(r, batch, at_us) for r in rows]  # type: ignore[arg-type]
        for part in _chunks(values):
            self.conn.execute(insert(t.imported_history), list(part))
        return len(values)

    def imported_batch_exists(self, batch: str) -> bool:
        return self.conn.execute(select(t.imported_history.c.num)
                                 .where(t.imported_history.c.batch == batch).limit(1)).first() is not None

    def imported_generation(self) -> int:
        """Changes whenever rows are imported (the highest row number; rows are never deleted)."""
        return int(self.conn.execute(select(func.max(t.imported_history.c.num))).scalar() or 0)

    def imported_by_user(self, user: str, limit: int = 250) -> list[tuple[int, dict[str, Any]]]:
        """`user`'s newest finished imported rows: (row number, dict of HistoryRow fields)."""
        return [(r.num, _imported_row(r)) for r in self.conn.execute(_IMPORTED_BY_USER, {"u": user, "n": limit})]

    def imported_on_resource(self, resource: str, limit: int = 250) -> list[tuple[int, dict[str, Any]]]:
        """Anyone's newest finished imported rows on `resource`: (row number, dict of HistoryRow fields)."""
        return [(r.num, _imported_row(r))
                for r in self.conn.execute(_IMPORTED_ON_RESOURCE, {"res": resource, "n": limit})]

    def iter_imported_history(self, since: datetime | None = None, page: int = 5000) -> Iterator[dict[str, Any]]:
        """Every imported row requested since `since`, in import order, as dicts of HistoryRow fields."""
        h = t.imported_history.c
        last = None
        while True:
            q = select(t.imported_history).order_by(h.num).limit(page)
            if since is not None:
                q = q.where(h.requested_us >= to_us(since))
            if last is not None:
                q = q.where(h.num > last)
            rows = self.conn.execute(q).all()
            if not rows:
                return
            for r in rows:
                yield _imported_row(r)
            last = rows[-1].num

    def count_imported_history(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(t.imported_history)).scalar() or 0)

    # -- deadlines ------------------------------------------------------------------

    def end_due(self, now: datetime) -> tuple[list[str], list[str], list[str]]:
        """Batch-end every overdue grant (EXPIRED) and pending request (TIMED_OUT).

        Returns (expired ids, timed-out ids, cancelled extension ids).
        """
        now_us = to_us(now)
        # One UPDATE ... RETURNING per kind (SQLite >= 3.35 and PostgreSQL both have it).
        expired = [r.id for r in self.conn.execute(
            update(t.requests).where(and_(t.requests.c.state == ACTIVE, t.requests.c.expires_us <= now_us))
            .values(state=EXPIRED, ended_us=t.requests.c.expires_us, end_reason="expired")
            .returning(t.requests.c.id))]
        timed_out = [r.id for r in self.conn.execute(
            update(t.requests).where(and_(_IS_PENDING, t.requests.c.pending_deadline_us <= now_us))
            .values(state=TIMED_OUT, ended_us=now_us, end_reason="pending timeout",
                    message="nobody decided in time")
            .returning(t.requests.c.id))]
        cancelled: list[str] = []
        ended = expired + timed_out
        for part in _chunks(ended):
            rows = self.conn.execute(select(t.extensions.c.id).where(and_(
                t.extensions.c.request_id.in_(part), t.extensions.c.state == EXT_PENDING))).all()
            if rows:
                ids = [r.id for r in rows]
                self.conn.execute(update(t.extensions).where(t.extensions.c.id.in_(ids))
                                  .values(state=EXT_CANCELLED, decided_us=now_us))
                cancelled.extend(ids)
        return expired, timed_out, cancelled

    def next_deadline(self) -> datetime | None:
        a = self.conn.execute(select(func.min(t.requests.c.expires_us))
                              .where(t.requests.c.state == ACTIVE)).scalar()
        b = self.conn.execute(select(func.min(t.requests.c.pending_deadline_us))
                              .where(_IS_PENDING)).scalar()
        vals = [v for v in (a, b) if v is not None]
        return from_us(min(vals)) if vals else None

    # -- sessions -------------------------------------------------------------------

    def insert_session(self, s: SessionRecord) -> None:
        self.conn.execute(insert(t.sessions).values(id=s.id, **_session_values(s)))

    def update_session(self, s: SessionRecord) -> None:
        self.conn.execute(update(t.sessions).where(t.sessions.c.id == s.id).values(**_session_values(s)))

    def get_session(self, session_id: str) -> SessionRecord | None:
        row = self.conn.execute(select(t.sessions).where(t.sessions.c.id == session_id)).first()
        return _session_row(row) if row is not None else None

    def query_sessions(self, *, grant_id: str | None = None, user: str | None = None,
                       resource: str | None = None, live_only: bool = False,
                       grant_ids: Sequence[str] | None = None,
                       before_num: int | None = None, limit: int = 100) -> list[tuple[int, SessionRecord]]:
        q = select(t.sessions)
        if grant_id:
            q = q.where(t.sessions.c.grant_id == grant_id)
        if grant_ids is not None:
            q = q.where(t.sessions.c.grant_id.in_(list(grant_ids)))
        if user:
            q = q.where(t.sessions.c.user == user)
        if resource:
            q = q.where(t.sessions.c.resource == resource)
        if live_only:
            q = q.where(t.sessions.c.ended_us.is_(None))
        if before_num is not None:
            q = q.where(t.sessions.c.num < before_num)
        q = q.order_by(t.sessions.c.num.desc()).limit(limit)
        return [(r.num, _session_row(r)) for r in self.conn.execute(q)]

    # -- credentials ----------------------------------------------------------------

    def insert_certificate(self, serial: int, grant_id: str, purpose: str, principals: list[str],
                           issued: datetime, valid_before: datetime, session_id: str = "") -> bool:
        """Record an issued serial; False if the serial is already taken."""
        exists = self.conn.execute(select(t.certificates.c.serial)
                                   .where(t.certificates.c.serial == serial)).first()
        if exists is not None:
            return False
        self.conn.execute(insert(t.certificates).values(
            serial=serial, grant_id=grant_id, purpose=purpose, session_id=session_id,
            principals=json.dumps(principals), issued_us=to_us(issued),
            valid_before_us=to_us(valid_before)))
        return True

    def get_certificate(self, serial: int) -> Any:
        return self.conn.execute(select(t.certificates).where(t.certificates.c.serial == serial)).first()

    def revoke_certificates(self, grant_ids: Sequence[str], at: datetime) -> list[int]:
        """Mark the certificates of grants revoked; returns their serials."""
        serials: list[int] = []
        for part in _chunks(list(grant_ids)):
            cond = and_(t.certificates.c.grant_id.in_(part), t.certificates.c.revoked_us.is_(None))
            serials += [int(r.serial) for r in self.conn.execute(select(t.certificates.c.serial).where(cond))]
            self.conn.execute(update(t.certificates).where(cond).values(revoked_us=to_us(at)))
        return serials

    def revoked_serials(self, now: datetime) -> list[int]:
        """Revoked user certificates still inside their window (later ones expire by themselves)."""
        q = select(t.certificates.c.serial).where(and_(
            t.certificates.c.revoked_us.is_not(None), t.certificates.c.valid_before_us > to_us(now)))
        return [int(r.serial) for r in self.conn.execute(q.order_by(t.certificates.c.serial))]

    def insert_token(self, token_hash: str, grant_id: str, issued: datetime) -> None:
        self.conn.execute(insert(t.db_tokens).values(token_hash=token_hash, grant_id=grant_id,
                                                     issued_us=to_us(issued)))

    def token_grant(self, token_hash: str) -> str | None:
        return self.conn.execute(select(t.db_tokens.c.grant_id)
                                 .where(t.db_tokens.c.token_hash == token_hash)).scalar()

    def delete_tokens(self, grant_ids: Sequence[str]) -> None:
        for part in _chunks(list(grant_ids)):
            self.conn.execute(delete(t.db_tokens).where(t.db_tokens.c.grant_id.in_(part)))

    # -- aggregates -----------------------------------------------------------------

    def count_requests(self, *, states: Sequence[str] = (), ended_since: datetime | None = None) -> int:
        q = select(func.count()).select_from(t.requests)
        if states:
            q = q.where(t.requests.c.state.in_(list(states)))
        if ended_since is not None:
            q = q.where(t.requests.c.ended_us >= to_us(ended_since))
        return int(self.conn.execute(q).scalar() or 0)


def _add_approval(rec: RequestRecord, exts: dict[str, ExtensionRecord], row: Any) -> None:
    a = ApprovalRecord(approver=row.approver, level=row.level, approved=bool(row.approved),
                       comment=row.comment, at=from_us(row.at_us))  # type: ignore[arg-type]
    if row.extension_id:
        if row.extension_id in exts:
            exts[row.extension_id].approvals.append(a)
    else:
        rec.approvals.append(a)


# The state as a literal, so the partial index ix_requests_pending_p can serve the query.
_IS_PENDING = text(f"requests.state = '{PENDING}'")
# Hot statements, built once (SQLAlchemy then only binds parameters).
_r, _s = t.requests.c, t.sessions.c
_HISTORY_COUNTS = Prebuilt(select(
    func.count(_r.activated_us),
    func.coalesce(func.sum(case((_r.state == "DENIED", 1), else_=0)), 0),
    func.coalesce(func.sum(case((_r.state == "REVOKED", 1), else_=0)), 0),
    func.coalesce(func.sum(case((_r.review_state == "FLAGGED", 1), else_=0)), 0),
).where(and_(_r.user == bindparam("u"), _r.created_us >= bindparam("since"),
             _r.created_us < bindparam("until"))))
_hd = t.history_days.c
_HISTORY_DAYS = Prebuilt(select(func.sum(_hd.granted), func.sum(_hd.denied), func.sum(_hd.revoked),
                                func.sum(_hd.flagged))
                         .where(and_(_hd.user == bindparam("u"), _hd.day > bindparam("day"))))
# Driven from the requester's sessions on the resource (a session has its grant's user and
# resource): a user's many grants without sessions cost nothing here.
_USED_OF = Prebuilt(
    select(func.min(_s.started_us), func.max(func.coalesce(_s.ended_us, _s.last_activity_us, _s.started_us)))
    .select_from(t.sessions.join(t.requests, _r.id == _s.grant_id))
    .where(and_(_s.user == bindparam("u"), _s.resource == bindparam("res"),
                _r.created_us >= bindparam("since")))
    .group_by(_s.grant_id))
_FINISHED_BY_USER = (select(t.requests).where(and_(_r.user == bindparam("u"), _r.ended_us >= bindparam("since")))
                     .order_by(_r.ended_us.desc()).limit(bindparam("n")))
_FINISHED_ON_RESOURCE = (select(t.requests)
                         .where(and_(_r.resource == bindparam("res"), _r.ended_us >= bindparam("since")))
                         .order_by(_r.ended_us.desc()).limit(bindparam("n")))
_h = t.imported_history.c
_IMPORTED_BY_USER = (select(t.imported_history).where(_h.user == bindparam("u"))
                     .order_by(_h.finished_us.desc()).limit(bindparam("n")))
_IMPORTED_ON_RESOURCE = (select(t.imported_history).where(_h.resource == bindparam("res"))
                         .order_by(_h.finished_us.desc()).limit(bindparam("n")))
_GET_REQUEST = Prebuilt(select(t.requests).where(_r.id == bindparam("rid")))
_GET_EXTENSIONS = Prebuilt(select(t.extensions).where(t.extensions.c.request_id == bindparam("rid"))
                           .order_by(t.extensions.c.number))
_GET_APPROVALS = Prebuilt(select(t.approvals).where(t.approvals.c.request_id == bindparam("rid"))
                          .order_by(t.approvals.c.num))
_LOCK_HEAD = Prebuilt(select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)
                      .with_for_update())
_UPDATE_HEAD = Prebuilt(update(t.audit_head).where(t.audit_head.c.id == 1).values(
    seq=bindparam("new_seq"), hash=bindparam("new_hash")))
_AUDIT_KEYS = ["seq", "at_us", "type", "actor", "subject", "data", "prev_hash", "hash"]
_INSERT_AUDIT = Prebuilt(insert(t.audit), _AUDIT_KEYS)
_REQUEST_KEYS = [c.key for c in t.requests.c if c.key != "num"]
_INSERT_REQUEST = Prebuilt(insert(t.requests), _REQUEST_KEYS)
_UPDATE_REQUEST = Prebuilt(update(t.requests).where(t.requests.c.id == bindparam("key_id")),
                           [k for k in _REQUEST_KEYS if k != "id"])


# -- row <-> record ---------------------------------------------------------------------

def _request_values(r: RequestRecord) -> dict[str, Any]:
    return dict(
        user=r.user, resource=r.resource, kind=r.kind, login=r.login, role=r.role,
        duration_us=td_us(r.duration), reason=r.reason, ticket=r.ticket, emergency=r.emergency,
        state=r.state, decision=_decision_to_text(r.decision), history=json.dumps(r.history, sort_keys=True),
        created_us=to_us(r.created_at), activated_us=to_us(r.activated_at), expires_us=to_us(r.expires_at),
        ended_us=to_us(r.ended_at), pending_deadline_us=to_us(r.pending_deadline),
        extensions_used=r.extensions_used, current_level=r.current_level, review_state=r.review_state,
        review_by=r.review_by, review_comment=r.review_comment, end_reason=r.end_reason, message=r.message,
    )


def _request_row(row: Any) -> RequestRecord:
    return RequestRecord(
        id=row.id, user=row.user, resource=row.resource, kind=row.kind, login=row.login, role=row.role,
        duration=timedelta(microseconds=row.duration_us), reason=row.reason, ticket=row.ticket,
        emergency=bool(row.emergency), state=row.state, decision=_decision_from_text(row.decision),
        created_at=from_us(row.created_us),  # type: ignore[arg-type]
        activated_at=from_us(row.activated_us), expires_at=from_us(row.expires_us),
        ended_at=from_us(row.ended_us), extensions_used=row.extensions_used,
        current_level=row.current_level, review_state=row.review_state, end_reason=row.end_reason,
        message=row.message, pending_deadline=from_us(row.pending_deadline_us),
        history=_history_from_text(row.history or "{}"), review_by=row.review_by,
        review_comment=row.review_comment,
    )


def _extension_values(e: ExtensionRecord) -> dict[str, Any]:
    return dict(request_id=e.request_id, number=e.number, duration_us=td_us(e.duration),
                justification=e.justification, state=e.state, decision=_decision_to_text(e.decision),
                created_us=to_us(e.created_at), decided_us=to_us(e.decided_at),
                current_level=e.current_level)


def _extension_row(row: Any) -> ExtensionRecord:
    return ExtensionRecord(
        id=row.id, request_id=row.request_id, number=row.number,
        duration=timedelta(microseconds=row.duration_us), justification=row.justification,
        state=row.state, decision=_decision_from_text(row.decision), approvals=[],
        created_at=from_us(row.created_us), decided_at=from_us(row.decided_us),
        current_level=row.current_level)


def _session_values(s: SessionRecord) -> dict[str, Any]:
    return dict(grant_id=s.grant_id, user=s.user, resource=s.resource, kind=s.kind, login=s.login,
                role=s.role, broker=s.broker, client_address=s.client_address, channel=s.channel,
                started_us=to_us(s.started_at), ended_us=to_us(s.ended_at), end_reason=s.end_reason,
                bytes_in=s.bytes_in, bytes_out=s.bytes_out, recording_ref=s.recording_ref,
                recording_hash=s.recording_hash, last_activity_us=to_us(s.last_activity_at))


def _session_row(row: Any) -> SessionRecord:
    return SessionRecord(
        id=row.id, grant_id=row.grant_id, user=row.user, resource=row.resource, kind=row.kind,
        login=row.login, role=row.role, broker=row.broker, client_address=row.client_address,
        started_at=from_us(row.started_us),  # type: ignore[arg-type]
        ended_at=from_us(row.ended_us), end_reason=row.end_reason, bytes_in=row.bytes_in,
        bytes_out=row.bytes_out, recording_ref=row.recording_ref, recording_hash=row.recording_hash,
        last_activity_at=from_us(row.last_activity_us), channel=row.channel)


def _imported_values(r: dict[str, Any], batch: str, at_us: int) -> dict[str, Any]:
    requested: datetime = r["requested_at"]
    used = float(r["used_minutes"])
    return dict(batch=batch, user=r["user"], resource=r["resource"], kind=r["kind"],
                labels=json.dumps(dict(r.get("labels") or {}), sort_keys=True),
                login=r.get("login"), role=r.get("role"), reason=r.get("reason", ""), ticket=r.get("ticket", ""),
                requested_us=to_us(requested), finished_us=to_us(requested + timedelta(minutes=used)),
                asked_minutes=float(r["asked_minutes"]), used_minutes=used,
                extensions=int(r.get("extensions", 0)), imported_us=at_us)


def _imported_row(row: Any) -> dict[str, Any]:
    return dict(user=row.user, resource=row.resource, kind=row.kind, labels=_history_from_text(row.labels),
                login=row.login, role=row.role, reason=row.reason, ticket=row.ticket,
                requested_at=from_us(row.requested_us), asked_minutes=float(row.asked_minutes),
                used_minutes=float(row.used_minutes), extensions=int(row.extensions))


def _audit_row(row: Any) -> AuditRecord:
    return AuditRecord(seq=int(row.seq), at=from_us(row.at_us),  # type: ignore[arg-type]
                       type=row.type, actor=row.actor, subject=row.subject,
                       data=json.loads(row.data), prev_hash=row.prev_hash, hash=row.hash)
