"""Failover and metrics end to end, with real processes: `jitgate server`, `jitgate pg-broker`,
the `jitgate` CLI, the local PostgreSQL, psycopg through the broker, Prometheus scrapes.

One stack for the module. The broker and the CLI get three addresses: a dead
one first, the live control plane, and a spare port. The live plane is killed
with kill -9 and started again on the spare port with the same data (two planes
on one SQLite data directory cannot run at once: DataDirLock; two active planes
on PostgreSQL are issue 16's other half). Sessions then authorize through the
surviving address, a session opened through the first plane is cut by a
revocation made through the second, and the metrics of the real processes move.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from broker.demo_target import free_port
from tests.broker.pg.harness import PgStack, local_pg_available
from tests.cluster import REPO
from tests.support import require

pytestmark = pytest.mark.timeout(180)


class Stack:
    def __init__(self, pg: PgStack, dead: str, spare: int, cp_metrics: int, broker_metrics: int) -> None:
        self.pg, self.dead, self.spare = pg, dead, spare
        self.cp_metrics, self.broker_metrics = cp_metrics, broker_metrics
        assert pg.cp is not None
        self.first = pg.cp.address
        self.servers = f"{dead},{self.first},127.0.0.1:{spare}"

    def cli(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.pg.cp is not None
        env = {**self.pg.cp.cli_env(user), "JITGATE_SERVER": self.servers}
        return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require(local_pg_available(), "PostgreSQL at 127.0.0.1:5432")
    tmp = tmp_path_factory.mktemp("failover")
    dead, spare, cp_metrics, broker_metrics = f"127.0.0.1:{free_port()}", free_port(), free_port(), free_port()
    pg = PgStack(tmp, private=False, broker_args=("--metrics", f"127.0.0.1:{broker_metrics}"),
                 cp_config={"metrics": f"127.0.0.1:{cp_metrics}"},
                 servers=lambda live: f"{dead},{live},127.0.0.1:{spare}")
    with pg:
        yield Stack(pg, dead, spare, cp_metrics, broker_metrics)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples at http://127.0.0.1:PORT/metrics: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def connect(stack: Stack, token: Any) -> Any:
    import psycopg

    return psycopg.connect(**stack.pg.dsn(token), autocommit=True)


def wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def short_session(stack: Stack) -> Any:
    """A session whose grant ends in a few seconds (longer when a loaded machine was too slow to
    log in before a short grant ended)."""
    for seconds in (2, 5, 15):
        grant = stack.pg.grant("alice", "testdb", stack.pg.ro, seconds=seconds)
        try:
            return connect(stack, stack.pg.token("alice", grant.id))
        except Exception:
            if seconds == 15:
                raise
    raise AssertionError("unreachable")


def test_metrics_of_the_control_plane_and_the_broker_move(stack: Stack) -> None:
    before_cp = scrape(stack.cp_metrics)
    with short_session(stack) as conn:  # its grant expires in seconds: an expiry cut
        assert conn.execute("select 1").fetchone() == (1,)
        wait_for("one live session", lambda: value(scrape(stack.broker_metrics), "jitgate_broker_live_sessions",
                                                   kind="pg") == 1)
        wait_for("the expiry cut", lambda: value(scrape(stack.broker_metrics),
                                                 "jitgate_broker_cut_lateness_seconds_count", kind="pg") == 1,
                 timeout=15)
    broker = scrape(stack.broker_metrics)
    assert value(broker, "jitgate_broker_live_sessions", kind="pg") == 0
    assert value(broker, "jitgate_broker_rpc_seconds_count", kind="pg", method="AuthorizeSession", code="OK") >= 1
    assert value(broker, "jitgate_broker_event_stream_lag_seconds_count", kind="pg") >= 1  # the grant's events
    assert value(broker, "jitgate_broker_control_plane", kind="pg", address=stack.first) == 1
    assert value(broker, "jitgate_broker_control_plane", kind="pg", address=stack.dead) == 0
    cp = scrape(stack.cp_metrics)
    created = "AccessService/CreateRequest"
    assert (value(cp, "jitgate_rpc_seconds_count", method=created, code="OK")
            >= value(before_cp, "jitgate_rpc_seconds_count", method=created, code="OK") + 1)
    assert value(cp, "jitgate_decision_seconds_count") >= value(before_cp, "jitgate_decision_seconds_count") + 1
    assert value(cp, "jitgate_request_transitions_total", state="ACTIVE") >= 1
    assert value(cp, "jitgate_requests", state="ACTIVE") + value(cp, "jitgate_requests", state="EXPIRED") >= 1
    assert value(cp, "jitgate_event_stream_lag_seconds_count") >= 1
    assert value(cp, "jitgate_watchers") >= 1  # the broker's WatchEvents
    # A refusal is counted by its status, and no user string becomes a label.
    bad = stack.pg.client("alice")
    import grpc

    from jitgate.v1 import access_pb2

    with pytest.raises(grpc.RpcError):
        bad.access.GetRequest(access_pb2.GetRequestRequest(id="no-such-\u202egrant"))
    # An abort sends its status before the handler returns: the count follows within moments.
    cp = wait_for("the refusal counted", lambda: (lambda m: m if value(
        m, "jitgate_rpc_seconds_count", method="AccessService/GetRequest", code="NOT_FOUND") >= 1 else None)(
        scrape(stack.cp_metrics)))
    text = "\n".join(f"{k}" for k in cp)
    assert "no-such" not in text and stack.pg.ro not in text and "alice" not in text


def test_dead_address_first_then_kill_9_and_restart_on_the_next_address(stack: Stack) -> None:
    pg = stack.pg
    assert pg.cp is not None
    # The CLI with a dead address first: the request is made once, through the live plane.
    out = stack.cli("alice", "request", "testdb", "--role", pg.ro, "--duration", "1h", "--reason", "failover",
                    "-o", "json")
    assert out.returncode == 0, out.stderr
    grant = json.loads(out.stdout)
    grant = grant.get("request", grant)
    assert grant["state"].endswith("ACTIVE")
    mine = stack.cli("alice", "requests", "-o", "json")
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.count(grant["id"]) == 1  # one request, not two
    token = pg.token("alice", grant["id"])
    first = connect(stack, token)  # authorized through the first live plane (after the dead address)
    try:
        assert first.execute("select 1").fetchone() == (1,)

        pg.cp.kill()  # kill -9
        pg.cp.port = stack.spare  # the same data, started again on the next address of the list
        pg.cp.start()

        # New sessions authorize through the surviving address.
        second = wait_for("a session through the surviving plane", lambda: _try_connect(stack, token))
        with second:
            assert second.execute("select 2").fetchone() == (2,)
        broker = scrape(stack.broker_metrics)
        assert value(broker, "jitgate_broker_control_plane", kind="pg", address=f"127.0.0.1:{stack.spare}") == 1
        # The session opened through the first plane goes on...
        assert first.execute("select 3").fetchone() == (3,)
        # ...until a revocation made (by the CLI, dead address first) through the other plane cuts it.
        revoked = stack.cli("admin", "revoke", grant["id"], "--reason", "failover test")
        assert revoked.returncode == 0, revoked.stderr
        wait_for("the revocation to cut the first session", lambda: _cut(first), timeout=15)
    finally:
        first.close()
    cp = scrape(stack.cp_metrics)  # the restarted plane's own metrics
    assert value(cp, "jitgate_rpc_seconds_count", method="BrokerService/AuthorizeSession", code="OK") >= 1
    assert value(cp, "jitgate_request_transitions_total", state="REVOKED") == 1
    assert value(cp, "jitgate_requests", state="REVOKED") == 1
    # A session with a revoked grant is refused through the surviving plane (fail closed).
    import psycopg

    with pytest.raises(psycopg.OperationalError, match=r"refused access: the database token is not valid"):
        connect(stack, token)


def _try_connect(stack: Stack, token: Any) -> Any:
    try:
        return connect(stack, token)
    except Exception:
        return None


def _cut(conn: Any) -> bool:
    try:
        conn.execute("select 1")
        return False
    except Exception:
        return True


def test_environment_for_the_cli_is_a_list(stack: Stack) -> None:
    """A malformed list is refused before anything connects, with a plain line."""
    assert stack.pg.cp is not None
    env = {**stack.pg.cp.cli_env("alice"), "JITGATE_SERVER": f"{stack.first},,x"}
    out = subprocess.run([sys.executable, "-m", "cli.main", "requests"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and "empty control-plane address" in out.stderr
    assert "Traceback" not in out.stderr



