"""Control plane benchmark: request -> auto-approve -> get over mTLS against the real server
(SQLite), side by side with a trivial grpc.aio echo service over mTLS in the same run; then the
time for many grants expiring in the same second to all show EXPIRED.

    .venv/bin/python bench/controlplane_bench.py [--clients 8] [--seconds 5] [--grants 10000]

One operation is two round trips in both cases: CreateRequest (auto-approved: ACTIVE) +
GetRequest against the control plane, two Echo calls against the echo service. Goals (issue 3):
p99 < 20 ms per call and control-plane throughput >= 40% of echo's; 10,000 same-second
expiries all EXPIRED in < 2 s. Both servers are separate processes; clients are grpc.aio
tasks, one channel each, in this process.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.cluster import ControlPlane  # noqa: E402

POLICIES = REPO / "tests" / "controlplane" / "api" / "policies.yaml"
ECHO_METHOD = "/bench.Echo/Echo"


# -- the echo baseline ---------------------------------------------------------------------------


async def _echo_server(identity: Path, port_file: Path) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    creds = grpc.ssl_server_credentials(
        [((identity / "key.pem").read_bytes(), (identity / "cert.pem").read_bytes())],
        root_certificates=(identity / "ca.pem").read_bytes(), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    port_file.write_text(str(port))
    await server.wait_for_termination()


def echo_identity(cp: ControlPlane, out: Path) -> Path:
    """A server certificate for the echo service from the control plane's CA (same TLS cost)."""
    from ca.x509 import write_identity_bundle
    from controlplane.identity import open_x509_ca

    ca = open_x509_ca(cp.data)
    return write_identity_bundle(ca.issue_server_certificate([], []), ca.ca_cert_pem, out)


def start_echo(identity: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = tmp / "echo.port"
    proc = subprocess.Popen([sys.executable, __file__, "--echo-server", str(identity), str(port_file)])
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("echo server did not start")
        time.sleep(0.02)
    time.sleep(0.05)  # the file is written right after start(); give it a moment to be complete
    return proc, int(port_file.read_text())


# -- load -------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    name: str
    ops: int
    seconds: float
    latencies_ms: list[float]
    all_ops: int = 0
    server_cpu: float = 0.0

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")

    def line(self) -> str:
        return (f"{self.name:<14} {self.throughput:8.0f} ops/s  per call p50 {self.pct(0.50):6.2f} ms  "
                f"p99 {self.pct(0.99):6.2f} ms  server CPU {self.cpu_ms_per_op:5.2f} ms/op  "
                f"({self.ops} ops, {len(self.latencies_ms)} calls)")

    @property
    def cpu_ms_per_op(self) -> float:
        return self.server_cpu * 1000 / max(self.all_ops, 1)


async def drive(name: str, clients: int, seconds: float, make: Callable[[], tuple[Any, Callable[[], Awaitable[None]]]],
                server_pid: int, warmup: float = 1.0) -> Result:
    """`clients` tasks, each with its own channel, running `op` for `seconds` after a warm-up."""
    latencies: list[float] = []
    ops = all_ops = 0
    t_start = time.monotonic() + warmup
    t_end = t_start + seconds

    async def client() -> None:
        nonlocal ops, all_ops
        channel, op = make()
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

    cpu0 = cpu_seconds(server_pid)
    await asyncio.gather(*(client() for _ in range(clients)))
    return Result(name, ops, seconds, latencies, all_ops, cpu_seconds(server_pid) - cpu0)


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


def echo_factory(port: int, creds: grpc.ChannelCredentials) -> Callable[[], tuple[Any, Callable[[], Awaitable[int]]]]:
    payload = b"x" * 200

    def make() -> tuple[Any, Callable[[], Awaitable[int]]]:
        channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)
        call = channel.unary_unary(ECHO_METHOD)

        async def op() -> int:
            await call(payload)
            await call(payload)
            return 2

        return channel, op

    return make


# -- mass expiry ------------------------------------------------------------------------------------


def seed_grants(cp: ControlPlane, n: int) -> dt.datetime:
    """Create `n` auto-approved grants that all expire at one instant, with a core on the
    server's store and a frozen clock (the server is stopped meanwhile); returns the deadline.

    A probe of 100 requests (on another resource) times the creation first, so the deadline
    leaves room for seeding and the server's restart whatever the machine's speed.
    """
    from controlplane.core import AccessCore, StaticPolicy
    from controlplane.store import open_store
    from policy import load_policy_set

    t0 = dt.datetime.now(dt.UTC)
    store = open_store(str(cp.data.db_path))
    core = AccessCore(store, StaticPolicy(load_policy_set(POLICIES)), clock=lambda: t0)
    users = ["alice", "bob", "sam", "sara", "dave"]
    probe = time.monotonic()
    for i in range(100):
        core.requests.create_request(
            users[i % len(users)], "web-dev-01", login="deploy", duration=dt.timedelta(hours=1), reason=f"probe {i}"
        )
    per_grant = (time.monotonic() - probe) / 100
    deadline = t0 + dt.timedelta(seconds=20 + 2 * per_grant * n)
    for i in range(n):
        core.requests.create_request(
            users[i % len(users)], "dev-db", role="readonly", duration=deadline - t0, reason=f"expiry bench {i}"
        )
    store.close()
    return deadline


