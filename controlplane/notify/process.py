"""The notification sender as its own process, started by `jitgate server`.

Why a process: sending is Python work (TLS, HTTP, SMTP, rendering) and the control plane's
request path is bound by one interpreter lock; in the same process every message sent took
time from decisions (measured: 0.15x request throughput with notifications on). As a child
at the lowest CPU priority (`nice 19`) it has its own interpreter, and under a full CPU the
kernel serves decisions first; messages wait in the outbox meanwhile, nothing is lost.

Only the server writes the outbox: its dispatcher thread (`worker.Notifier`) claims due rows
and writes each as one JSON line to the child's stdin; the child (`worker.Deliverer`) reads the
store (WAL readers never block writers), sends, and writes each outcome as one JSON line to its
stdout, which the server records in batches. A low-priority process never holds the store's
write lock (it would make decisions wait behind a process the kernel seldom runs).

The child exits when its stdin closes: on the server's stop after its sends in flight, or
when the server was killed (its unrecorded sends are sent again after their lease, with the
same idempotency key).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from controlplane.core import AccessCore
from controlplane.notify.config import NotifyConfig
from controlplane.notify.worker import Notifier, Outcome
from controlplane.store.outbox import OutboxRow

log = logging.getLogger("jitgate.notify")

NICE = 19  # the sender's CPU priority: the lowest; decisions are served first when the CPU is full
STOP_TIMEOUT = 15.0  # seconds the server waits for the child to finish its sends in flight
RESPAWN_PAUSE = 1.0  # seconds before a sender that died is started again
STORE_ENV = "JITGATE_STORE"  # the store URL the child opens ("" or unset: the data directory's SQLite)
MAX_LINE = 1024 * 1024  # one row or outcome as JSON: far above what a row can hold


@dataclass(frozen=True)
class SenderSpec:
    """What the child needs to open the same store and policies (no secret: those stay env:/file:)."""

    data_dir: str
    policies: str
    notify: dict[str, Any]
    recommender: bool
    recommend_coverage: float
    people: bool = False  # sign-in is on: signed-in people are users too, as in the server

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class SenderProcess:
    """The server's side: the dispatcher (a Notifier whose sender is the child) and the child."""

    def __init__(self, core: AccessCore, config: NotifyConfig, spec: SenderSpec, store_url: str = "") -> None:
        self.spec = spec
        self.store_url = store_url
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_lock = threading.Lock()
        self._rows: dict[int, OutboxRow] = {}  # sent to the child, outcome not yet back
        self._reader: threading.Thread | None = None
        self._stopping = False
        self.notifier = Notifier(core, config, send=self._send)

    def start(self) -> None:
        """Rows are written from now on; the dispatcher starts when the child says it is ready."""
        self.notifier.install()
        self._spawn()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane.notify.child", self.spec.to_json()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, close_fds=True,
            env={**os.environ, STORE_ENV: self.store_url})
        self._reader = threading.Thread(target=self._read_outcomes, args=(self.proc,),
                                        name="jitgate-notify-outcomes", daemon=True)
        self._reader.start()

    def _send(self, row: OutboxRow, claimed_at: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        # The child checks the lease against the claim's wall-clock time (a row may wait in the pipe).
        line = json.dumps({"row": asdict(row), "claimed": time.time() - (time.monotonic() - claimed_at)},
                          separators=(",", ":"))
        with self._write_lock:
            self._rows[row.id] = row
            try:
                self.proc.stdin.write((line + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                # The child is gone: the row stays claimed and is due again after its lease.
                self._rows.pop(row.id, None)
                log.error("notification sender process is gone; %s waits in the outbox", row.key)

    def _read_outcomes(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                got = json.loads(line)
                if got.get("ready"):
                    if not self.notifier.running and not self._stopping:
                        self.notifier.start()
                    continue
                with self._write_lock:
                    row = self._rows.pop(int(got["id"]))
            except (ValueError, KeyError):
                log.error("notification sender process wrote an unreadable line")
                continue
            self.notifier.report(Outcome(row, got["state"], got.get("error", ""), got.get("next_us")))
        if self._stopping:
            return
        # The child died on its own: what it held is due again now, and a new child takes over.
        code = proc.wait()
        log.error("notification sender process exited (%s); starting a new one", code)
        with self._write_lock:
            lost, self._rows = list(self._rows.values()), {}
        for row in lost:
            self.notifier.report(Outcome(row, "pending", "the sender process exited", 0))
        time.sleep(RESPAWN_PAUSE)
        if not self._stopping:
            self._spawn()

    def stop(self) -> None:
        self._stopping = True
        self.notifier.stop_claiming()
        if self.proc is not None:
            with self._write_lock:
                try:
                    if self.proc.stdin is not None:
                        self.proc.stdin.close()  # EOF: the child finishes its sends in flight and exits
                except OSError:
                    pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("notification sender did not stop in %.0fs; killed (its messages are sent again "
                            "after their lease)", STOP_TIMEOUT)
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        self.notifier.stop()  # records the outcomes that came back


def run_child(spec: SenderSpec, rows: IO[bytes], out: IO[bytes]) -> int:
    """The child: a Deliverer over its own store and policy holder, fed rows on `rows` until EOF."""
    from controlplane.identity import DataDir
    from controlplane.notify.config import parse_notify
    from controlplane.notify.directory import directory_lookup
    from controlplane.notify.worker import Deliverer
    from controlplane.policy_watch import PolicyHolder
    from controlplane.server import open_core

    try:
        os.nice(NICE)
    except OSError:
        pass
    holder = PolicyHolder.load(Path(spec.policies))
    # With sign-in on, the server's policies hold the signed-in people (controlplane/signin/
    # directory.py); the sender must see them too, or an approver known only by sign-in is
    # never told. They come from the store: the sign-ins happen in the server's process.
    policies: Any = holder
    if spec.people:
        from controlplane.signin.directory import StoredPeopleDirectory
        from controlplane.store import people as people_store

        def read_people() -> list[tuple[str, tuple[str, ...]]]:
            with core.ledger.store.read() as tx:
                return [(p.name, p.groups) for p in people_store.all_people(tx.conn)]

        policies = StoredPeopleDirectory(holder, read_people)
    # The server's store (PostgreSQL with --store): its URL comes in the environment, not argv
    # (a password in it would show in `ps`).
    core = open_core(DataDir(Path(spec.data_dir)), policies, None, with_recommender=spec.recommender,
                     recommend_coverage=spec.recommend_coverage, store=os.environ.get(STORE_ENV) or None)
    if core.history.recommender is not None:
        core.history.recommender.warm()  # load the model now, not in the middle of a first send
    deliverer = Deliverer(core, parse_notify(spec.notify), email_of=directory_lookup(core.ledger.store))
    holder.start_watching(1.0)
    out_lock = threading.Lock()

    def done(o: Outcome) -> None:
        line = json.dumps({"id": o.row.id, "state": o.state, "error": o.error, "next_us": o.next_us})
        with out_lock:
            try:
                out.write((line + "\n").encode())
                out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the server is gone: the row is sent again after its lease

    with out_lock:
        out.write(b'{"ready": true}\n')
        out.flush()
    try:
        for line in rows:
            if len(line) > MAX_LINE:
                continue
            try:
                got = json.loads(line)
                row = OutboxRow(**got["row"])
                claimed_at = time.monotonic() - max(0.0, time.time() - float(got["claimed"]))
            except (ValueError, TypeError, KeyError):
                log.error("notification sender: an unreadable row from the server")
                continue
            deliverer.submit(row, claimed_at, done)
    finally:
        deliverer.close()
        holder.stop()
        core.ledger.store.close()
    return 0


def main(argv: list[str]) -> int:
    level = os.environ.get("JITGATE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [notify-sender] %(message)s")
    spec = SenderSpec(**json.loads(argv[1]))
    return run_child(spec, sys.stdin.buffer, sys.stdout.buffer)
