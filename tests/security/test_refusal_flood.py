"""Issue 13, item 4: a flood of refused logins no longer floods the audit log, and is slowed.

Real stacks (tests/broker/*/harness.py): the control plane over mTLS, the PG broker in
front of the local PostgreSQL, the SSH broker in front of a real sshd. Each attacker
uses its own loopback address (127.0.0.x) as its source, so sources are told apart
the way the brokers tell them apart. The brokers run with a 2 s window and a 0.5 s
tarpit cap so the test does not wait a minute for the aggregates.

Before the fix each of these floods wrote one audit event per attempt (per connection
for SSH): ~1,000 events for the PostgreSQL ones, 250 for SSH.
"""
from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from broker.pg import protocol as p
from jitgate.v1 import audit_pb2, broker_pb2
from tests.broker.pg.harness import PgStack, local_pg_available
from tests.broker.ssh.harness import SshStack, UserKey
from tests.support import require, require_binary

WINDOW = 2.0
DELAY_MAX = 0.5
BROKER_ARGS = ("--refusal-window", str(WINDOW), "--refusal-delay-max", str(DELAY_MAX))
FLOOD = 1000
CONCURRENCY = 400
# Events one source may leave for a whole flood: its first refusals one by one (3), then one
# aggregate per window the flood spans; HANDFUL when the flood spans a few windows, as it does
# on an idle machine (a starved one takes longer, and then spans more: `allowed_events`).
HANDFUL = 12
LONG_NAME = "x" * 9000  # a 9 KB user name
# A truncated field keeps at most this many characters (the broker's 256, the API's mark).
TRUNCATED = 300


# ------------------------------------------------------------------ audit


def refusals_from(client: Any, source: str) -> list[dict[str, Any]]:
    """Every `session.refused` event's data whose client address is `source`."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        events = client.audit.ListEvents(audit_pb2.ListEventsRequest(
            type="session.refused", after_seq=after, page_size=1000)).events
        for e in events:
            data = json.loads(e.data_json)
            if str(data.get("client_address", "")).startswith(source + ":"):
                out.append(data)
        if len(events) < 1000:
            return out
        after = events[-1].seq


def refused_total(events: list[dict[str, Any]]) -> int:
    return sum(int(e.get("count") or 1) for e in events)


def wait_for_total(client: Any, source: str, total: int) -> list[dict[str, Any]]:
    """The source's events once their counts add up to `total` (aggregates come at window ends)."""
    deadline = time.monotonic() + 6 * WINDOW + 15
    while True:
        events = refusals_from(client, source)
        if refused_total(events) >= total or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def allowed_events(spanned: float) -> int:
    """The events a flood that took `spanned` seconds may leave: its first 3 one by one, one aggregate
    per window it touches (ceil(spanned / WINDOW) + 1), and one for the attempt made after it."""
    return max(HANDFUL, 3 + math.ceil(spanned / WINDOW) + 2)


def assert_contained(events: list[dict[str, Any]], total: int, spanned: float) -> None:
    """`spanned`: seconds from the flood's first attempt to the source's last refusal."""
    assert refused_total(events) == total, [(e.get("code"), e.get("count")) for e in events]
    assert len(events) <= allowed_events(spanned), (
        f"{len(events)} audit events for one source's {total} refusals in {spanned:.1f} s")
    aggregates = [e for e in events if int(e.get("count") or 1) > 1]
    assert aggregates, "no aggregate event"
    for e in events:
        for key in ("user", "message", "resource"):
            assert len(str(e.get(key, ""))) <= TRUNCATED, (key, len(str(e[key])))
    for agg in aggregates:
        assert agg["codes"] and sum(agg["codes"].values()) == agg["count"]
        assert agg["first_at"] and agg["last_at"] and agg["first_at"] <= agg["last_at"]
        assert agg["samples"] and all(len(s) <= TRUNCATED for s in agg["samples"])


