"""Connections, migrations and transactions: the only part of the store that knows its database.

`SqlStore.write()` opens a transaction that holds the write lock (SQLite: `BEGIN IMMEDIATE`
plus a process lock; PostgreSQL: `SELECT ... FOR UPDATE` on the audit chain head), so a
state change's read-check-write cannot race, and every change and its audit events commit
together. `read()` opens a snapshot. Everything that differs between SQLite and PostgreSQL
is here (and in `migrations.py`'s one trigger step): opening, connection settings, how a
transaction begins, the migration lock and the busy error. The table modules (`requests`,
`sessions`, `credentials`, `history`, `audit`) hold dialect-neutral SQLAlchemy Core only.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from controlplane.errors import JitError
from controlplane.model import AuditRecord
from controlplane.store import migrations
from controlplane.store.audit import AuditTx
from controlplane.store.base import to_us
from controlplane.store.checkpoint import Checkpointer
from controlplane.store.credentials import CredentialTx
from controlplane.store.files import prepare_private_db_file
from controlplane.store.history import HistoryTx
from controlplane.store.locks import LockTx
from controlplane.store.requests import RequestTx
from controlplane.store.sessions import SessionTx

log = logging.getLogger("jitgate.store")

SQLITE_BUSY_TIMEOUT_MS = 10_000  # how long a SQLite writer waits for another process's lock before "busy"
SQLITE_POOL_SIZE = 16  # pooled connections for a threaded gRPC server: WAL readers never wait on each other
PG_POOL_SIZE = 10  # pooled connections per plane (the gRPC server's worker threads, plus the sweeper)
PG_CONNECT_TIMEOUT_S = 3
_PG_MIGRATION_LOCK = 7283540  # pg_advisory_xact_lock key: two servers starting at once migrate one after the other


class Tx(AuditTx, RequestTx, SessionTx, CredentialTx, HistoryTx, LockTx):
    """The store's operations inside one transaction: one class per table group, one transaction."""

    def _rows_in(self, table: Table, key: str, values: Sequence[Any],
                 order: str | None = None) -> list[tuple[Any, ...]]:
        if self.dialect.name != "postgresql":
            return super()._rows_in(table, key, values, order)
        # One statement with an array (`= ANY`), not one IN (...) of 500 placeholders per chunk.
        # The array goes in binary (%b): psycopg's text form of 10,000 ids costs 100-300 ms of
        # Python (quoting each element), the binary one ~10 ms (measured).
        quote = self.dialect.identifier_preparer.quote
        self.cur.execute(f"SELECT {', '.join(quote(c.name) for c in table.c)} FROM {quote(table.name)} "
                         f"WHERE {quote(key)} = ANY(%b)" + (f" ORDER BY {quote(order)}" if order else ""),
                         (list(values),))
        return [tuple(r) for r in self.cur.fetchall()]

    def _delete_in(self, table: Table, key: str, values: Sequence[Any]) -> None:
        if self.dialect.name != "postgresql":
            super()._delete_in(table, key, values)
            return
        if values:
            quote = self.dialect.identifier_preparer.quote
            self.cur.execute(f"DELETE FROM {quote(table.name)} WHERE {quote(key)} = ANY(%b)", (list(values),))

    def _bulk_insert(self, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if self.dialect.name != "postgresql":
            super()._bulk_insert(table, columns, rows)  # SQLite's executemany is one prepared loop in C
            return
        # COPY: ~6 us a row where executemany costs ~40 (a sweep's 10,000 audit events, measured).
        quote = self.dialect.identifier_preparer.quote
        with self.cur.copy(f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


class SqlStore:
    """Engine set-up, migrations and transactions."""

    def __init__(self, engine: Engine, *, sqlite: bool, checkpointer: Checkpointer | None = None) -> None:
        self.engine = engine
        self.sqlite = sqlite
        self.checkpointer = checkpointer
        self._write_lock = threading.Lock()  # one writer per process; the database lock covers others
        # Called with the audit events each write transaction appended, after its commit and
        # before the next local writer starts (scaleout/tailer.py tells its own events apart).
        self.commit_hooks: list[Callable[[Sequence[AuditRecord]], None]] = []
        # Prebuilt statements raise the driver's own errors (not wrapped by SQLAlchemy).
        self._dbapi_operational: type[Exception] = getattr(
            engine.dialect.loaded_dbapi, "OperationalError", OperationalError)
        with self.engine.begin() as conn:
            if not sqlite and engine.dialect.name == "postgresql":
                # Two servers starting at once must not both migrate (SQLite: BEGIN IMMEDIATE does it).
                conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
            migrations.migrate(conn, to_us(datetime.now(UTC)) or 0)

    @classmethod
    def open_sqlite(cls, path: str | Path, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> SqlStore:
        """A SQLite file store in WAL mode (created and migrated when new)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        prepare_private_db_file(path)  # 0600 before SQLite makes it (and its -wal/-shm) 0644
        engine = create_engine(f"sqlite:///{path}", pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE,
                               connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})
        _sqlite_hooks(engine, busy_timeout_ms)
        checkpointer = Checkpointer(path)
        store = cls(engine, sqlite=True, checkpointer=checkpointer)
        checkpointer.start()
        return store

    @classmethod
    def open_url(cls, url: str) -> SqlStore:
        """A store at a SQLAlchemy URL (e.g. `postgresql+psycopg://...`), migrated."""
        if url.startswith("sqlite:///"):
            return cls.open_sqlite(url[len("sqlite:///"):])
        # A store that is away fails a call within seconds (store.unavailable), not a TCP timeout.
        # No pool_pre_ping: it costs a round trip per transaction; see `_operational` instead.
        engine = create_engine(url, pool_pre_ping=False, pool_size=PG_POOL_SIZE, max_overflow=PG_POOL_SIZE,
                               connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
        return cls(engine, sqlite=False)

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()

    def schema_version(self) -> int:
        with self.read() as tx:
            return migrations.current_version(tx.conn)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: serialized with every other writer, committed on success."""
        with self._write_lock:
            try:
                with self._transaction(write=True) as tx:
                    tx._lock_head()  # the audit chain's end: the lock every writer takes first
                    yield tx
                for hook in self.commit_hooks:
                    hook(tx.appended)
            except (OperationalError, self._dbapi_operational) as e:
                err = self._operational(e)
                if err is None:
                    raise
                raise err from None

    def local_commits_settled(self) -> None:
        """Return once no write transaction of this process is between its commit and its hooks."""
        with self._write_lock:
            pass

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only snapshot."""
        try:
            with self._transaction(write=False) as tx:
                yield tx
        except (OperationalError, self._dbapi_operational) as e:
            err = self._operational(e)
            if err is None:
                raise
            raise err from None

    def _operational(self, e: Exception) -> JitError | None:
        """The refusal for a driver's operational error, or None to let it through as it is.
        SQLite's OperationalError also means a bad statement or schema: only busy is a refusal there."""
        err = _operational(e, self.sqlite)
        if err is not None and err.code == "store.unavailable":
            # No pre-ping per checkout (a round trip per transaction): after a lost connection,
            # drop every pooled one so the next calls connect afresh instead of failing one by one.
            self.engine.dispose(close=False)
        return err

    def ping(self) -> None:
        """One round trip to the database (raises JitError `store.unavailable` when it cannot)."""
        with self.read() as tx:
            tx.cur.execute("SELECT 1")
            tx.cur.fetchall()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        """A transaction on a pooled DBAPI connection: BEGIN (SQLite; PostgreSQL's driver begins
        by itself), then COMMIT on success or ROLLBACK. SQLAlchemy's Connection and transaction
        objects cost ~30 us per transaction; a Tx builds a Connection only when a statement
        needs one (`Tx.conn`), and the hot path runs prebuilt statements on the cursor only."""
        raw = self.engine.raw_connection()
        try:
            if self.sqlite:
                raw.driver_connection.execute(_sqlite_begin(write))  # type: ignore[union-attr]
            tx = Tx(self.engine, raw, write)
        except BaseException:
            raw.close()
            raise
        try:
            yield tx
        except BaseException:
            tx._end(commit=False)
            raise
        tx._end(commit=True)


def _operational(e: Exception, sqlite: bool) -> JitError | None:
    """The driver's operational error as the refusal a caller can act on (the cause is logged)."""
    if "locked" in str(e) or "busy" in str(e):
        return JitError("store.busy", "the database is busy; try again")
    if sqlite:
        return None
    log.warning("store unavailable: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
    return JitError("store.unavailable", "the store cannot be reached; try again")


def open_store(target: str) -> SqlStore:
    """A store from a SQLAlchemy URL, or a SQLite file path."""
    if "://" in target:
        return SqlStore.open_url(target)
    return SqlStore.open_sqlite(target)


def _sqlite_begin(write: bool) -> str:
    # IMMEDIATE takes the write lock at BEGIN: a read-check-write never meets a writer midway.
    return "BEGIN IMMEDIATE" if write else "BEGIN"


def _sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    """Settings on each new SQLite connection, and our own BEGIN on SQLAlchemy-begun transactions."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
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
        # On the DBAPI connection: SQLAlchemy's statement path costs ~30 us per transaction here.
        conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            _sqlite_begin(options.get("jit_write", True)))
