"""What every table group builds on: one transaction's connection and cursor, and column values.

Columns hold portable values only (see `tables.py`): times are BIGINT microseconds since the
Unix epoch (UTC), durations BIGINT microseconds, JSON as TEXT. The conversions live here, once.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Engine, Row, Select, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.pool import PoolProxiedConnection

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
IN_CHUNK = 500  # ids per IN (...) clause: below SQLite's variable limit
PAGE_ROWS = 5000  # rows per page when a whole table is read in order: bounded memory per query

T = TypeVar("T")


def to_us(dt: datetime | None) -> int | None:
    """Datetime -> integer microseconds since the epoch (a naive datetime is taken as UTC)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(microseconds=1)


def from_us(us: int | None) -> datetime | None:
    """Integer microseconds since the epoch -> an aware UTC datetime (None stays None)."""
    return None if us is None else EPOCH + timedelta(microseconds=us)


def td_us(td: timedelta) -> int:
    """A duration in integer microseconds."""
    return td // timedelta(microseconds=1)


def minutes_between(start_us: int, end_us: int) -> float:
    """Minutes from one stored time to another (never negative)."""
    return max(0.0, (int(end_us) - int(start_us)) / 60e6)


def chunks(items: Sequence[T], n: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `n` (one IN (...) clause each)."""
    for i in range(0, len(items), n):
        yield items[i:i + n]


@functools.lru_cache(maxsize=4096)
def _json_object_cached(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def json_object_from_text(text: str) -> dict[str, Any]:
    """A JSON object column: texts repeat a lot (histories are mostly zeros), so each is parsed
    once and every caller gets its own copy."""
    return dict(_json_object_cached(text))


@functools.lru_cache(maxsize=256)
def _in_sql(dialect: Dialect, verb: str, table: Table, key: str, n: int, order: str | None) -> str:
    """`SELECT <every column> FROM t WHERE key IN (?, ...)` (or `DELETE FROM t ...`) with `n`
    placeholders in the driver's style; portable SQL (quoted names), written once per shape."""
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    head = "DELETE" if verb == "delete" else "SELECT " + ", ".join(quote(c.name) for c in table.c)
    sql = f"{head} FROM {quote(table.name)} WHERE {quote(key)} IN ({', '.join([mark] * n)})"
    return sql + (f" ORDER BY {quote(order)}" if order else "")


class TxBase:
    """One transaction on a pooled DBAPI connection (begun by the engine). Statements run either
    prebuilt on `cur` (the hot path) or through SQLAlchemy on `conn`; both are the same transaction."""

    def __init__(self, engine: Engine, raw: PoolProxiedConnection, writable: bool) -> None:
        self._engine = engine
        self._raw = raw
        self._conn: Connection | None = None
        self._cur: DBAPICursor | None = None
        self.writable = writable
        self.dialect = engine.dialect

    @property
    def conn(self) -> Connection:
        """A SQLAlchemy Connection inside this transaction (made on first use)."""
        if self._conn is None:
            # Already in our transaction: the engine's begin hook must not BEGIN again.
            self._conn = Connection(self._engine, connection=self._raw).execution_options(jit_in_tx=True)
        return self._conn

    @property
    def cur(self) -> DBAPICursor:
        """The DBAPI cursor prebuilt statements run on (inside this transaction)."""
        if self._cur is None:
            self._cur = self._raw.cursor()
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

    def _rows_in(self, table: Table, key: str, values: Sequence[Any],
                 order: str | None = None) -> list[tuple[Any, ...]]:
        """Every row of `table` (all columns, in table order, as plain tuples) whose `key` is one of
        `values`, on the cursor: a burst of 10,000 ids costs no SQLAlchemy row or IN compilation.
        Ordered by `order` within each chunk of IN_CHUNK values."""
        out: list[tuple[Any, ...]] = []
        for part in chunks(list(values)):
            self.cur.execute(_in_sql(self.dialect, "select", table, key, len(part), order), tuple(part))
            out.extend(tuple(r) for r in self.cur.fetchall())
        return out

    def _bulk_insert(self, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert many rows (values in `columns` order) at once; the engine's Tx loads them the
        fastest way its database has (PostgreSQL: COPY)."""
        quote = self.dialect.identifier_preparer.quote
        mark = "?" if self.dialect.paramstyle == "qmark" else "%s"
        self.cur.executemany(f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
                             f"VALUES ({', '.join([mark] * len(columns))})", rows)

    def _delete_in(self, table: Table, key: str, values: Sequence[Any]) -> None:
        """Delete the rows of `table` whose `key` is one of `values` (on the cursor, chunked)."""
        for part in chunks(list(values)):
            self.cur.execute(_in_sql(self.dialect, "delete", table, key, len(part), None), tuple(part))

    def _pages(self, query: Select[Any], key: Column[int], page: int = PAGE_ROWS) -> Iterator[Row[Any]]:
        """Every row of `query` in `key` order, read `page` rows at a time (keyset paging)."""
        last: int | None = None
        while True:
            q = query.order_by(key).limit(page)
            if last is not None:
                q = q.where(key > last)
            rows = self.conn.execute(q).all()
            if not rows:
                return
            yield from rows
            last = rows[-1]._mapping[key]
