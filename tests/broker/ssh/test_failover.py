"""The SSH broker with several control-plane addresses, and its /metrics, end to end.

Real processes: `jitgate server`, `jitgate ssh-broker --server DEAD,LIVE,SPARE --metrics ...`,
a real sshd target and the OpenSSH client. The live plane is killed (kill -9) and
started again with the same data on the spare address (two planes cannot share one
SQLite data directory at once); logins then authorize through it, session ends are
reported to it, and the broker's metrics say which plane it uses.
"""
from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from broker.demo_target import free_port
from tests.broker.ssh.harness import SshStack, ended_session, text, wait_for
from tests.support import require_binary

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SshStack, str, int, int]]:
    require_binary("sshd")
    require_binary("ssh")
    dead, spare, metrics = f"127.0.0.1:{free_port()}", free_port(), free_port()
    s = SshStack(tmp_path_factory.mktemp("ssh-failover"), broker_args=("--metrics", f"127.0.0.1:{metrics}"),
                 servers=lambda live: f"{dead},{live},127.0.0.1:{spare}")
    with s:
        yield s, dead, spare, metrics


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_logins_go_on_through_the_surviving_plane(stack: tuple[SshStack, str, int, int]) -> None:
    s, dead, spare, metrics = stack
    assert s.cp is not None
    first = s.cp.address
    grant = s.grant("alice", "web-01")
    key = s.user_key("alice", grant.id)
    r = s.ssh(key, "web-01", "echo", "first")
    assert r.returncode == 0 and b"first" in r.stdout, text(r)
    m = scrape(metrics)
    assert value(m, "jitgate_broker_control_plane", kind="ssh", address=first) == 1
    assert value(m, "jitgate_broker_control_plane", kind="ssh", address=dead) == 0
    assert value(m, "jitgate_broker_rpc_seconds_count", kind="ssh", method="AuthorizeSession", code="OK") == 1
    assert value(m, "jitgate_broker_rpc_seconds_count", kind="ssh", method="GetTrust", code="OK") >= 1
    ended_session(s, grant.id)

    s.cp.kill()  # kill -9
    s.cp.port = spare
    s.cp.start()  # the same data on the next address of the broker's list

    r = s.ssh(key, "web-01", "echo", "second")
    assert r.returncode == 0 and b"second" in r.stdout, text(r)
    m = scrape(metrics)
    assert value(m, "jitgate_broker_control_plane", kind="ssh", address=f"127.0.0.1:{spare}") == 1
    assert value(m, "jitgate_broker_control_plane", kind="ssh", address=first) == 0
    assert value(m, "jitgate_broker_rpc_seconds_count", kind="ssh", method="AuthorizeSession", code="OK") == 2
    # The second session's end reached the surviving plane; the broker's watch re-synced there.
    ended_session(s, grant.id, count=2)
    wait_for(lambda: value(scrape(metrics), "jitgate_broker_live_sessions", kind="ssh") == 0)


def test_revoked_through_the_surviving_plane_is_refused(stack: tuple[SshStack, str, int, int]) -> None:
    s, _, _, metrics = stack
    grant = s.grant("alice", "web-01")
    key = s.user_key("alice", grant.id)
    from jitgate.v1 import access_pb2

    s.client("admin").access.Revoke(access_pb2.RevokeRequest(id=grant.id, reason="failover test"))
    r = s.ssh(key, "web-01", "echo", "never")
    assert r.returncode != 0 and b"never" not in r.stdout
    # Refused by the plane (a credential check), not for want of one.
    assert value(scrape(metrics), "jitgate_broker_rpc_seconds_count", kind="ssh", method="AuthorizeSession",
                 code="UNAVAILABLE") == 0
