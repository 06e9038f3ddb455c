"""A PostgreSQL store for tests: one schema of the local `test` database per use, dropped after.

    with pg_store("jg_two") as url:        # postgresql://...?options=-csearch_path%3D<schema>
        ControlPlane(tmp, store=url)

Without PostgreSQL the test fails when CI=true (tests.support.require), else it is skipped.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support import require

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


def schema_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@contextmanager
def pg_store(prefix: str = "jg") -> Iterator[str]:
    """A fresh schema's store URL; the schema (and everything in it) is dropped afterwards."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(5)}"
    try:
        with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
    except Exception as e:
        require(False, f"PostgreSQL at {PG_BASE} ({type(e).__name__})")
    try:
        yield schema_url(name)
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


__all__ = ["PG_BASE", "pg_store", "schema_url"]