async def flood(n: int, attempt: Callable[[], Awaitable[Any]]) -> list[Any]:
    """`n` attempts, CONCURRENCY at a time (a flooding client does not wait for the tarpit)."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> Any:
        async with gate:
            return await attempt()

    return await asyncio.gather(*(one() for _ in range(n)))


async def timed(attempt: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    t0 = time.monotonic()
    result = await attempt()
    return result, time.monotonic() - t0


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> PgStack:
    require(local_pg_available(), "local PostgreSQL at 127.0.0.1:5432 (trust, user postgres, db test)")
    with PgStack(tmp_path_factory.mktemp("refusal-pg"), private=False, broker_args=BROKER_ARGS) as stack:
        yield stack


async def pg_login(stack: PgStack, source: str, user: str, password: str | None = None,
                   tls: bool = True) -> list[p.Message]:
    """A hand-made client from `source`: (SSLRequest, TLS,) startup (, password); the messages read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.broker_port, local_addr=(source, 0))
    msgs = p.MessageReader(max_length=1 << 20)
    out: list[p.Message] = []

    async def until(*kinds: bytes) -> None:
        while True:
            m = msgs.next_message()
            if m is not None:
                out.append(m)
                if m.type in (*kinds, b"E"):
                    return
                continue
            try:
                data = await asyncio.wait_for(reader.read(65536), 30)
            except (ConnectionError, ssl.SSLError):
                data = b""
            if not data:
                return
            msgs.receive_data(data)

    try:
        if tls:
            writer.write(p.ssl_request())
            assert await reader.readexactly(1) == b"S"
            await writer.start_tls(ssl.create_default_context(cafile=str(stack.ca_file)), server_hostname="localhost")
        writer.write(p.startup_message({"user": user, "database": "test"}))
        await until(b"R")
        if password is not None and out and out[-1].type == b"R":
            writer.write(p.password_message(password.encode() + b"\x00"))
            await until(b"Z")
    finally:
        writer.close()
    return out


def refused_with(msgs: list[p.Message]) -> str:
    assert msgs and msgs[-1].type == b"E", msgs
    return p.parse_error_fields(msgs[-1].body)["message"]


def test_pg_plaintext_flood_with_a_9kb_user_name_is_aggregated_and_slowed(pg: PgStack) -> None:
    attacker, fresh = "127.0.0.2", "127.0.0.4"

    async def run() -> tuple[float, float]:
        results = await flood(FLOOD, lambda: pg_login(pg, attacker, LONG_NAME + "@testdb", tls=False))
        assert all("requires TLS" in refused_with(m) for m in results)
        # The flooding source now waits for its refusal; a fresh source does not.
        slow_msgs, slow = await timed(lambda: pg_login(pg, attacker, LONG_NAME, tls=False))
        fast_msgs, fast = await timed(lambda: pg_login(pg, fresh, LONG_NAME, tls=False))
        refused_with(slow_msgs), refused_with(fast_msgs)
        return slow, fast

    t0 = time.monotonic()
    slow, fast = asyncio.run(run())
    spanned = time.monotonic() - t0
    assert slow >= DELAY_MAX / 2, f"the {FLOOD + 1}th refusal took {slow:.2f} s"
    assert fast < slow, (fast, slow)
    events = wait_for_total(pg.client("admin"), attacker, FLOOD + 1)
    assert_contained(events, FLOOD + 1, spanned)
    assert {"tls.required"} == {e["code"] for e in events}
    assert refused_total(wait_for_total(pg.client("admin"), fresh, 1)) == 1


def test_pg_tls_flood_is_aggregated_and_a_good_login_from_that_source_is_not_slowed(pg: PgStack) -> None:
    attacker = "127.0.0.3"
    token = pg.login("alice", "testdb", pg.ro)

    async def run() -> tuple[float, float]:
        results = await flood(FLOOD, lambda: pg_login(pg, attacker, LONG_NAME + "@testdb"))
        assert all("too long" in refused_with(m) for m in results)
        _, slow = await timed(lambda: pg_login(pg, attacker, LONG_NAME))
        # The right token from the same address is let in at once (only refusals wait).
        good, took = await timed(lambda: pg_login(pg, attacker, token.user, token.token))
        assert good and good[-1].type == b"Z", good
        return slow, took

    t0 = time.monotonic()
    slow, good = asyncio.run(run())
    spanned = time.monotonic() - t0
    assert slow >= DELAY_MAX / 2 and good < slow, (slow, good)
    events = wait_for_total(pg.client("admin"), attacker, FLOOD + 1)
    assert_contained(events, FLOOD + 1, spanned)
    assert {e["code"] for e in events} == {"user.malformed"}
    assert all(LONG_NAME not in e["message"] for e in events)


def test_pg_bad_token_flood_is_counted_by_the_broker_not_audited_one_by_one(pg: PgStack) -> None:
    # Refusals the control plane makes (the token): past its first ones the broker asks it not
    # to audit each, and counts them in its own aggregate.
    attacker, n = "127.0.0.6", 300

    async def run() -> None:
        results = await flood(n, lambda: pg_login(pg, attacker, f"{pg.ro}@testdb", "not-a-token"))
        assert all("jitgate refused access" in refused_with(m) for m in results)

    t0 = time.monotonic()
    asyncio.run(run())
    spanned = time.monotonic() - t0
    events = wait_for_total(pg.client("admin"), attacker, n)
    assert_contained(events, n, spanned)


