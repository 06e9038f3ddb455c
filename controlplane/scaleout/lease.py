"""One sweeper at a time among the planes on one PostgreSQL: a session-level advisory lock.

The plane whose lease connection holds the advisory lock (SWEEP_LOCK, hashtext(current_schema()))
sweeps; the others ask
again before each sweep they would make (the sweeper retries every `ERROR_BACKOFF`, 1 s). When
the holder dies (even `kill -9`), its connection closes and PostgreSQL drops the lock at once,
so another plane takes over within about a second. A plane that loses its lease connection
stops sweeping until it holds the lock again. Two sweeps at once would still be correct
(each expiry is a checked state change under the audit head lock); the lease avoids the
duplicate work and keeps expiry events in one order. Advisory locks are per database, not per
schema: the key names the store's schema so that two deployments in one database (a schema
each, chosen by the store URL's search_path) each have their own sweeper.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger("jitgate.lease")

SWEEP_LOCK = 7283542  # the first half of the sweeper lease's advisory lock key (the second: the schema)


class SweepLease:
    """`held()`: whether this plane may sweep now (taking the lease when it is free)."""

    def __init__(self, engine: Engine, key: int = SWEEP_LOCK) -> None:
        self._engine = engine
        self._key = key
        self._conn: Any = None  # a psycopg connection detached from the pool, autocommit
        self._held = False
        self._lock = threading.Lock()

    def held(self) -> bool:
        with self._lock:
            try:
                if self._conn is None:
                    raw = self._engine.raw_connection()
                    self._conn = raw.driver_connection
                    raw.detach()  # its own session: the lock lives as long as this connection
                    self._conn.rollback()  # a pooled connection may be inside an implicit transaction
                    self._conn.autocommit = True
                    self._held = False
                if self._held:
                    self._conn.execute("SELECT 1")  # still connected, so still holding it
                    return True
                got = self._conn.execute("SELECT pg_try_advisory_lock(%s::integer, hashtext(current_schema()))",
                                          (self._key,)).fetchone()[0]
                if got:
                    log.info("sweeper lease taken: this plane sweeps")
                self._held = bool(got)
                return self._held
            except Exception as e:  # the store is away: not the sweeper until we hold the lock again
                if self._held:
                    log.warning("sweeper lease lost (%s)", type(e).__name__)
                self._drop()
                return False

    @property
    def holding(self) -> bool:
        return self._held

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the lease connection failed", exc_info=True)

    def release(self) -> None:
        with self._lock:
            self._drop()  # closing the session releases the lock


__all__ = ["SWEEP_LOCK", "SweepLease"]
