"""Schema migrations through Alembic (controlplane/store/schema.py), on SQLite and PostgreSQL:
a new store reaches the head, a store made before Alembic (schema_version only) is adopted
and upgraded, a store at a revision this jitgate does not know is refused, every step has its
revision file, and `jitgate admin migrate` reports and migrates."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from controlplane.errors import JitError
from controlplane.store import SqlStore, migrations, schema, tables
from tests.cluster import REPO
from tests.pgstore import pg_store

REVISIONS = Path(schema.SCRIPTS) / "versions"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jitgate.db'}"
    else:
        with pg_store("jg_alembic") as pg:
            yield pg.replace("postgresql://", "postgresql+psycopg://")


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return schema.current_revision(conn)
    finally:
        engine.dispose()


def test_every_step_is_one_revision_in_order():
    files = sorted(p.stem for p in REVISIONS.glob("r*.py"))
    assert files == [f"r{schema.revision_of(v)}" for v, _ in migrations.MIGRATIONS]
    chain = [s.revision for s in reversed(list(schema.script_directory().walk_revisions()))]
    assert chain == [schema.revision_of(v) for v, _ in migrations.MIGRATIONS]
    assert schema.head() == schema.revision_of(migrations.LATEST)


def test_new_store_reaches_head_once(url: str):
    SqlStore.open_url(url).close()
    again = SqlStore.open_url(url)  # nothing runs twice
    try:
        assert again.schema_version() == migrations.LATEST
    finally:
        again.close()
    assert _revision(url) == schema.head()


def test_a_store_from_before_alembic_is_adopted_and_upgraded(url: str):
    engine = create_engine(url)
    with engine.begin() as conn:  # a version-7 store as the jitgate before Alembic left it
        tables.metadata.create_all(conn, tables=[tables.schema_version])
        for version, step in migrations.MIGRATIONS:
            if version <= 7:
                step(conn)
                conn.execute(tables.schema_version.insert().values(version=version, applied_us=0))
        conn.execute(text("UPDATE audit_head SET seq = 41, hash = 'kept'"))  # stands for its data
    engine.dispose()
    store = SqlStore.open_url(url)
    try:
        assert store.schema_version() == migrations.LATEST
        with store.read() as tx:
            assert tx.audit_head() == (41, "kept")  # data survives; v1 did not run again
            assert tx.conn.execute(text("SELECT count(*) FROM ca_files")).scalar() == 0  # step 8 ran
    finally:
        store.close()
    assert _revision(url) == schema.head()


def test_a_store_at_an_unknown_revision_is_refused(url: str):
    SqlStore.open_url(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(JitError) as info:
        SqlStore.open_url(url)
    assert info.value.code == "store.schema_newer" and "9999" in str(info.value)


def test_admin_migrate_command(tmp_path: Path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "admin", "migrate", "--data-dir", str(tmp_path),
                               *args], cwd=REPO, capture_output=True, text=True, timeout=60)

    done = run()
    assert done.returncode == 0 and f"at revision {schema.head()}" in done.stdout, done.stderr
    engine = create_engine(f"sqlite:///{tmp_path / 'jitgate.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    assert run("--check").returncode == 2
    refused = run()
    assert refused.returncode == 2 and "newer than this jitgate" in refused.stderr and "Traceback" not in refused.stderr
    bad = subprocess.run([sys.executable, "-m", "cli.main", "admin", "migrate", "--store", "mysql://h/db"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not supported" in bad.stderr
