"""Control plane benchmark: one plane on SQLite, one plane on PostgreSQL, two planes on one
PostgreSQL (clients spread over both), in one run on this machine.

    .venv/bin/python bench/controlplane_bench.py [--clients 8] [--seconds 5] [--grants 10000] [--watch events]
                                                 [--only throughput|events|expiry|failover]

1. Throughput: one operation is CreateRequest (auto-approved: ACTIVE) + GetRequest over mTLS;
   ops/s, p99 per call, and each process's CPU per operation (every plane, and the PostgreSQL
   backends serving them); ratios against the SQLite plane measured in the same run.
2. Cross-plane event delay: a client on plane A creates grants one after another; a watcher on
   plane B times each `grant.activated` from the acknowledgement (p50/p99; goal p99 < 100 ms),
   beside the same delay for a watcher on plane A.
3. Mass expiry: `--grants` grants expiring at one instant, on SQLite and on PostgreSQL (two
   planes: the sweeper on A, watchers on A and B): seconds from the deadline until all are
   EXPIRED, and until a watcher has received every `grant.expired` (goal < 1 s for both).
   Watchers (here and in 2.) read WatchEventBatches, as brokers do; `--watch events` times
   WatchEvents instead (one event per message, as every watcher did before batches existed).
4. Sweeper failover: kill -9 of the plane holding the sweeper lease just before a grant's
   deadline; seconds from the deadline (or the kill, if later) until the other plane expires it.

The machine has 2 cores: two planes and PostgreSQL share them, so a second plane adds
availability, not throughput, here; the figures say how much each process spends per operation.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.cluster import ControlPlane  # noqa: E402
from tests.pgstore import pg_store  # noqa: E402

POLICIES = REPO / "tests" / "controlplane" / "api" / "policies.yaml"
APP_NAME = "jitgate-bench"  # the planes' PostgreSQL connections, for their backends' CPU


# -- load -------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pg_backends() -> list[int]:
    """The PostgreSQL backend processes serving the planes (their connections' application_name)."""
    import psycopg

    from tests.pgstore import PG_BASE

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                           (APP_NAME,))]


@dataclass
class Result:
    name: str
    ops: int
    seconds: float
    latencies_ms: list[float]
    all_ops: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the run

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds or float("nan")  # nan: no operation finished (the ratios say so)

    def pct(self, q: float) -> float:
        return pct(self.latencies_ms, q)

    def line(self) -> str:
        cpu = ", ".join(f"{name} {sec * 1000 / max(self.all_ops, 1):.2f}" for name, sec in self.cpu.items())
        return (f"{self.name:<22} {self.throughput:7.0f} ops/s  per call p50 {self.pct(0.50):6.2f} ms  "
                f"p99 {self.pct(0.99):6.2f} ms  CPU ms/op: {cpu}")


def pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")


async def drive(name: str, clients: int, seconds: float, makers: list[Callable[[], tuple[Any, Any]]],
                pids: dict[str, list[int]], warmup: float = 1.0) -> Result:
    """`clients` tasks (client i on `makers[i % len(makers)]`, one channel each) running their
    operation for `seconds` after a warm-up; CPU of every process in `pids` over the whole run."""
    latencies: list[float] = []
    ops = all_ops = 0
    t_start = time.monotonic() + warmup
    t_end = t_start + seconds

    async def client(i: int) -> None:
        nonlocal ops, all_ops
        channel, op = makers[i % len(makers)]()
        async with channel:
            while True:
                now = time.monotonic()
                if now >= t_end:
                    return
                t0 = time.perf_counter()
                calls = await op()
                elapsed = (time.perf_counter() - t0) * 1000 / calls
                all_ops += 1
                if now >= t_start:
                    ops += 1
                    latencies.extend([elapsed] * calls)

    cpu0 = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
    await asyncio.gather(*(client(i) for i in range(clients)))
    cpu = {name: sum(cpu_seconds(p) for p in ps) - cpu0[name] for name, ps in pids.items()}
    return Result(name, ops, seconds, latencies, all_ops, cpu)


