"""Fixtures for the control-plane core: a real SQLite file, the real policy engine, a clock we move."""
from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.core import AccessCore, StaticPolicy
from controlplane.store import SqlStore
from policy import load_policy_set
from tests.controlplane.core.helpers import FakeClock

POLICIES = Path(__file__).with_name("policies.yaml")


@pytest.fixture(scope="session")
def policy_set():
    return load_policy_set(POLICIES)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jitgate.db"


@pytest.fixture
def make_core(policy_set, clock, db_path):
    stores: list[SqlStore] = []

    def make(**kw) -> AccessCore:
        store = SqlStore.open_sqlite(kw.pop("path", db_path))
        stores.append(store)
        kw.setdefault("clock", clock)
        kw.setdefault("admins", {"ada"})
        kw.setdefault("brokers", {"broker-1"})
        return AccessCore(store, StaticPolicy(kw.pop("policy", policy_set)), **kw)

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def core(make_core) -> AccessCore:
    return make_core()
