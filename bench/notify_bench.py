"""Notification benchmark: how soon an approver hears of a request, and what telling costs.

    .venv/bin/python bench/notify_bench.py [--requests 500] [--clients 4] [--seconds 5]

Against real `jitgate server` processes (SQLite, mTLS on loopback) with a real SMTP server
(aiosmtpd, STARTTLS + AUTH) and a real HTTP webhook receiver in this process:

1. Latency: `--requests` requests that wait for approval (two levels, so level 1's approver is
   told by email and by the signed webhook), `--clients` at a time; for each, the time from
   sending CreateRequest to the receiver holding the message. Goal: p99 < 1 s.
2. Throughput: CreateRequest calls per second with notifications on vs off, same policy, same
   clients, two control planes in this run, alternated (off, on, off, on); the ratio of the
   best on to the best off. Goal: >= 0.9x.
"""
from __future__ import annotations

import argparse
import asyncio
import os
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


def notify_config(smtp: SmtpServer) -> dict[str, Any]:
    return {"channels": {
        "mail": {"type": "email", "host": "127.0.0.1", "port": smtp.port, "from": "jitgate@example.test",
                 "username": smtp.user, "password": "env:B_SMTP_PASSWORD", "ca_file": str(smtp.cert)},
        "hooks": {"type": "webhook", "url": "env:B_HOOK_URL", "secret": "env:B_HOOK_KEY"}},
        "approvers": ["mail", "hooks"], "requester": ["mail"]}


async def create_many(cp: ControlPlane, n: int | None, clients: int, seconds: float | None,
                      sent_at: dict[str, float] | None = None) -> int:
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
            while left[0] > 0 and time.monotonic() < end:
                left[0] -= 1
                i += 1
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="jitgate-notify-bench-") as tmp_name:
        tmp = Path(tmp_name)
        smtp = SmtpServer(tmp).start()
        hooks = HttpReceiver().start()
        env = {"B_SMTP_PASSWORD": smtp.password, "B_HOOK_URL": hooks.url, "B_HOOK_KEY": hooks.secret,
               "JITGATE_LOG_LEVEL": "WARNING"}
        base = {"recommender": False}
        on = ControlPlane(tmp / "on", POLICIES, config={**base, "notify": notify_config(smtp)}, env=env)
        off = ControlPlane(tmp / "off", POLICIES, config=base, env=env)
        try:
            print(f"# {args.requests} requests, {args.clients} concurrent clients, {os.cpu_count()} cores, "
                  "SQLite, mTLS on loopback; receivers in this process")
            # 1. latency, CreateRequest sent -> message held by the receiver
            sent_at: dict[str, float] = {}
            asyncio.run(create_many(on, args.requests, args.clients, None, sent_at))
            ids = set(sent_at)
            hits = hooks.wait(lambda hs: ids <= {h.json()["request"]["id"] for h in hs
                                                 if h.json()["kind"] == "waiting"}, timeout=120)
            mails = smtp.wait(lambda ms: ids <= {m.message["X-Jitgate-Request"] for m in ms}, timeout=120)
            hook_at = {h.json()["request"]["id"]: h.at for h in hits if h.json()["kind"] == "waiting"}
            mail_at = {m.message["X-Jitgate-Request"]: m.at for m in mails}
            hook_ms = [(hook_at[i] - sent_at[i]) * 1000 for i in ids]
            mail_ms = [(mail_at[i] - sent_at[i]) * 1000 for i in ids]
            print(f"webhook  CreateRequest -> received: p50 {pct(hook_ms, .5):7.1f} ms  p99 {pct(hook_ms, .99):7.1f} ms"
                  f"  max {max(hook_ms):7.1f} ms  ({len(hook_ms)} messages; goal p99 < 1000 ms)")
            print(f"email    CreateRequest -> received: p50 {pct(mail_ms, .5):7.1f} ms  p99 {pct(mail_ms, .99):7.1f} ms"
                  f"  max {max(mail_ms):7.1f} ms  ({len(mail_ms)} messages, STARTTLS + AUTH each)")
            keys = [h.headers["idempotency-key"] for h in hooks.answered]
            print(f"webhook deliveries {len(keys)}, distinct keys {len(set(keys))}, bad signatures "
                  f"{hooks.bad_signatures}")

            # 2. throughput with notifications on vs off, alternated
            rates: dict[str, list[float]] = {"off": [], "on": []}
            for _round in range(2):
                for name, cp in (("off", off), ("on", on)):
                    t = time.monotonic()
                    n = asyncio.run(create_many(cp, None, args.clients * 2, args.seconds))
                    rates[name].append(n / (time.monotonic() - t))
            best_on, best_off = max(rates["on"]), max(rates["off"])
            print(f"throughput off: {', '.join(f'{r:.0f}' for r in rates['off'])} req/s; "
                  f"on: {', '.join(f'{r:.0f}' for r in rates['on'])} req/s")
            print(f"throughput ratio on / off: {best_on / best_off:.2f} (goal >= 0.90); "
                  f"webhook p99 {pct(hook_ms, .99):.0f} ms (goal < 1000 ms)")
        finally:
            on.stop()
            off.stop()
            smtp.stop()
            hooks.stop()


if __name__ == "__main__":
    main()