def cp_factory(cp: ControlPlane) -> Callable[[], tuple[Any, Callable[[], Awaitable[int]]]]:
    from google.protobuf import duration_pb2

    from jitgate.v1 import access_pb2, access_pb2_grpc

    dur = duration_pb2.Duration(seconds=3600)
    counter = iter(range(10**9))

    def make() -> tuple[Any, Callable[[], Awaitable[int]]]:
        channel = grpc.aio.secure_channel(cp.address, cp.credentials("alice"))
        stub = access_pb2_grpc.AccessServiceStub(channel)

        async def op() -> int:
            created = await stub.CreateRequest(access_pb2.CreateRequestRequest(
                resource="web-dev-01", login="deploy", reason=f"bench {next(counter)}", duration=dur))
            if created.request.state != 2:  # REQUEST_STATE_ACTIVE
                raise SystemExit(f"not auto-approved: {created.request}")
            await stub.GetRequest(access_pb2.GetRequestRequest(id=created.request.id))
            return 2

        return channel, op

    return make


def plane_pid(cp: ControlPlane) -> int:
    """The plane's process id, once it answers a first request (its risk model loads on first
    use, seconds of CPU that must not fall inside a measured window)."""
    from google.protobuf import duration_pb2

    from jitgate.v1 import access_pb2

    cp.client("alice", timeout=120).access.CreateRequest(access_pb2.CreateRequestRequest(
        resource="web-dev-01", login="deploy", reason="warm-up", duration=duration_pb2.Duration(seconds=3600)))
    assert cp.proc is not None
    return cp.proc.pid


# -- cross-plane events -----------------------------------------------------------------------------

WATCH = {"rpc": "WatchEventBatches"}  # --watch: which stream the watchers read


def open_watch(stub: Any, types: list[str]) -> Any:
    """The watchers' stream: WatchEventBatches (several events per message in a burst) or, with
    `--watch events`, WatchEvents (one per message, as every watcher read before batches existed)."""
    from jitgate.v1 import access_pb2

    return getattr(stub, WATCH["rpc"])(access_pb2.WatchEventsRequest(types=types))


async def events_of(stream: Any) -> Any:
    """The events of either stream, one at a time."""
    batched = WATCH["rpc"] == "WatchEventBatches"
    async for message in stream:
        for event in message.events if batched else (message,):
            yield event



