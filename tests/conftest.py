"""Suite-wide: the order in which test files are handed to the workers of `make test`.

`make test` gives whole files to two pytest-xdist workers in collection order (`--dist loadfile
--no-loadscope-reorder`). By default xdist would sort files by their number of tests, which puts
the long single-test end-to-end files last, where one of them can leave a worker running alone
while the other has finished. So the slowest files (a real stack each) go first, longest first,
and the many short files fill in at the end. The list is measured (`--durations`); an outdated
one costs only balance, never a result. Tests within a file keep their order.
"""
from __future__ import annotations

import pytest

SLOWEST_FIRST = (
    "tests/broker/pg/test_broker.py",
    "tests/broker/ssh/test_e2e.py",
    "tests/security/test_refusal_flood.py",
    "tests/web/test_console_e2e.py",
    "tests/web/test_replay_e2e.py",
    "tests/controlplane/api/test_two_planes.py",
    "tests/recordings/test_store_e2e.py",
    "tests/cli/test_access_cmd.py",
    "tests/security/test_policy_bounds.py",
    "tests/locks/test_lifecycle_e2e.py",
    "tests/controlplane/api/test_cli.py",
    "tests/broker/ssh/test_outage.py",
    "tests/oidc/test_signin.py",
    "tests/locks/test_locks_e2e.py",
    "tests/notify/test_notify_e2e.py",
    "tests/test_signin_to_ssh.py",
    "tests/security/test_ssh_recording.py",
    "tests/security/test_keys_at_rest.py",
    "tests/cli/test_output.py",
    "tests/recommend/test_model.py",
    "tests/controlplane/core/test_postgres.py",
    "tests/controlplane/api/test_crash_audit.py",
    "tests/security/test_pg_broker.py",
    "tests/broker/test_failover_e2e.py",
    "tests/recommend/test_server.py",
    "tests/recommend/test_vocabulary.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(SLOWEST_FIRST)))  # stable
