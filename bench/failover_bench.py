"""Broker failover benchmark: how long until session authorization resumes through another plane.

    .venv/bin/python bench/failover_bench.py [--rounds 6]

One run with real processes (tests/broker/pg/harness.py): `jitgate server`, `jitgate pg-broker`
with `--server A,B`, the local PostgreSQL, psycopg logging in through the broker with a jitgate
token (each login is one AuthorizeSession). Rounds alternate two cases:

- move: the plane is killed (kill -9) and started again, same data, on the *other* address of
  the broker's list: the broker must notice and fail over;
- stay (the baseline, same run): the plane is killed and started again on the *same* address:
  the broker only reconnects, as a single-address broker always did.

Two planes cannot serve one SQLite data directory at once (DataDirLock), so the new
plane starts after the kill; its start-up (kill -> SERVING) is printed apart and is not
the broker's. The broker's figure is SERVING -> the first login that succeeds, with
logins tried back to back from the moment of the kill (the refusal tarpit off, so
refused logins are not slowed down on purpose). With two planes on PostgreSQL both
are up already, and the failover time is the broker's figure alone.
Printed: each case's median and max, and the ratio move/stay of the medians.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "proto"))

from broker.demo_target import free_port  # noqa: E402
from tests.broker.pg.harness import PgStack  # noqa: E402


def login_ok(stack: PgStack, token: Any) -> bool:
    import psycopg

    try:
        with psycopg.connect(**stack.dsn(token, connect_timeout=10), autocommit=True) as conn:
            conn.execute("select 1")
        return True
    except Exception:
        return False


def one_round(stack: PgStack, token: Any, port: int) -> tuple[float, float]:
    """kill -9, start on `port`; (kill -> SERVING, SERVING -> first successful login) in seconds."""
    assert stack.cp is not None
    first_ok: list[float] = []
    stop = threading.Event()

    def logins() -> None:
        while not stop.is_set():
            if login_ok(stack, token):
                first_ok.append(time.monotonic())
                return
            time.sleep(0.005)

    stack.cp.kill()
    killed = time.monotonic()
    poller = threading.Thread(target=logins)
    poller.start()
    stack.cp.port = port
    stack.cp.start()
    serving = time.monotonic()
    poller.join(60)
    stop.set()
    if not first_ok:
        raise RuntimeError("no login succeeded within 60 s of the plane serving again")
    return serving - killed, max(0.0, first_ok[0] - serving)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each case")
    args = parser.parse_args()
    spare = free_port()
    with tempfile.TemporaryDirectory(prefix="jgt-failover-bench-") as tmp:
        stack = PgStack(Path(tmp), private=False, broker_args=("--refusal-delay-max", "0"),
                        servers=lambda live: f"{live},127.0.0.1:{spare}")
        with stack:
            assert stack.cp is not None
            ports = [stack.cp.port, spare]
            grant = stack.grant("alice", "testdb", stack.ro, seconds=3600)
            token = stack.token("alice", grant.id)
            started = time.monotonic()
            assert login_ok(stack, token)
            healthy = time.monotonic() - started
            results: dict[str, list[float]] = {"move": [], "stay": []}
            starts: list[float] = []
            for i in range(args.rounds * 2):
                case = "move" if i % 2 == 0 else "stay"
                here = stack.cp.port
                target = ports[1 - ports.index(here)] if case == "move" else here
                start_s, resumed = one_round(stack, token, target)
                starts.append(start_s)
                results[case].append(resumed)
                print(f"round {i + 1:2d} {case}: plane serving {start_s:5.2f} s after kill -9; "
                      f"logins resumed {resumed * 1000:7.1f} ms after that", flush=True)
    move, stay = statistics.median(results["move"]), statistics.median(results["stay"])
    print()
    print(f"a login through the broker, plane healthy: {healthy * 1000:.1f} ms")
    print(f"plane start-up (kill -9 -> SERVING, not the broker's): median {statistics.median(starts):.2f} s")
    print(f"broker failover to the other address (SERVING -> first login): median {move * 1000:.1f} ms, "
          f"max {max(results['move']) * 1000:.1f} ms")
    print(f"baseline, plane back on the same address:               median {stay * 1000:.1f} ms, "
          f"max {max(results['stay']) * 1000:.1f} ms")
    print(f"ratio move/stay (medians): {move / stay:.2f}" if stay > 0 else "ratio move/stay: baseline 0 ms")


if __name__ == "__main__":
    main()
