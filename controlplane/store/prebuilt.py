"""Hot statements compiled once per dialect and run straight on the DBAPI cursor.

SQLAlchemy's execution of a Core statement costs ~35 us of Python per call (execution
context, parameter processing, result wrapping) against ~2 us for the SQLite call
itself; the request hot path runs about a dozen statements. A `Prebuilt` keeps the
statement as portable Core (the same text serves SQLite and PostgreSQL), compiles it
once per dialect and then only binds parameters. It runs inside the caller's
SQLAlchemy transaction, on the same DBAPI connection, so commit and rollback are
unchanged. Use it only for statements whose parameters need no type processing
(str, int, bool, None) - which is every column of this store.
"""
from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class Prebuilt:
    """One statement, run on a DBAPI cursor of the transaction's connection: `run` (returns the
    cursor), `run_many` (one parameter set per row), `rows`/`first` (named tuples of the columns),
    `one` (the row of an aggregate)."""

    def __init__(self, stmt: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        self.stmt = stmt
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}
        self._row_types: dict[tuple[str, ...], Callable[[Sequence[Any]], tuple[Any, ...]]] = {}
        self._lock = threading.Lock()

    def _compiled(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """(SQL text, bind names in order for positional drivers, values of literal binds)."""
        hit = self._by_dialect.get(dialect.name)
        if hit is None:
            # DML and SELECT statements compile to an SQLCompiler (its binds and positions).
            compiled = cast(SQLCompiler, self.stmt.compile(dialect=dialect, column_keys=self.column_keys))
            positional = tuple(compiled.positiontup or ()) if compiled.positional else None
            given = set(self.column_keys or ()) | {b.key for b in compiled.binds.values() if b.value is None}
            literals = {k: v for k, v in compiled.construct_params(_check=False).items() if k not in given}
            hit = (compiled.string, positional, literals)
            with self._lock:
                self._by_dialect[dialect.name] = hit
        return hit

    @staticmethod
    def _values(names: tuple[str, ...] | None, literals: dict[str, Any], params: dict[str, Any]) -> Any:
        if literals:
            params = {**literals, **params}
        return tuple([params[n] for n in names]) if names is not None else params

    def run(self, cur: DBAPICursor, dialect: Dialect, params: dict[str, Any] | None = None) -> DBAPICursor:
        """Execute once; returns the cursor."""
        sql, names, literals = self._compiled(dialect)
        cur.execute(sql, self._values(names, literals, params or {}))
        return cur

    def run_many(self, cur: DBAPICursor, dialect: Dialect, rows: Sequence[dict[str, Any]]) -> None:
        """Execute for each parameter set (one prepared statement)."""
        if not rows:
            return
        sql, names, literals = self._compiled(dialect)
        cur.executemany(sql, [self._values(names, literals, r) for r in rows])

    def rows(self, cur: DBAPICursor, dialect: Dialect, params: dict[str, Any] | None = None) -> list[Any]:
        """Execute and fetch every row, each a named tuple of the result columns."""
        self.run(cur, dialect, params)
        names = tuple(d[0] for d in cur.description)
        make = self._row_types.get(names)
        if make is None:
            row_type: Any = namedtuple("Row", names, rename=True)  # type: ignore[misc]  # columns known at run time
            make = row_type._make
            with self._lock:
                self._row_types[names] = make
        return [make(r) for r in cur.fetchall()]

    def one(self, cur: DBAPICursor, dialect: Dialect, params: dict[str, Any] | None = None) -> Sequence[Any]:
        """Execute a statement that always returns one row (an aggregate, a singleton) and fetch it."""
        row = self.run(cur, dialect, params).fetchone()
        if row is None:
            raise LookupError("a statement of one row returned none")
        return cast(Sequence[Any], row)

    def first(self, cur: DBAPICursor, dialect: Dialect, params: dict[str, Any] | None = None) -> Any:
        """The first row (a named tuple of the columns), or None."""
        found = self.rows(cur, dialect, params)
        return found[0] if found else None

