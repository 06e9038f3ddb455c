"""The expiry sweeper: one thread that sleeps until the next deadline.

No polling interval: it asks the core for the next deadline (a grant's
`expires_at` or a pending request's timeout), waits on a condition until then,
and is woken early by a committed change whose deadline comes sooner than the one
it waits for (a change with a later deadline, or none, cannot need an earlier sweep:
under load that is nearly every change, and each sweep is a write transaction). It
sweeps once at start, so grants that expired while the server was down end at once.

A few seconds before a deadline (PREPARE_LEAD) it has the grants due then built as they will
be once expired (controlplane/prepared.py), in a thread of its own so the sweep never waits
for it: a mass expiry then publishes its events at once. Planes that do not hold the sweeper
lease prepare too, for their event tail (controlplane/scaleout/tailer.py).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from controlplane.core import AccessCore, utcnow
from controlplane.model import ACTIVE, PENDING, Change

log = logging.getLogger("jitgate.sweeper")

MAX_SLEEP = 3600.0       # re-check at least hourly (e.g. after the wall clock jumps)
ERROR_BACKOFF = 1.0      # a failed sweep (database busy) is retried after this many seconds
EARLY_WAKE_SLACK = timedelta(milliseconds=1)
PREPARE_LEAD = 3.0       # seconds before a deadline to build the records it will end
PREPARE_MIN = 0.5        # not when the deadline is nearer: the sweep comes first


class Sweeper:
    """Ends grants at their deadline. `start()` runs one sweep before returning."""

    def __init__(self, core: AccessCore, clock: Callable[[], datetime] = utcnow,
                 gate: Callable[[], bool] | None = None) -> None:
        self.core = core
        self.clock = clock
        # Several planes on one store: sweep only while `gate()` says so (the sweeper lease,
        # controlplane/scaleout/lease.py); otherwise ask again after ERROR_BACKOFF.
        self.gate = gate
        self._cond = threading.Condition()
        self._dirty = False
        # The earliest deadline among changes published since the current sweep began
        # (None: none), and the instant the thread waits for (None: no deadline known).
        self._announced: datetime | None = None
        self._target: datetime | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.sweeps = 0
        self._prepared_until: datetime | None = None  # the deadlines prepared for (up to)
        self._preparing: threading.Thread | None = None

    def start(self) -> None:
        """Sweep once (overdue grants end now), then keep sweeping in a daemon thread."""
        self._unsubscribe = self.core.ledger.subscribe(self._on_change)
        first = self._sweep_once()
        self._thread = threading.Thread(target=self._run, args=(first,), name="jitgate-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """Wake the thread to look at the deadlines again."""
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def _on_change(self, change: Change) -> None:
        # Only changes that can add or move a deadline matter; the sweeper's own
        # expiry events would only wake it for nothing.
        if change.type in ("grant.expired", "request.timed_out", "extension.cancelled"):
            return
        rec = change.request
        if rec is None:
            return
        deadline = rec.expires_at if rec.state == ACTIVE else rec.pending_deadline if rec.state == PENDING else None
        if deadline is None:
            return  # ended or refused: no deadline of its own (waking early for an old one is harmless)
        with self._cond:
            if self._announced is None or deadline < self._announced:
                self._announced = deadline
            if self._target is None or deadline < self._target:
                self._cond.notify_all()

    def _prepare_in(self, target: datetime | None) -> float | None:
        """Seconds until the records due at `target` should be prepared (<= 0: now); None when
        there is nothing to prepare (prepared already, being prepared, or too late)."""
        if target is None or (self._prepared_until is not None and target <= self._prepared_until):
            return None
        if self._preparing is not None and self._preparing.is_alive():
            return None
        lead = (target - self.clock()).total_seconds()
        return None if lead < PREPARE_MIN else lead - PREPARE_LEAD

    def _prepare_ahead(self, target: datetime | None) -> float | None:
        """Start preparing `target`'s records if it is time; else the seconds until it is (None: never)."""
        wait = self._prepare_in(target)
        if wait is None or wait > 0 or target is None:
            return wait
        until = target + timedelta(seconds=PREPARE_LEAD)  # the deadlines soon after it too
        self._prepared_until = until
        self._preparing = threading.Thread(target=self._prepare, args=(until,), name="jitgate-prepare", daemon=True)
        self._preparing.start()
        return None

    def _prepare(self, until: datetime) -> None:
        try:
            self.core.grants.prepared.prepare(until)
        except Exception:  # only an optimization: the sweep builds what is not prepared
            log.warning("preparing the expiries due by %s failed", until, exc_info=True)

    def _sweep_once(self) -> datetime | bool | None:
        try:
            if self.gate is not None and not self.gate():
                # Another plane sweeps; this plane's event tail publishes what it ends (prepared
                # here too). Ask again after ERROR_BACKOFF.
                self._prepare_ahead(self.core.grants.next_deadline())
                return False
            self.sweeps += 1
            # A lock is placed and its grants ended in two transactions: grants left ACTIVE under a
            # lock in force (the plane stopped in between) end here, at the latest on the next start.
            self.core.locks.end_locked_grants()
            return self.core.grants.sweep()
        except Exception:
            log.exception("sweep failed; retrying")
            return False  # retry after ERROR_BACKOFF

    def _run(self, nxt: datetime | bool | None) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._dirty:
                    if nxt is False:
                        target, timeout = None, ERROR_BACKOFF
                    else:
                        found = [d for d in (nxt, self._announced) if isinstance(d, datetime)]
                        target = min(found) if found else None
                        timeout = MAX_SLEEP if target is None else \
                            min(MAX_SLEEP, (target - self.clock() + EARLY_WAKE_SLACK).total_seconds())
                    if timeout <= 0:
                        break
                    self._target = target
                    prepare_in = self._prepare_ahead(target) if nxt is not False else None
                    # Until then (or the hourly re-check, or the error back-off): sweep. Woken
                    # sooner by an earlier deadline or a poke: look again; to prepare: prepare, look again.
                    if prepare_in is not None and prepare_in < timeout:
                        if not self._cond.wait(max(prepare_in, 0.0)) and not self._stopping:
                            continue
                    elif not self._cond.wait(timeout) or nxt is False:
                        break
                if self._stopping:
                    return
                # The sweep below sees every change committed before this point; later ones announce again.
                self._dirty = False
                self._announced = None
                self._target = None
            nxt = self._sweep_once()
