"""Whether this broker knows the lock state well enough to open new sessions (fail closed).

A lock reaches a broker as the revocation of the grants under it, through the
event stream or, while the stream is broken, through the re-sync that asks for
each live grant (`broker.cpclient.EventWatcher`). The broker knows the lock
state while its event stream is up, and for `stale_after` seconds after it last
heard the control plane answer (a `ListLocks` poll every `poll_interval` while the
stream is down). Past that it refuses new sessions with `lock.stale`, saying why;
live sessions keep running to their own deadlines (the broker's timers hold
those without the control plane).

At start the broker has `stale_after` to connect before it refuses.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from broker.cpclient import ControlPlaneError

log = logging.getLogger(__name__)

DEFAULT_STALE_AFTER = 60.0  # seconds without learning the lock state before new sessions are refused
DEFAULT_POLL_INTERVAL = 2.0  # ListLocks while the event stream is down


class LockSource(Protocol):
    async def list_locks(self) -> list[Any]: ...


class LockState:
    """The age of what this broker knows about locks, and the gate on new sessions."""

    def __init__(self, stale_after: float = DEFAULT_STALE_AFTER, poll_interval: float = DEFAULT_POLL_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if stale_after <= 0 or poll_interval <= 0:
            raise ValueError("the lock staleness bound and poll interval must be positive")
        self.stale_after = stale_after
        self.poll_interval = poll_interval
        self._clock = clock
        self._learned_at = clock()
        self._stream_up = False
        self.locks: list[Any] = []  # the last list polled (for logs and tests)

    def stream(self, up: bool) -> None:
        """The event stream came up (synced) or went down."""
        if self._stream_up and not up:
            self._learned_at = self._clock()  # it knew until now
        self._stream_up = up
        if up:
            self._learned_at = self._clock()

    def learned(self) -> None:
        self._learned_at = self._clock()

    def age(self) -> float:
        """Seconds since the lock state was last known (0 while the stream is up)."""
        return 0.0 if self._stream_up else max(0.0, self._clock() - self._learned_at)

    @property
    def stale(self) -> bool:
        return self.age() > self.stale_after

    def check(self) -> None:
        """Refuse a new session (`lock.stale`, as the control plane's refusal would come) when stale."""
        if self.stale:
            raise ControlPlaneError(
                "UNAVAILABLE",
                f"this broker has not been able to learn the lock state for {self.age():.0f} s "
                f"(limit {self.stale_after:.0f} s); new sessions are refused until it can reach the control plane",
                unavailable=True, reason="lock.stale")

    async def poll(self, source: LockSource) -> None:
        """While the stream is down, ask for the locks every `poll_interval`; an answer is fresh state."""
        while True:
            if not self._stream_up:
                try:
                    self.locks = await source.list_locks()
                    self.learned()
                except ControlPlaneError as exc:
                    log.debug("lock state poll failed: %s", exc)
                except Exception:
                    log.exception("lock state poll failed")
            await asyncio.sleep(self.poll_interval)


__all__ = ["DEFAULT_POLL_INTERVAL", "DEFAULT_STALE_AFTER", "LockState"]