async def event_delays(writer: ControlPlane, watchers: dict[str, ControlPlane], n: int) -> dict[str, list[float]]:
    """ms from each CreateRequest's acknowledgement (on `writer`) to its grant.activated at each watcher."""
    from google.protobuf import duration_pb2

    from jitgate.v1 import access_pb2, access_pb2_grpc

    seen: dict[str, dict[str, float]] = {name: {} for name in watchers}
    ready = {name: asyncio.Event() for name in watchers}
    channels = []

    async def watch(name: str, cp: ControlPlane) -> None:
        channel = grpc.aio.secure_channel(cp.address, cp.credentials("ada"))
        channels.append(channel)
        stream = open_watch(access_pb2_grpc.AccessServiceStub(channel), ["grant.activated"])
        async for event in events_of(stream):
            if event.type == "snapshot.end":
                ready[name].set()
            elif event.type == "grant.activated":
                seen[name][event.request.id] = time.perf_counter()

    tasks = [asyncio.create_task(watch(name, cp)) for name, cp in watchers.items()]
    for ev in ready.values():
        await asyncio.wait_for(ev.wait(), 20)
    channel = grpc.aio.secure_channel(writer.address, writer.credentials("alice"))
    stub = access_pb2_grpc.AccessServiceStub(channel)
    acked: dict[str, float] = {}
    dur = duration_pb2.Duration(seconds=3600)
    for i in range(n):
        req = (await stub.CreateRequest(access_pb2.CreateRequestRequest(
            resource="web-dev-01", login="deploy", reason=f"delay {i}", duration=dur))).request
        acked[req.id] = time.perf_counter()
        await asyncio.sleep(0.01)  # one at a time: the delay, not a queue behind a burst
    deadline = time.monotonic() + 10
    while any(len(s) < n for s in seen.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for t in tasks:
        t.cancel()
    for c in [channel, *channels]:
        await c.close()
    # An event can arrive before the acknowledgement is read by the client: that is a 0 ms delay.
    return {name: [max(0.0, (s[rid] - t) * 1000) for rid, t in acked.items() if rid in s]
            for name, s in seen.items()}


# -- mass expiry ------------------------------------------------------------------------------------


def seed_grants(store_target: str, n: int) -> dt.datetime:
    """Create `n` auto-approved grants that all expire at one instant, with a core on the store
    (the planes are stopped meanwhile) and a frozen clock; returns the deadline.

    A probe of 100 requests (on another resource) times the creation first, so the deadline
    leaves room for seeding and the planes' restart whatever the machine's speed.
    """
    from controlplane.core import AccessCore, StaticPolicy
    from controlplane.scaleout.storeurl import normalize
    from controlplane.store import open_store
    from policy import load_policy_set

    t0 = dt.datetime.now(dt.UTC)
    store = open_store(normalize(store_target) if "://" in store_target else store_target)
    core = AccessCore(store, StaticPolicy(load_policy_set(POLICIES)), clock=lambda: t0)
    users = ["alice", "bob", "sam", "sara", "dave"]
    probe = time.monotonic()
    for i in range(100):
        core.requests.create_request(
            users[i % len(users)], "web-dev-01", login="deploy", duration=dt.timedelta(hours=1), reason=f"probe {i}"
        )
    per_grant = (time.monotonic() - probe) / 100
    deadline = t0 + dt.timedelta(seconds=25 + 2 * per_grant * n)
    for i in range(n):
        core.requests.create_request(
            users[i % len(users)], "dev-db", role="readonly", duration=deadline - t0, reason=f"expiry bench {i}"
        )
    store.close()
    if "://" in store_target:
        # Grants made over hours would have been vacuumed and analyzed by then; 10,000 made in
        # seconds are not yet, and autovacuum would run on them during the timed window.
        import psycopg

        with psycopg.connect(store_target, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    return deadline


async def await_expiry(lister: ControlPlane, watchers: dict[str, ControlPlane], ids_expected: int,
                       deadline: dt.datetime) -> tuple[float, dict[str, float]]:
    """(seconds from the deadline until ListRequests on `lister` shows no ACTIVE grant on the
    resource, {watcher: seconds from the deadline until it has received every grant.expired})."""
    from jitgate.v1 import access_pb2, access_pb2_grpc, types_pb2

    opts = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    channels = []

    def stub_of(cp: ControlPlane) -> Any:
        channel = grpc.aio.secure_channel(cp.address, cp.credentials("ada"), options=opts)
        channels.append(channel)
        return access_pb2_grpc.AccessServiceStub(channel)

    async def watch(cp: ControlPlane) -> dt.datetime:
        stream = open_watch(stub_of(cp), ["grant.expired"])
        seen = 0
        async for event in events_of(stream):
            if event.type == "grant.expired" and event.request.resource == "dev-db":
                seen += 1
                if seen == ids_expected:
                    stream.cancel()
                    return dt.datetime.now(dt.UTC)
        raise SystemExit("watch ended early")

    stub = stub_of(lister)

    async def states() -> dt.datetime:
        while dt.datetime.now(dt.UTC) < deadline:
            await asyncio.sleep(0.01)
        while True:
            active = await stub.ListRequests(
                access_pb2.ListRequestsRequest(resource="dev-db", states=[types_pb2.REQUEST_STATE_ACTIVE], page_size=1)
            )
            if not active.requests:
                return dt.datetime.now(dt.UTC)
            await asyncio.sleep(0.01)

    names = list(watchers)
    listed, *watched = await asyncio.gather(states(), *(watch(watchers[n]) for n in names))
    expired, token = 0, ""
    while True:  # pages are bounded (controlplane/bounds.py): follow the page tokens
        page = await stub.ListRequests(access_pb2.ListRequestsRequest(
            resource="dev-db", states=[types_pb2.REQUEST_STATE_EXPIRED], page_token=token))
        expired += len(page.requests)
        token = page.next_page_token
        if not token:
            break
    for c in channels:
        await c.close()
    if expired < ids_expected:
        raise SystemExit(f"only {expired} of {ids_expected} grants are EXPIRED")
    delays = {n: (w - deadline).total_seconds() for n, w in zip(names, watched, strict=True)}
    return (listed - deadline).total_seconds(), delays


def mass_expiry(name: str, planes: list[ControlPlane], store_target: str, n: int) -> str:
    for cp in planes:
        cp.stop()
    t = time.monotonic()
    deadline = seed_grants(store_target, n)
    seeded = time.monotonic() - t
    for cp in planes:
        cp.start()
    if dt.datetime.now(dt.UTC) >= deadline:
        raise SystemExit("seeding took too long: the grants expired before the planes were back")
    watchers = {f"watcher on {chr(ord('A') + i)}": cp for i, cp in enumerate(planes)}
    to_state, to_events = asyncio.run(await_expiry(planes[0], watchers, n, deadline))
    events = ", ".join(f"{w} {sec:.2f} s" for w, sec in to_events.items())
    return (f"{name}: {n} grants expiring at one instant (seeded in {seeded:.0f} s): all EXPIRED {to_state:.2f} s "
            f"after the deadline; every grant.expired received: {events} (goal < 1 s for both)")


# -- sweeper failover --------------------------------------------------------------------------------


async def sweeper_failover(holder: ControlPlane, other: ControlPlane, lead: float = 0.3) -> float:
    """kill -9 `holder` `lead` s before a grant's deadline; seconds from max(deadline, kill) until
    `other` (taking the lease) has expired it and its watcher has the event."""
    from google.protobuf import duration_pb2

    from jitgate.v1 import access_pb2, access_pb2_grpc

    channel = grpc.aio.secure_channel(other.address, other.credentials("ada"))
    stub = access_pb2_grpc.AccessServiceStub(channel)
    stream = stub.WatchEvents(access_pb2.WatchEventsRequest(types=["grant."]))
    async for event in stream:
        if event.type == "snapshot.end":
            break
    alice = grpc.aio.secure_channel(other.address, other.credentials("alice"))
    req = (await access_pb2_grpc.AccessServiceStub(alice).CreateRequest(access_pb2.CreateRequestRequest(
        resource="web-dev-01", login="deploy", reason="failover", duration=duration_pb2.Duration(seconds=2)))).request
    deadline = req.expires_at.ToDatetime(tzinfo=dt.UTC)
    await asyncio.sleep(max(0.0, (deadline - dt.datetime.now(dt.UTC)).total_seconds() - lead))
    holder.kill()
    killed = dt.datetime.now(dt.UTC)
    async for event in stream:
        if event.type == "grant.expired" and event.request.id == req.id:
            got = dt.datetime.now(dt.UTC)
            break
    stream.cancel()
    await alice.close()
    await channel.close()
    return (got - max(deadline, killed)).total_seconds()


# -- main -------------------------------------------------------------------------------------------


PARTS = ("throughput", "events", "expiry", "failover")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--grants", type=int, default=10000)
    parser.add_argument("--events", type=int, default=300, help="grants timed for the cross-plane event delay")
    parser.add_argument("--watch", choices=("batches", "events"), default="batches",
                        help="watchers read WatchEventBatches (default) or WatchEvents (one event per message)")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only this part (1. throughput, 2. events, 3. expiry, 4. failover); repeatable")
    args = parser.parse_args()
    parts = set(args.only or PARTS)
    WATCH["rpc"] = "WatchEventBatches" if args.watch == "batches" else "WatchEvents"
    env = {"JITGATE_LOG_LEVEL": "WARNING",
           "JITGATE_SWITCH_INTERVAL": os.environ.get("JITGATE_SWITCH_INTERVAL", "0.0005")}
    print(f"# {args.clients} concurrent clients, {args.seconds:.0f} s each, mTLS on loopback, {os.cpu_count()} cores; "
          f"watchers read {WATCH['rpc']}; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp_name, pg_store("jg_bench") as pg_url:
        tmp = Path(tmp_name)
        url = f"{pg_url}{'&' if '?' in pg_url else '?'}application_name={APP_NAME}"
        sqlite = ControlPlane(tmp / "sqlite", POLICIES, env=env)
        planes: list[ControlPlane] = [sqlite]
        try:
            if "throughput" in parts:
                one = asyncio.run(drive("1 plane, SQLite", args.clients, args.seconds, [cp_factory(sqlite)],
                                        {"plane": [plane_pid(sqlite)]}))
                print(one.line())
            a = ControlPlane(tmp / "a", POLICIES, env=env, store=url)
            planes.append(a)
            pids = {"plane": [plane_pid(a)], "postgres": pg_backends()}
            if "throughput" in parts:
                pg1 = asyncio.run(drive("1 plane, PostgreSQL", args.clients, args.seconds, [cp_factory(a)], pids))
                print(pg1.line())
            b = ControlPlane(tmp / "b", POLICIES, env=env, peer=a)
            planes.append(b)
            pids = {"plane A": [plane_pid(a)], "plane B": [plane_pid(b)], "postgres": pg_backends()}
            if "throughput" in parts:
                pg2 = asyncio.run(drive("2 planes, PostgreSQL", args.clients, args.seconds,
                                        [cp_factory(a), cp_factory(b)], pids))
                print(pg2.line())
                print(f"throughput vs 1 plane SQLite: 1 plane PG {pg1.throughput / one.throughput:.2f}x, "
                      f"2 planes PG {pg2.throughput / one.throughput:.2f}x; 2 planes vs 1 plane PG "
                      f"{pg2.throughput / pg1.throughput:.2f}x; p99 {one.pct(0.99):.1f} / {pg1.pct(0.99):.1f} / "
                      f"{pg2.pct(0.99):.1f} ms (2 cores shared by every process)")

            if "events" in parts:
                delays = asyncio.run(event_delays(a, {"same plane (A)": a, "other plane (B)": b}, args.events))
                for name, ms in delays.items():
                    print(f"event delay, watcher on the {name}: p50 {pct(ms, 0.5):.1f} ms, p99 {pct(ms, 0.99):.1f} "
                          f"ms ({len(ms)} of {args.events} grants){' (goal p99 < 100 ms)' if 'other' in name else ''}")

            if args.grants > 0 and "expiry" in parts:
                plane_pid(sqlite)  # started (the throughput part starts it otherwise)
                sqlite_db = str(sqlite.data.db_path)
                print(mass_expiry("SQLite, 1 plane", [sqlite], sqlite_db, args.grants))
                sqlite.stop()
                print(mass_expiry("PostgreSQL, 2 planes", [a, b], url, args.grants))

            if "failover" not in parts:
                return
            took = asyncio.run(sweeper_failover(a, b))
            print(f"sweeper failover: kill -9 of the plane holding the lease; the other plane expired a due grant "
                  f"{took:.2f} s after its deadline (goal: within a few seconds)")
        finally:
            for cp in planes:
                cp.stop()


if __name__ == "__main__":
    main()
