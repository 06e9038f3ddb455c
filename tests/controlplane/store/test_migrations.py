"""Migrations (controlplane/store/migrations.py): a new database gets every step once, an old
one is brought up in order, and a database newer than this jitgate is refused."""
from __future__ import annotations

import sqlite3

import pytest

from controlplane.errors import JitError
from controlplane.store import SqlStore, migrations, tables
from tests.controlplane.core.helpers import dev


def test_store_is_wal_versioned_and_reopens(db_path, core):
    dev(core)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(v,) for v, _step in migrations.MIGRATIONS]
    again = SqlStore.open_sqlite(db_path)  # no migration runs twice
    try:
        assert again.schema_version() == migrations.LATEST
        with again.read() as tx:
            assert len(tx.query_requests()) == 1
    finally:
        again.close()


def test_an_old_database_is_migrated_in_order(tmp_path):
    from sqlalchemy import create_engine, insert
    path = tmp_path / "v1.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # a database as version 1 left it
        tables.metadata.create_all(conn, tables=[tables.schema_version])
        migrations.MIGRATIONS[0][1](conn)
        conn.execute(insert(tables.schema_version).values(version=1, applied_us=0))
    engine.dispose()
    store = SqlStore.open_sqlite(path)
    store.close()
    with sqlite3.connect(path) as conn:
        applied = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        assert applied == [v for v, _ in migrations.MIGRATIONS]
        names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_requests_user_ended_p", "ix_requests_review_owed", *migrations.V7_CREATED} <= names
    # redundant (v6) or made partial (v7); v7 brings back the index for lists by resource
    assert not names & ({*migrations.V6_DROPPED, *migrations.V7_DROPPED} - set(migrations.V7_CREATED))


def test_store_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "future.db"
    SqlStore.open_sqlite(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_us) VALUES (?, 0)", (migrations.LATEST + 1,))
    with pytest.raises(JitError, match="newer"):
        SqlStore.open_sqlite(path)
