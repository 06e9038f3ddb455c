"""Notification benchmark: how soon an approver hears of a request, and what telling costs.

    .venv/bin/python bench/notify_bench.py [--requests 500] [--clients 4] [--seconds 5]

Against real `jitgate server` processes (SQLite, mTLS on loopback) with a real SMTP server
(aiosmtpd, STARTTLS + AUTH) and a real HTTP webhook receiver, both in a child process (so
their work does not share the clients' interpreter); arrival times are CLOCK_MONOTONIC,
the same clock in every process:

1. Latency: `--requests` requests that wait for approval (two levels, so level 1's approver is
   told by email and by the signed webhook), from `--clients` clients; for each, the time from
   sending CreateRequest to the receiver holding the message. Goal: p99 < 1 s. Run twice: at a
   steady `--rate` (default 50 requests/s), and flat out (a burst: the sender, at the lowest CPU
   priority, yields to decisions while the CPU is full, so messages queue in the outbox).
2. Throughput: CreateRequest calls per second with notifications on vs off, same policy, same
   clients, two control planes in this run (the same number of requests stored in each),
   alternated in `--pairs` pairs (off, on); the median of the pairs' on/off ratios. Goal: >= 0.9x.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.cluster import ControlPlane  # noqa: E402
from tests.notify.receivers import HttpReceiver, SmtpServer  # noqa: E402

POLICIES = REPO / "tests" / "notify" / "policies.yaml"


def pct(data: list[float], q: float) -> float:
    s = sorted(data)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def serve_receivers(out: Path) -> None:
    """The child: run both receivers, append `kind request-id arrival` lines to out/arrivals.
    They stand in for other machines (a mail relay, a chat service), so they run at the lowest
    CPU priority: their work should not count against the control plane on this one."""
    os.nice(19)
    smtp = SmtpServer(out).start()
    hooks = HttpReceiver().start()
    log = (out / "arrivals").open("a", buffering=1)
    lock = __import__("threading").Lock()

    def record(kind: str, rid: str, at: float) -> None:
        with lock:
            log.write(f"{kind} {rid} {at:.6f}\n")

    orig_http, orig_mail = hooks._answered, SmtpServer.handle_DATA

    def answered(hit: Any) -> None:
        orig_http(hit)
        body = hit.json()
        record(f"hook-{body['kind']}", body["request"]["id"], hit.at)
        record("key", hit.headers.get("idempotency-key", ""), 0.0)

    async def handle_data(self: SmtpServer, server: Any, session: Any, envelope: Any) -> str:
        got = await orig_mail(self, server, session, envelope)
        m = self.mails[-1]
        record("mail", m.message["X-Jitgate-Request"], m.at)
        return got

    hooks._answered = answered  # type: ignore[method-assign]
    SmtpServer.handle_DATA = handle_data  # type: ignore[method-assign]
    (out / "ready.json").write_text(json.dumps({"smtp_port": smtp.port, "cert": str(smtp.cert), "user": smtp.user,
                                                "password": smtp.password, "hook_url": hooks.url,
                                                "hook_key": hooks.secret}))
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    smtp.stop()
    hooks.stop()


def read_arrivals(out: Path) -> list[tuple[str, str, float]]:
    rows = []
    for line in (out / "arrivals").read_text().splitlines():
        kind, rid, at = line.split(" ")
        rows.append((kind, rid, float(at)))
    return rows


def wait_arrivals(out: Path, kind: str, ids: set[str], timeout: float = 120) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        got = {rid: at for k, rid, at in read_arrivals(out) if k == kind}
        if ids <= set(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def notify_config(r: dict[str, Any]) -> dict[str, Any]:
    return {"channels": {
        "mail": {"type": "email", "host": "127.0.0.1", "port": r["smtp_port"], "from": "jitgate@example.test",
                 "username": r["user"], "password": "env:B_SMTP_PASSWORD", "ca_file": r["cert"]},
        "hooks": {"type": "webhook", "url": "env:B_HOOK_URL", "secret": "env:B_HOOK_KEY"}},
        "approvers": ["mail", "hooks"], "requester": ["mail"]}


async def create_many(cp: ControlPlane, n: int | None, clients: int, seconds: float | None,
                      sent_at: dict[str, float] | None = None, rate: float = 0.0) -> int:
    """CreateRequest from `clients` tasks: `n` in all, or as many as fit in `seconds`."""
    from google.protobuf import duration_pb2

    from jitgate.v1 import access_pb2, access_pb2_grpc

    dur = duration_pb2.Duration(seconds=1800)
    left = [n if n is not None else 10**9]
    end = time.monotonic() + seconds if seconds is not None else float("inf")
    done = 0

    async def client(k: int) -> None:
        nonlocal done
        async with grpc.aio.secure_channel(cp.address, cp.credentials("alice")) as channel:
            stub = access_pb2_grpc.AccessServiceStub(channel)
            i = 0
            start = time.monotonic()
            while left[0] > 0 and time.monotonic() < end:
                left[0] -= 1
                i += 1
                if rate > 0:  # each client at rate/clients requests per second, on a fixed schedule
                    await asyncio.sleep(max(0.0, start + (i - 1) * clients / rate - time.monotonic()))
                t0 = time.monotonic()
                resp = await stub.CreateRequest(access_pb2.CreateRequestRequest(
                    resource="web-prod-01", login="deploy", reason=f"bench {k}.{i}", duration=dur))
                if resp.request.state != 1:  # REQUEST_STATE_PENDING
                    raise SystemExit(f"expected a pending request, got {resp.request}")
                if sent_at is not None:
                    sent_at[resp.request.id] = t0
                done += 1

    await asyncio.gather(*(client(k) for k in range(clients)))
    return done


def latency(cp: ControlPlane, rdir: Path, n: int, clients: int, rate: float, label: str) -> list[float]:
    """`n` requests (at `rate` per second, or flat out when 0); prints webhook and email latency."""
    sent_at: dict[str, float] = {}
    asyncio.run(create_many(cp, n, clients, None, sent_at, rate))
    ids = set(sent_at)
    hook_at = wait_arrivals(rdir, "hook-waiting", ids)
    mail_at = wait_arrivals(rdir, "mail", ids)
    if not ids <= set(hook_at) or not ids <= set(mail_at):
        raise SystemExit(f"missing: {len(ids - set(hook_at))} webhook, {len(ids - set(mail_at))} email")
    hook_ms = [(hook_at[i] - sent_at[i]) * 1000 for i in ids]
    mail_ms = [(mail_at[i] - sent_at[i]) * 1000 for i in ids]
    for name, ms in (("webhook", hook_ms), ("email", mail_ms)):
        print(f"{label:<18} {name:<8} CreateRequest -> received: p50 {pct(ms, .5):7.1f} ms  "
              f"p99 {pct(ms, .99):7.1f} ms  max {max(ms):7.1f} ms  ({len(ms)} messages)")
    return hook_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one throughput run")
    parser.add_argument("--pairs", type=int, default=5, help="off/on throughput pairs")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second of the steady latency run")
    parser.add_argument("--serve-receivers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receivers:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve_receivers(Path(args.serve_receivers))
        return

    with tempfile.TemporaryDirectory(prefix="jitgate-notify-bench-") as tmp_name:
        tmp = Path(tmp_name)
        rdir = tmp / "receivers"
        rdir.mkdir()
        (rdir / "arrivals").touch()
        child = subprocess.Popen([sys.executable, __file__, "--serve-receivers", str(rdir)], cwd=REPO,
                                 stderr=subprocess.DEVNULL)
        while not (rdir / "ready.json").exists():
            if child.poll() is not None:
                raise SystemExit("the receivers did not start")
            time.sleep(0.05)
        r = json.loads((rdir / "ready.json").read_text())
        env = {"B_SMTP_PASSWORD": r["password"], "B_HOOK_URL": r["hook_url"], "B_HOOK_KEY": r["hook_key"],
               "JITGATE_LOG_LEVEL": "WARNING"}
        base = {"recommender": False}
        on = ControlPlane(tmp / "on", POLICIES, config={**base, "notify": notify_config(r)}, env=env)
        off = ControlPlane(tmp / "off", POLICIES, config=base, env=env)
        try:
            print(f"# {args.requests} requests, {args.clients} concurrent clients, {os.cpu_count()} cores, "
                  "SQLite, mTLS on loopback; receivers in a child process")
            # 1. latency, CreateRequest sent -> message held by the receiver
            hook_ms = latency(on, rdir, args.requests, args.clients, args.rate, f"steady {args.rate:.0f} req/s")
            burst_ms = latency(on, rdir, args.requests, args.clients, 0.0, "burst, flat out")
            keys = [rid for k, rid, _ in read_arrivals(rdir) if k == "key"]
            print(f"webhook deliveries {len(keys)}, distinct idempotency keys {len(set(keys))}")

            # 2. throughput with notifications on vs off, alternated in pairs (the machine's load
            # drifts; a pair's two runs are seconds apart). Both stores first hold the same number
            # of requests.
            asyncio.run(create_many(off, 2 * args.requests, args.clients, None))
            rates: dict[str, list[float]] = {"off": [], "on": []}
            for _pair in range(args.pairs):
                for name, cp in (("off", off), ("on", on)):
                    t = time.monotonic()
                    n = asyncio.run(create_many(cp, None, args.clients * 2, args.seconds))
                    rates[name].append(n / (time.monotonic() - t))
            ratios = sorted(b / a for a, b in zip(rates["off"], rates["on"], strict=True))
            median = ratios[len(ratios) // 2]
            print(f"throughput off: {', '.join(f'{r:.0f}' for r in rates['off'])} req/s; "
                  f"on: {', '.join(f'{r:.0f}' for r in rates['on'])} req/s")
            print(f"throughput ratio on / off (median of {len(ratios)} pairs): {median:.2f} (goal >= 0.90; pairs "
                  f"{', '.join(f'{r:.2f}' for r in ratios)}); webhook p99 {pct(hook_ms, .99):.0f} ms at "
                  f"{args.rate:.0f} req/s (goal < 1000 ms), {pct(burst_ms, .99):.0f} ms in a flat-out burst")
        finally:
            on.stop()
            off.stop()
            child.terminate()
            child.wait(10)


if __name__ == "__main__":
    main()
