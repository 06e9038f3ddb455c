"""Fixtures for the store's tests: a bare store on a real SQLite file, and the core's fixtures
(a core over the store) for the tests that need requests made the way the core makes them."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.store import SqlStore
from tests.controlplane.core.conftest import clock, core, db_path, make_core, policy_set  # noqa: F401


@pytest.fixture
def store(db_path: Path) -> Iterator[SqlStore]:  # noqa: F811 - db_path is the core's fixture
    s = SqlStore.open_sqlite(db_path)
    yield s
    s.close()
