"""The notification sender as its own process, started by `jitgate server`.

Why a process: sending is Python work (TLS, HTTP, SMTP, rendering) and the control plane's
request path is bound by one interpreter lock; in the same process every message sent took
time from decisions (measured: 0.15x request throughput with notifications on). As a child
at a lower CPU priority (`nice`), it has its own interpreter, and under a full CPU the
kernel serves decisions first; messages wait in the outbox meanwhile, nothing is lost.

The server keeps the planner (rows written in each change's transaction) and wakes the child
through its stdin, one byte per relevant commit (never blocking: a full pipe means the child
is awake anyway). The child opens the same store and policies, and exits when its stdin
closes: on the server's stop (after the sends in flight), or when the server was killed.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane.model import Change
from controlplane.notify.worker import WAKE_TYPES

log = logging.getLogger("jitgate.notify")

NICE = 19  # the sender's CPU priority: the lowest; decisions are served first when the CPU is full
STOP_TIMEOUT = 15.0  # seconds the server waits for the child to finish its sends in flight


@dataclass(frozen=True)
class SenderSpec:
    """What the child needs to open the same store and policies (no secret: those stay env:/file:)."""

    data_dir: str
    policies: str
    notify: dict[str, Any]
    recommender: bool
    recommend_coverage: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


class SenderProcess:
    """The server's side: start the child, wake it after commits, stop it."""

    def __init__(self, spec: SenderSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._lock = threading.Lock()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane.notify.child", self.spec.to_json()],
            stdin=subprocess.PIPE, stdout=None, stderr=None, close_fds=True)
        assert self.proc.stdin is not None
        self._fd = self.proc.stdin.fileno()
        os.set_blocking(self._fd, False)

    def on_change(self, change: Change) -> None:
        """A ledger listener: wake the child when a change may owe a message."""
        if change.type in WAKE_TYPES:
            self.wake()

    def wake(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.write(self._fd, b".")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups: the child will look anyway
            except OSError:
                log.warning("notification sender is gone; messages wait in the outbox until the server restarts")
                self._fd = -1

    def stop(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
        if self.proc is None:
            return
        if fd >= 0 and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # EOF: the child finishes its sends in flight and exits
            except OSError:
                pass
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("notification sender did not stop in %.0fs; killed (its messages are sent after restart)",
                        STOP_TIMEOUT)
            self.proc.kill()
            self.proc.wait()


def run_child(spec: SenderSpec, stdin_read: Callable[[], bytes] | None = None) -> int:
    """The child: a Notifier over its own store and policy holder, woken by stdin, until EOF."""
    from controlplane.identity import DataDir
    from controlplane.notify.config import parse_notify
    from controlplane.notify.worker import Notifier
    from controlplane.policy_watch import PolicyHolder
    from controlplane.server import open_core

    try:
        os.nice(NICE)
    except OSError:
        pass
    holder = PolicyHolder.load(Path(spec.policies))
    core = open_core(DataDir(Path(spec.data_dir)), holder, None, with_recommender=spec.recommender,
                     recommend_coverage=spec.recommend_coverage)
    notifier = Notifier(core, parse_notify(spec.notify))
    if core.history.recommender is not None:
        core.history.recommender.warm()  # load the model now, not in the middle of a first send
    holder.start_watching(1.0)
    notifier.start()
    read = stdin_read or (lambda: os.read(0, 4096))
    try:
        while True:
            data = read()
            if not data:
                break  # the server closed the pipe or died
            notifier.wake()
    finally:
        notifier.stop()
        holder.stop()
        core.ledger.store.close()
    return 0


def main(argv: list[str]) -> int:
    level = os.environ.get("JITGATE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s [notify-sender] %(message)s")
    spec = SenderSpec(**json.loads(argv[1]))
    return run_child(spec)