def test_refusal_reports_are_truncated_at_the_api(pg: PgStack) -> None:
    # The control plane does not trust a report to be short: every text field is cut, the
    # aggregate's tallies are bounded, and the refusal is still audited with its count.
    huge = "y" * 2000  # past every field's bound, the message still well under gRPC's limits
    req = broker_pb2.ReportRefusalRequest(
        kind=huge, user=huge, resource=huge, code=huge, message=huge, client_address="127.0.0.9:1" + huge,
        count=5000, codes={**{f"code.{i}": 1 for i in range(40)}, huge: 1}, samples=[huge] * 12)
    req.first_at.GetCurrentTime()
    req.last_at.GetCurrentTime()
    pg.client("broker").broker.ReportRefusal(req)
    [event] = refusals_from(pg.client("admin"), "127.0.0.9")
    assert event["count"] == 5000 and len(json.dumps(event)) < 8_000, len(json.dumps(event))
    assert all(len(event[k]) < 600 for k in ("kind", "user", "resource", "code", "message", "client_address"))
    assert len(event["codes"]) <= 32 and len(event["samples"]) <= 8


def test_pg_good_login_still_works(pg: PgStack) -> None:
    import psycopg

    token = pg.login("alice", "testdb", pg.ro)
    with psycopg.connect(**pg.dsn(token)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


# ------------------------------------------------------------------ SSH


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> SshStack:
    require_binary("sshd")
    require_binary("ssh")
    with SshStack(tmp_path_factory.mktemp("refusal-ssh"), broker_args=BROKER_ARGS) as stack:
        yield stack


SSH_CONNECTIONS = 250
SSH_KEYS = 4  # per connection: 1,000 refused attempts in all
# asyncssh itself disconnects a client whose user name is 1024 bytes or more (before any
# broker code runs, nothing to audit): the longest name that reaches the broker.
SSH_LONG_NAME = "x" * 1000


async def ssh_refused(stack: SshStack, source: str, username: str, keys: list[Any]) -> str:
    """One asyncssh client from `source` offering plain keys; the refusal it met."""
    import asyncssh

    try:
        async with asyncssh.connect("127.0.0.1", stack.broker_port, local_addr=(source, 0), username=username,
                                    client_keys=keys, agent_path=None, config=[], known_hosts=None,
                                    connect_timeout=60):
            return "logged in"
    except asyncssh.PermissionDenied as exc:
        return exc.reason or "permission denied"


def test_ssh_preauth_flood_is_aggregated_and_slowed(ssh: SshStack) -> None:
    import asyncssh

    attacker, fresh = "127.0.0.5", "127.0.0.7"
    keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(SSH_KEYS)]

    async def run() -> tuple[float, float]:
        results = await flood(SSH_CONNECTIONS, lambda: ssh_refused(ssh, attacker, SSH_LONG_NAME + "@web-01", keys))
        assert "logged in" not in results
        _, slow = await timed(lambda: ssh_refused(ssh, attacker, "root@web-01", keys[:1]))
        _, fast = await timed(lambda: ssh_refused(ssh, fresh, "root@web-01", keys[:1]))
        return slow, fast

    t0 = time.monotonic()
    slow, fast = asyncio.run(run())
    spanned = time.monotonic() - t0
    assert slow >= DELAY_MAX / 2 and fast < slow, (slow, fast)
    events = wait_for_total(ssh.client("admin"), attacker, SSH_CONNECTIONS + 1)
    assert_contained(events, SSH_CONNECTIONS + 1, spanned)
    assert "user.malformed" in {e["code"] for e in events}
    assert all(SSH_LONG_NAME not in e["message"] and SSH_LONG_NAME not in e["user"] for e in events)
    assert refused_total(wait_for_total(ssh.client("admin"), fresh, 1)) == 1


def test_ssh_good_login_from_the_flooding_source_is_unaffected(ssh: SshStack) -> None:
    grant = ssh.grant("alice", "web-01")
    alice: UserKey = ssh.user_key("alice", grant.id)
    # From the address that just flooded (OpenSSH binds it with -b).
    r = ssh.ssh(alice, "web-01", "echo granted", extra=("-b", "127.0.0.5"))
    assert r.returncode == 0 and r.stdout == b"granted\n", r.stderr
