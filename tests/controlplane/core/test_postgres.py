"""The same core on PostgreSQL: the store's queries are dialect-neutral, so the life cycle,
the approval race, the batched sweep and the audit chain must hold there too.

Each test gets its own schema in the local `test` database (dropped afterwards).
"""
from __future__ import annotations

import secrets

import pytest

from controlplane.core import AccessCore, StaticPolicy
from controlplane.store import SqlStore
from tests.controlplane.core import test_exports_store as ex
from tests.controlplane.core import test_hot_path as hp
from tests.controlplane.core import test_lifecycle as lc
from tests.controlplane.core import test_sweeper_race as sr
from tests.support import require

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_schema():
    sqlalchemy = pytest.importorskip("sqlalchemy")
    try:
        admin = sqlalchemy.create_engine(PG_URL)
        with admin.begin() as conn:
            name = "jg_core_" + secrets.token_hex(5)
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {name}"))
    except Exception as e:
        require(False, f"PostgreSQL at {PG_URL} ({type(e).__name__})")
    yield name
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"DROP SCHEMA {name} CASCADE"))
    admin.dispose()


@pytest.fixture
def pg_make_core(pg_schema, policy_set, clock):
    from sqlalchemy import create_engine
    stores: list[SqlStore] = []

    def make(**kw) -> AccessCore:
        kw.pop("path", None)
        engine = create_engine(PG_URL, connect_args={"options": f"-csearch_path={pg_schema}"})
        store = SqlStore(engine, sqlite=False)
        stores.append(store)
        kw.setdefault("clock", clock)
        kw.setdefault("admins", {"ada"})
        kw.setdefault("brokers", {"broker-1"})
        return AccessCore(store, StaticPolicy(kw.pop("policy", policy_set)), **kw)

    yield make
    for s in stores:
        s.close()


WITH_CORE_AND_CLOCK = [
    lc.test_multi_level_approval_then_the_clock_starts_at_activation,
    lc.test_any_eligible_deny_ends_it,
    lc.test_auto_extension_moves_the_deadline_up_to_the_limit,
    lc.test_expiry_and_pending_timeout_via_sweep,
    ex.test_dashboard,
    ex.test_export_history_rows,
    ex.test_past_rows_keep_the_requesters_and_the_resources_apart,
    hp.test_history_counters_equal_counting_every_row,
]
WITH_CORE = [
    lc.test_nobody_counts_for_two_levels,
    lc.test_extension_needing_approval,
    lc.test_break_glass_is_active_at_once_and_owes_a_review,
    lc.test_paging_is_complete_and_without_duplicates,
    ex.test_a_failed_change_writes_nothing,
]


@pytest.mark.parametrize("case", WITH_CORE_AND_CLOCK, ids=lambda f: f.__name__)
def test_pg_with_clock(case, pg_make_core, clock):
    case(pg_make_core(), clock)


@pytest.mark.parametrize("case", WITH_CORE, ids=lambda f: f.__name__)
def test_pg(case, pg_make_core):
    case(pg_make_core())


def test_pg_approval_race(pg_make_core):
    sr.test_approval_race_activates_once(pg_make_core)


def test_pg_concurrent_writers_keep_one_chain(pg_make_core):
    sr.test_concurrent_writers_keep_one_chain(pg_make_core)


def test_pg_restart_and_batch_expiry(pg_make_core, clock):
    sr.test_restart_ends_grants_that_expired_while_down(pg_make_core, clock)
    sr.test_many_grants_expiring_together_end_in_one_sweep(pg_make_core, clock)


def test_pg_tampering_is_caught(pg_make_core):
    from sqlalchemy import text
    core = pg_make_core()
    lc.dev(core)
    lc.dev(core)
    assert core.audit.verify_audit()[0]
    with core.ledger.store.engine.begin() as conn:
        conn.execute(text("UPDATE audit SET actor = 'mallory' WHERE seq = 2"))
    ok, _n, problems = core.audit.verify_audit()
    assert not ok and any("event 2" in p for p in problems)
