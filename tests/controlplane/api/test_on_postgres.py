"""The single-plane API tests on a PostgreSQL store: a representative subset, against one
plane on a database of its own on the local PostgreSQL (tests.pgstore; dropped after).

The subset covers each path the store serves: multi-level approval with its refusals, the
approval race (row locking), auto-approval and credentials for brokers, revocation and
cancel, expiry seen through a watch (sweeper + events), the watch snapshot, and SSH
certificates authorized by a broker. kill -9 mid-workload on PostgreSQL is
tests/controlplane/api/test_two_planes.py's last test (with a second plane serving on). The
rest run on SQLite only, to keep the suite's time.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import NO_MODEL, ControlPlane
from tests.controlplane.api import test_lifecycle as lc
from tests.controlplane.api import test_watch as watch
from tests.controlplane.api.conftest import POLICIES
from tests.pgstore import pg_store

# Collected here again, with the `cp` below (PostgreSQL).
test_multi_level_approval_with_every_refusal = lc.test_multi_level_approval_with_every_refusal
test_approval_race_activates_once = lc.test_approval_race_activates_once
test_auto_approval_and_credentials_for_brokers = lc.test_auto_approval_and_credentials_for_brokers
test_revocation_and_cancel = lc.test_revocation_and_cancel
test_expiry_seen_through_watch = lc.test_expiry_seen_through_watch
test_ssh_certificate_then_broker_authorizes_it = lc.test_ssh_certificate_then_broker_authorizes_it
test_snapshot_then_live_changes = watch.test_snapshot_then_live_changes


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with pg_store("jg_api") as url, ControlPlane(tmp_path_factory.mktemp("cp_pg"), POLICIES, store=url,
                                                         config=NO_MODEL) as plane:
        yield plane
