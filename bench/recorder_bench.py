"""Events per second through RecordingWriter, against plain buffered file writes.

    .venv/bin/python bench/recorder_bench.py [--events N]

Baseline (same run, same bytes): a Python buffered file `write` of each raw
chunk, no encoding, no hash. The writer does per event: UTF-8 decode, JSON
escape, SHA-256 chain link, buffering, a flush to the OS at least every second,
and fsync + an Ed25519 seal at close. Run inside an asyncio loop, as in a broker.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from recorder import DbStatement, FileRecordingStore, Kind


def baseline(path: Path, chunks: list[bytes]) -> float:
    start = time.perf_counter()
    with open(path, "ab") as f:
        for c in chunks:
            f.write(c)
    return time.perf_counter() - start


async def terminal(store: FileRecordingStore, session: str, chunks: list[bytes]) -> tuple[float, float]:
    w = store.create(session, Kind.TERMINAL, {"bench": True})
    start = time.perf_counter()
    for c in chunks:
        w.write_output(c)
    hot = time.perf_counter() - start
    await w.close()
    return hot, time.perf_counter() - start


async def exec_out(store: FileRecordingStore, session: str, chunks: list[bytes]) -> float:
    w = store.create(session, Kind.EXEC, {"bench": True}, command="cat /bulk")
    start = time.perf_counter()
    for c in chunks:
        w.write_output(c)
    hot = time.perf_counter() - start
    await w.close()
    return hot


async def db(store: FileRecordingStore, session: str, n: int) -> float:
    w = store.create(session, Kind.DB, {"bench": True})
    now = time.time()
    start = time.perf_counter()
    for i in range(n):
        w.write_event(DbStatement(text="SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                                  parameters=[str(i)], started_at=now, duration_ms=0.05, rows=1,
                                  command_tag="SELECT 1", protocol="extended"))
    hot = time.perf_counter() - start
    await w.close()
    return hot


async def many(store: FileRecordingStore, sessions: int, per_session: int) -> tuple[float, float]:
    """`sessions` live writers in one loop, events round-robin: events/s and memory per idle writer."""
    import tracemalloc

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    writers = [store.create(f"many-{i}", Kind.TERMINAL, {"user": f"u{i}"}) for i in range(sessions)]
    for w in writers:
        w.write_output(b"$ ")
    await asyncio.sleep(0)
    per_writer = (tracemalloc.get_traced_memory()[0] - before) / sessions
    tracemalloc.stop()
    start = time.perf_counter()
    for i in range(per_session):
        for w in writers:
            w.write_output(b"line of output %d\r\n" % i)
        if i % 10 == 0:
            await asyncio.sleep(0)  # let flush timers run, as a live broker would
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(w.close() for w in writers))
    return sessions * per_session / elapsed, per_writer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = FileRecordingStore(tmp, passphrase=b"bench")
        print(f"recorder bench: {args.events} events per run, best of {args.repeat}, pid {os.getpid()}")
        for size in (64, 4096):
            n = args.events if size == 64 else args.events // 10
            chunks = [(b"x" * (size - 2)) + b"\r\n"] * n
            base = min(baseline(Path(tmp) / f"base-{size}-{r}", chunks) for r in range(args.repeat))
            runs = [asyncio.run(terminal(store, f"t{size}-{r}", chunks)) for r in range(args.repeat)]
            hot = min(r[0] for r in runs)
            total = min(r[1] for r in runs)
            mb = n * size / 1e6
            print(f"terminal output, {size:>4} B chunks: writer {n / hot:>10,.0f} ev/s "
                  f"({mb / hot:7.1f} MB/s, {hot / n * 1e6:.2f} µs/event; with close+fsync "
                  f"{n / total:,.0f} ev/s) | baseline file.write {n / base:>11,.0f} ev/s "
                  f"({mb / base:7.1f} MB/s) | ratio writer/baseline {base / hot:.3f}x")
        n = args.events // 10
        for name, chunk in (("text", (b"x" * 62 + b"\n") * 512), ("zeros", bytes(32768)),
                            ("random", os.urandom(32768))):
            chunks = [chunk] * n
            base = min(baseline(Path(tmp) / f"base-exec-{name}-{r}", chunks) for r in range(args.repeat))
            hot = min(asyncio.run(exec_out(store, f"x{name}-{r}", chunks)) for r in range(args.repeat))
            mb = n * len(chunk) / 1e6
            print(f"exec stdout, 32 KiB chunks of {name:<6}: writer {mb / hot:7.1f} MB/s "
                  f"({hot / n * 1e6:.1f} µs/chunk) | baseline file.write {mb / base:7.1f} MB/s "
                  f"| ratio writer/baseline {base / hot:.3f}x")
        n = args.events // 2
        hot = statistics.median(asyncio.run(db(store, f"db-{r}", n)) for r in range(args.repeat))
        print(f"database statements (extended, 1 param): writer {n / hot:,.0f} statements/s "
              f"({hot / n * 1e6:.2f} µs/statement)")
        rate, per_writer = asyncio.run(many(store, 500, 100))
        print(f"500 live terminal writers in one loop: {rate:,.0f} ev/s; "
              f"{per_writer / 1024:.1f} KiB Python memory per open writer (no file held open)")


if __name__ == "__main__":
    main()
