"""A PostgreSQL store for tests: a database of its own on the local server per use, dropped after.

    with pg_store("jg_two") as url:        # postgresql://postgres@127.0.0.1:5432/<name>
        ControlPlane(tmp, store=url)

A database, not a schema of `test`: the sweeper lease is a PostgreSQL advisory lock and the
planes' notifications a LISTEN channel, and both are per database. Two stores in schemas of one
database (another module's, or another run's on the same server) would share the lease, and a
plane could wait for another store's plane to let go of it before it sweeps.

Without PostgreSQL the test fails when CI=true (tests.support.require), else it is skipped.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support import require

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_BASE = f"{PG_SERVER}/test"


def database_url(name: str) -> str:
    return f"{PG_SERVER}/{name}"


@contextmanager
def pg_store(prefix: str = "jg") -> Iterator[str]:
    """A fresh database's store URL; the database (and everything in it) is dropped afterwards."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(5)}"
    try:
        with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except Exception as e:
        require(False, f"PostgreSQL at {PG_BASE} ({type(e).__name__})")
    try:
        yield database_url(name)
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # a killed plane's sessions may linger


__all__ = ["PG_BASE", "database_url", "pg_store"]
