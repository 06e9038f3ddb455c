"""Recording store benchmark: brokers uploading to S3-compatible storage (s3rver) through the
control plane, against the broker's own file store, in one run.

- recording throughput while relaying: MB/s of an exec session's output through the SSH broker
  with the upload on, as a ratio to the same broker with the upload off (file store only);
- session end -> recording complete in the store and readable through the control plane from
  another process (p50/p99 over N sessions);
- replay start latency (first event) for a large recording: through the control plane vs the
  broker's local disk;
- live watch delay: a line typed into a session -> seen by a watcher through the control plane.

    .venv/bin/python bench/recordings_bench.py [--mb 100] [--sessions 100] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.client import connect
from cli.remote_recordings import RemoteRecordingStore
from jitgate.v1 import recordings_pb2, recordings_pb2_grpc
from recorder import FileRecordingStore
from tests.broker.ssh.harness import sessions_of, wait_for
from tests.recordings.stack import RecordingStack


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def bulk(stack: RecordingStack, mb: int) -> tuple[float, str]:
    """Seconds for `mb` MB of text through the broker (an exec session), and its session id."""
    grant = stack.grant("alice", "web-01")
    key = stack.user_key("alice", grant.id)
    lines = mb * 1_000_000 // 100
    cmd = f"yes {'x' * 99} | head -n {lines}"  # 100-byte lines
    t0 = time.perf_counter()
    r = subprocess.run(stack.ssh_argv(key, "web-01", cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       timeout=600)
    elapsed = time.perf_counter() - t0
    assert len(r.stdout) == lines * 100, len(r.stdout)
    return elapsed, sessions_of(stack, grant.id)[0].id


def complete(stub: recordings_pb2_grpc.RecordingServiceStub, sid: str, timeout: float = 120) -> None:
    def done() -> bool:
        rows = stub.ListRecordings(recordings_pb2.ListRecordingsRequest(session_id=sid)).recordings
        return bool(rows) and rows[0].complete
    wait_for(done, timeout=timeout, interval=0.02)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--watch-only", action="store_true", help="only the live watch delay")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RecordingStack(Path(tmp)) as stack:
        assert stack.cp is not None
        if args.watch_only:
            watch_delay(stack)
            return
        admin = recordings_pb2_grpc.RecordingServiceStub(stack.cp.channel("admin"))

        # 1. Throughput: the same broker binary, upload off (file store only), then on, alternating
        # `--rounds` times (medians): this machine's other load moves both the same way. Each upload
        # round waits for its recording to be complete, so no backlog spills into the next.
        base_runs: list[float] = []
        up_runs: list[float] = []
        lags: list[float] = []
        big = ""
        for _ in range(args.rounds):
            stack.stop_broker()
            os.environ["JITGATE_UPLOAD_RECORDINGS"] = "0"
            stack.start_broker()
            bulk(stack, 5)  # warm up
            base_runs.append(bulk(stack, args.mb)[0])
            stack.stop_broker()
            del os.environ["JITGATE_UPLOAD_RECORDINGS"]
            stack.start_broker()
            _, warm = bulk(stack, 5)
            complete(admin, warm)
            up_s, big = bulk(stack, args.mb)
            t_end = time.perf_counter()
            complete(admin, big, timeout=600)
            lags.append(time.perf_counter() - t_end)
            up_runs.append(up_s)
        base_s, up_s = pct(base_runs, 50), pct(up_runs, 50)
        print(f"throughput, {args.mb} MB exec output recorded, median of {args.rounds} alternating rounds:")
        print(f"  file store only        {args.mb / base_s:8.1f} MB/s   (runs: "
              f"{', '.join(f'{args.mb / x:.1f}' for x in base_runs)})")
        print(f"  uploading to S3        {args.mb / up_s:8.1f} MB/s   (runs: "
              f"{', '.join(f'{args.mb / x:.1f}' for x in up_runs)})   ratio {base_s / up_s:.2f}x (goal >= 0.8x)")
        print(f"  {args.mb} MB recording complete in the store {pct(lags, 50):.2f} s after its session ended (median)")

        # 2. Session end -> complete and readable from another process (the CLI's path).
        lags = []
        grant = stack.grant("alice", "web-01")
        key = stack.user_key("alice", grant.id)
        reader = RemoteRecordingStore(connect(stack.cp.identity("audrey"), stack.cp.address))
        seen: set[str] = set()
        for i in range(args.sessions):
            subprocess.run(stack.ssh_argv(key, "web-01", f"echo session-{i}"), capture_output=True, timeout=60,
                           check=True)
            t0 = time.perf_counter()
            sid = wait_for(lambda: next((s.id for s in sessions_of(stack, grant.id)
                                         if s.end_reason and s.id not in seen), ""), timeout=30, interval=0.01)
            seen.add(sid)
            complete(admin, sid)
            reader._rows.pop(sid, None)
            first = next(iter(reader.open(sid).events()))
            lags.append(time.perf_counter() - t0)
            assert first is not None
        print(f"session end -> complete and readable through the control plane, {args.sessions} sessions:")
        print(f"  p50 {pct(lags, 50) * 1000:.0f} ms   p99 {pct(lags, 99) * 1000:.0f} ms   "
              f"max {max(lags) * 1000:.0f} ms")

        # 3. Replay start of the large recording: control plane vs the broker's disk.
        local = FileRecordingStore(stack.broker_dir)
        remote_t, local_t = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            store = RemoteRecordingStore(connect(stack.cp.identity("audrey"), stack.cp.address))
            next(iter(store.open(big).events()))
            remote_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            next(iter(local.open(big).events()))
            local_t.append(time.perf_counter() - t0)
        size = local.info(big)
        data_mb = (stack.broker_dir / "recordings" / big / "events.jsonl").stat().st_size / 1e6
        print(f"replay start (first event) of a {data_mb:.0f} MB recording ({size.ref}), median of 5:")
        print(f"  local disk             {pct(local_t, 50) * 1000:8.1f} ms")
        print(f"  through control plane  {pct(remote_t, 50) * 1000:8.1f} ms   "
              f"(+{(pct(remote_t, 50) - pct(local_t, 50)) * 1000:.0f} ms: connect, list, audit, first part)")

        watch_delay(stack)


def watch_delay(stack: RecordingStack, marks: int = 20) -> None:
    """A line into an exec session -> the same line out of a `sessions watch` stream (another process's path)."""
    import re
    import threading

    from recorder import ExecData

    assert stack.cp is not None
    grant = stack.grant("alice", "web-01")
    key = stack.user_key("alice", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-01", "while read l; do echo \"$l\"; done"),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    sid = wait_for(lambda: next((s.id for s in sessions_of(stack, grant.id) if not s.end_reason), ""), timeout=30)
    proc.stdin.write(b"warm-up\n")
    proc.stdin.flush()
    admin = recordings_pb2_grpc.RecordingServiceStub(stack.cp.channel("admin"))
    wait_for(lambda: admin.ListRecordings(recordings_pb2.ListRecordingsRequest(session_id=sid)).recordings,
             timeout=30)  # its first part is in the store
    store = RemoteRecordingStore(connect(stack.cp.identity("audrey"), stack.cp.address))
    arrived: dict[int, float] = {}

    def follow() -> None:
        for event in store.follow(sid):
            if isinstance(event, ExecData) and event.stream == "stdout":
                for n in re.findall(rb"mark-(\d+)", event.data):
                    arrived.setdefault(int(n), time.perf_counter())

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    time.sleep(3)  # the first parts tell the broker someone watches
    sent: dict[int, float] = {}
    for n in range(marks):
        sent[n] = time.perf_counter()
        proc.stdin.write(f"mark-{n}\n".encode())
        proc.stdin.flush()
        time.sleep(0.5)
    proc.stdin.close()
    proc.wait(30)
    t.join(30)
    delays = [arrived[n] - sent[n] for n in sent if n in arrived]
    print(f"live watch through the control plane, {len(delays)}/{marks} lines seen:")
    print(f"  delay p50 {pct(delays, 50) * 1000:.0f} ms   p99 {pct(delays, 99) * 1000:.0f} ms   "
          f"max {max(delays) * 1000:.0f} ms (goal < 1 s)")


if __name__ == "__main__":
    main()