async def await_expiry(cp: ControlPlane, ids_expected: int, deadline: dt.datetime) -> tuple[float, float]:
    """Returns (seconds from the deadline until ListRequests shows no ACTIVE grant on the resource,
    seconds from the deadline until an admin's watch stream has delivered every grant.expired)."""
    from jitgate.v1 import access_pb2, access_pb2_grpc, types_pb2

    channel = grpc.aio.secure_channel(
        cp.address, cp.credentials("ada"), options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    stub = access_pb2_grpc.AccessServiceStub(channel)

    async def watch() -> dt.datetime:
        stream = stub.WatchEvents(access_pb2.WatchEventsRequest(types=["grant.expired"]))
        seen = 0
        async for event in stream:
            if event.type == "grant.expired" and event.request.resource == "dev-db":
                seen += 1
                if seen == ids_expected:
                    stream.cancel()
                    return dt.datetime.now(dt.UTC)
        raise SystemExit("watch ended early")

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

    watched, listed = await asyncio.gather(watch(), states())
    expired, token = 0, ""
    while True:  # pages are bounded (controlplane/bounds.py): follow the page tokens
        page = await stub.ListRequests(
            access_pb2.ListRequestsRequest(
                resource="dev-db", states=[types_pb2.REQUEST_STATE_EXPIRED], page_token=token
            )
        )
        expired += len(page.requests)
        token = page.next_page_token
        if not token:
            break
    await channel.close()
    if expired < ids_expected:
        raise SystemExit(f"only {expired} of {ids_expected} grants are EXPIRED")
    return (listed - deadline).total_seconds(), (watched - deadline).total_seconds()


# -- main -------------------------------------------------------------------------------------------


async def throughput(
    cp: ControlPlane, echo_pid: int, echo_port: int, clients: int, seconds: float
) -> tuple[Result, Result]:
    echo = await drive("echo (aio)", clients, seconds, echo_factory(echo_port, cp.credentials("alice")), echo_pid)
    assert cp.proc is not None
    control = await drive("control plane", clients, seconds, cp_factory(cp), cp.proc.pid)
    return control, echo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--grants", type=int, default=10000)
    parser.add_argument("--no-recommender", action="store_true", help="server config `recommender: false`")
    parser.add_argument("--threads", action="store_true", help="server config `inline_core: false`")
    parser.add_argument("--echo-server", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        asyncio.run(_echo_server(Path(args.echo_server[0]), Path(args.echo_server[1])))
        return

    with tempfile.TemporaryDirectory(prefix="jitgate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cp = ControlPlane(
            tmp / "cp",
            POLICIES,
            config={"recommender": not args.no_recommender, "inline_core": not args.threads},
            env={
                "JITGATE_LOG_LEVEL": "WARNING",
                "JITGATE_SWITCH_INTERVAL": os.environ.get("JITGATE_SWITCH_INTERVAL", "0.0005"),
                "JITGATE_PROFILE": os.environ.get("JITGATE_PROFILE", ""),
            },
        )
        echo_proc, echo_port = start_echo(echo_identity(cp, tmp / "echo-server"), tmp)
        try:
            print(
                f"# {args.clients} concurrent clients, {args.seconds:.0f} s each, mTLS on loopback, "
                f"{os.cpu_count()} cores"
            )
            control, echo = asyncio.run(throughput(cp, echo_proc.pid, echo_port, args.clients, args.seconds))
            print(echo.line())
            print(control.line())
            ratio = control.throughput / echo.throughput
            print(
                f"throughput ratio control plane / echo: {ratio:.2f} (goal >= 0.40); "
                f"control plane p99 {control.pct(0.99):.2f} ms (goal < 20 ms); "
                f"p99 ratio {control.pct(0.99) / echo.pct(0.99):.1f}x; "
                f"server CPU per op ratio {control.cpu_ms_per_op / echo.cpu_ms_per_op:.1f}x"
            )

            if args.grants <= 0:
                return
            cp.stop()
            t = time.monotonic()
            deadline = seed_grants(cp, args.grants)
            seeded = time.monotonic() - t
            cp.start()
            if dt.datetime.now(dt.UTC) >= deadline:
                raise SystemExit("seeding took too long: the grants expired before the server was back")
            to_state, to_events = asyncio.run(await_expiry(cp, args.grants, deadline))
            print(
                f"{args.grants} grants expiring at the same instant (seeded in {seeded:.1f} s): all EXPIRED "
                f"in ListRequests {to_state:.2f} s after the deadline (goal < 2 s); every grant.expired "
                f"event delivered to a watcher {to_events:.2f} s after"
            )
        finally:
            echo_proc.terminate()
            echo_proc.wait()
            cp.stop()


if __name__ == "__main__":
    main()
