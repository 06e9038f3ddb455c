"""The sweeper lease (controlplane/scaleout/lease.py) on the local PostgreSQL: one holder per
store, and a store is a schema, so two deployments in one database each sweep."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine

from controlplane.scaleout.lease import SweepLease
from tests.pgstore import pg_store


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with pg_store("jg_lease") as url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA one")
            conn.execute("CREATE SCHEMA two")
        yield url


def _engine(url: str, schema: str) -> Engine:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"),
                         connect_args={"options": f"-csearch_path={schema}"})


def test_one_holder_per_schema_and_one_each_in_two_schemas(database: str) -> None:
    engines = [_engine(database, s) for s in ("one", "one", "two")]
    first, second, other = (SweepLease(e) for e in engines)
    try:
        assert first.held()
        assert not second.held()  # the same store: the first plane sweeps, this one waits
        assert other.held()  # another schema of the same database is another store
        first.release()  # the holder's session ends (as when its plane dies): the next one takes it
        # once PostgreSQL has ended that backend (asynchronously after the client closed; planes
        # ask again every second)
        deadline = time.monotonic() + 10
        while not second.held():
            assert time.monotonic() < deadline, "the lease was not free after its holder's session ended"
            time.sleep(0.05)
    finally:
        for lease in (first, second, other):
            lease.release()
        for e in engines:
            e.dispose()
