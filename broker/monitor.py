"""One monitor per live session: deadline, grace warning, extension, revocation, shutdown.

A `SessionMonitor` runs one asyncio task that sleeps until the next point in
time (the warning `grace_period` before the deadline, then the deadline) or
until it is woken by an extension, a revocation or a shutdown. It never does
I/O itself: it calls `on_warning(line)` once per deadline, `on_extended(line)`
when the deadline moves, and `on_cut(Cut)` exactly once when the session must
end. The clock is injected (`SystemClock`, or `FakeClock` in tests), so tests
advance time instead of sleeping.

A `MonitorHub` holds the monitors of one broker by grant id and applies the
control plane's event stream (`broker.cpclient.GrantChange`) and its
re-syncs to them; while the stream is down the watcher asks for the grants in
`grant_ids()` directly and applies the answers the same way. It remembers grants it saw end, so a revocation that races
with a session's start still cuts it (subscribe first, then check state).
Deadlines are enforced by each monitor's own timer, with or without the
control plane.

    hub = MonitorHub(SystemClock())
    mon = hub.start_monitor(session_id, grant_id, resource, expires_at, grace,
                            on_warning=..., on_cut=...)
    ... mon.close()   # the session ended by itself
"""
from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import inspect
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from broker.cpclient import GrantChange, LockChange
from jitgate.text import visible

log = logging.getLogger(__name__)

EXPIRED = "expired"
REVOKED = "revoked"
BROKER_SHUTDOWN = "broker_shutdown"

# How many ended grants the hub remembers for the start-of-session race.
_ENDED_MEMORY = 10_000
# A monitor whose deadline the hub's timer watches (`MonitorHub._deadline_pass`) wakes this much
# later by its own timer, as a fallback: the hub's pass is then the one that starts its cut.
_HUB_FALLBACK = dt.timedelta(milliseconds=100)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Clock(Protocol):
    """Time as the monitors see it."""

    def now(self) -> dt.datetime: ...

    async def sleep_until(self, when: dt.datetime) -> None: ...


class SystemClock:
    """The real clock (aware UTC)."""

    def now(self) -> dt.datetime:
        return utcnow()

    async def sleep_until(self, when: dt.datetime) -> None:
        delay = (when - utcnow()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)

    def call_at(self, when: dt.datetime, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Run `callback` on the loop at `when` (a monitor's deadline): one timer handle, no task."""
        return asyncio.get_running_loop().call_later(max(0.0, (when - utcnow()).total_seconds()), callback)


class FakeClock:
    """A clock that only moves when told to (`advance`); for tests."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        self._sleepers: list[tuple[dt.datetime, asyncio.Future[None]]] = []

    def now(self) -> dt.datetime:
        return self._now

    async def sleep_until(self, when: dt.datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((when, fut))
        try:
            await fut
        finally:
            self._sleepers = [(w, f) for (w, f) in self._sleepers if f is not fut]

    def advance(self, seconds: float | dt.timedelta) -> None:
        """Move time forward and wake every sleeper whose time has come."""
        step = seconds if isinstance(seconds, dt.timedelta) else dt.timedelta(seconds=seconds)
        self._now += step
        for when, fut in list(self._sleepers):
            if when <= self._now and not fut.done():
                fut.set_result(None)


@dataclass(frozen=True)
class Cut:
    """Why and when a session is being cut, and the line to show the user."""

    reason: str  # "expired", "revoked", "broker_shutdown"
    message: str
    at: dt.datetime


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_remaining(delta: dt.timedelta) -> str:
    seconds = max(0, round(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


async def _call(callback: Callable[..., Awaitable[None] | None] | None, *args: object) -> None:
    if callback is None:
        return
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a failing callback must not stop the deadline
        log.exception("session monitor callback failed")


class SessionMonitor:
    """Watches one session's deadline; see the module doc."""

    def __init__(self, *, session_id: str, grant_id: str, resource: str, expires_at: dt.datetime,
                 grace_period: dt.timedelta, clock: Clock,
                 on_cut: Callable[[Cut], Awaitable[None] | None],
                 on_warning: Callable[[str], Awaitable[None] | None] | None = None,
                 on_extended: Callable[[str], Awaitable[None] | None] | None = None,
                 user: str = "", login: str = "",
                 on_cut_now: Callable[[Cut], None] | None = None) -> None:
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be an aware datetime")
        self.session_id = session_id
        self.grant_id = grant_id
        self.resource = resource
        self.user = user  # whose session, and as which login or role: what a lock matches
        self.login = login
        self.clock = clock
        self._deadline = expires_at
        self._grace = max(grace_period, dt.timedelta(0))
        self._on_cut = on_cut
        self._on_warning = on_warning
        self._on_extended = on_extended
        # The synchronous first part of a cut (the user's line and channel close), run by a pass
        # that cuts many sessions at once (`MonitorHub.apply_lock`) before `on_cut` does the rest.
        self._on_cut_now = on_cut_now
        # Set by a hub whose timer watches this deadline: told when it moves.
        self.on_deadline_moved: Callable[[SessionMonitor], None] | None = None
        self._warned = False
        self._pending: Cut | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self._waiter: asyncio.Future[None] | None = None  # the current sleep, on a clock with `call_at`
        self._task: asyncio.Task[None] | None = None
        self.cut: Cut | None = None  # set once the session was cut
        self._done = asyncio.Event()

    @property
    def deadline(self) -> dt.datetime:
        return self._deadline

    @property
    def warned(self) -> bool:
        return self._warned

    def start(self) -> SessionMonitor:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"monitor-{self.session_id}")
        return self

    # -------------------------------------------------------- inputs

    def extend(self, expires_at: dt.datetime) -> None:
        """Move the deadline (an extension, or a correction from the control plane)."""
        if self._closed or self._pending or expires_at == self._deadline:
            return
        log.debug("session %s: deadline %s -> %s", self.session_id, self._deadline, expires_at)
        later = expires_at > self._deadline
        self._deadline = expires_at
        if self.on_deadline_moved is not None:
            self.on_deadline_moved(self)
        if expires_at - self.clock.now() > self._grace:
            self._warned = False  # warn again before the new deadline
        if later and self._on_extended is not None:
            line = f"jitgate: access to {self.resource} extended until {format_time(expires_at)}"
            asyncio.get_running_loop().create_task(_call(self._on_extended, line))
        self._wake_up()

    def revoke(self, reason: str = "") -> None:
        """Cut now: the grant was revoked."""
        # An admin's words reach the user's terminal: shown literally, never as escapes it acts on.
        detail = f" ({visible(reason)})" if reason else ""
        self._request_cut(REVOKED, f"jitgate: access to {self.resource} was revoked{detail}; closing the session")

    def revoke_at_once(self, reason: str = "") -> None:
        """Cut now as revoked, and start the cut in this call (`on_cut_now`) rather than in this
        monitor's task: a lock's pass starts hundreds of cuts in one go (measured, 500 sessions:
        the last cut started ~100-150 ms after the first when each waited for its task's turn)."""
        if self._closed or self._pending is not None:
            return
        self.revoke(reason)
        self._start_cut_now()

    def expire_at_once(self, late: bool = False) -> None:
        """Cut now as expired and start the cut in this call (`on_cut_now`): the hub's pass over
        every session whose deadline has come (`MonitorHub`), or the control plane's word that the
        grant expired (`late`: the line then says when the broker learned it)."""
        if self._closed or self._pending is not None:
            return
        now = self.clock.now()
        self._request_cut(EXPIRED, self._expired_line(now if late else min(now, self._deadline)))
        self._start_cut_now()

    def _start_cut_now(self) -> None:
        if self._on_cut_now is not None and self._pending is not None:
            try:
                self._on_cut_now(self._pending)
            except Exception:  # the task's `on_cut` still cuts
                log.exception("session monitor callback failed")

    def expire_now(self) -> None:
        """Cut now as expired (the control plane ended the grant at its deadline)."""
        self._request_cut(EXPIRED, self._expired_line(self.clock.now()))

    def shutdown(self) -> None:
        """Cut now: the broker is stopping."""
        self._request_cut(BROKER_SHUTDOWN, "jitgate: the broker is shutting down; closing the session")

    @property
    def live(self) -> bool:
        """Not cut (nor being cut) and not closed."""
        return not self._closed and self._pending is None

    def close(self) -> None:
        """The session ended by itself: stop watching, no cut."""
        self._closed = True
        self._wake_up()

    async def wait(self) -> Cut | None:
        """Until the monitor stops; the Cut if the session was cut."""
        await self._done.wait()
        return self.cut

    # -------------------------------------------------------- loop

    def _expired_line(self, at: dt.datetime) -> str:
        return f"jitgate: access to {self.resource} expired at {format_time(at)}; closing the session"

    def _request_cut(self, reason: str, message: str) -> None:
        if self._closed or self._pending is not None:
            return
        self._pending = Cut(reason, message, self.clock.now())
        self._wake_up()

    def _wake_up(self) -> None:
        self._wake.set()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, until: dt.datetime) -> None:
        call_at = getattr(self.clock, "call_at", None)
        if call_at is not None:
            # Measured (500 monitors, one deadline, a loaded 2-core machine): two tasks per sleep
            # (the clock's and the Event's) plus asyncio.wait cost the last monitor ~30 ms before
            # it even started its cut; one future resolved by a timer handle or a wake-up is cheaper.
            if self._wake.is_set():
                self._wake.clear()
                return
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            def ring() -> None:
                if not waiter.done():
                    waiter.set_result(None)

            handle = call_at(until, ring)
            try:
                await waiter
            finally:
                handle.cancel()
                self._waiter = None
            self._wake.clear()
            return
        sleeper = asyncio.ensure_future(self.clock.sleep_until(until))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        self._wake.clear()

    async def _run(self) -> None:
        try:
            while not self._closed:
                if self._pending is not None:
                    await self._do_cut(self._pending)
                    return
                now = self.clock.now()
                if now >= self._deadline:
                    await self._do_cut(Cut(EXPIRED, self._expired_line(self._deadline), now))
                    return
                warn_at = self._deadline - self._grace
                if not self._warned and now >= warn_at and self._grace:
                    self._warned = True
                    left = format_remaining(self._deadline - now)
                    await _call(self._on_warning,
                                f"jitgate: access to {self.resource} ends at {format_time(self._deadline)} "
                                f"(in {left}); ask for more time: jitgate extend {self.grant_id}")
                    continue
                if self._warned or not self._grace:
                    fallback = _HUB_FALLBACK if self.on_deadline_moved is not None else dt.timedelta(0)
                    await self._sleep(self._deadline + fallback)
                else:
                    await self._sleep(warn_at)
        finally:
            self._done.set()

    async def _do_cut(self, cut: Cut) -> None:
        self.cut = cut
        self._closed = True
        await _call(self._on_cut, cut)


class MonitorHub:
    """The monitors of one broker, by grant; fed by the control plane's event stream."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._by_grant: dict[str, set[SessionMonitor]] = {}
        self._ended: OrderedDict[str, GrantChange] = OrderedDict()
        self._last_seq: dict[str, int] = {}
        self._expires: dict[str, dt.datetime] = {}
        # Told of every monitor that ended with a cut (broker/metrics.py: cut lateness), or None.
        self.cut_observer: Callable[[SessionMonitor], None] | None = None
        # Deadlines, earliest first, for one pass that starts every due cut (see `_deadline_pass`);
        # entries of monitors that ended or moved their deadline are dropped when they come up.
        self._deadlines: list[tuple[dt.datetime, int, SessionMonitor]] = []
        self._order = itertools.count()
        self._deadline_timer: Any = None
        self._deadline_timer_at: dt.datetime | None = None

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_grant.values())

    def grant_ids(self) -> list[str]:
        """The grants with live sessions (what the watcher asks for while its stream is down)."""
        return list(self._by_grant)

    def monitors(self, grant_id: str | None = None) -> list[SessionMonitor]:
        if grant_id is not None:
            return list(self._by_grant.get(grant_id, ()))
        return [m for ms in self._by_grant.values() for m in ms]

    def start_monitor(self, *, session_id: str, grant_id: str, resource: str, expires_at: dt.datetime,
                      grace_period: dt.timedelta,
                      on_cut: Callable[[Cut], Awaitable[None] | None],
                      on_warning: Callable[[str], Awaitable[None] | None] | None = None,
                      on_extended: Callable[[str], Awaitable[None] | None] | None = None,
                      user: str = "", login: str = "",
                      on_cut_now: Callable[[Cut], None] | None = None) -> SessionMonitor:
        """Create, register and start a monitor; it leaves the hub when it stops."""
        mon = SessionMonitor(session_id=session_id, grant_id=grant_id, resource=resource,
                             expires_at=expires_at, grace_period=grace_period, clock=self.clock,
                             on_cut=on_cut, on_warning=on_warning, on_extended=on_extended, user=user, login=login,
                             on_cut_now=on_cut_now)
        self._by_grant.setdefault(grant_id, set()).add(mon)
        # Registered first, then checked against what the stream already said
        # (Teleport's order): a revocation or extension seen just before this
        # session existed still applies to it.
        ended = self._ended.get(grant_id)
        if ended is not None:
            self._apply_to(mon, ended)
        elif grant_id in self._expires and self._expires[grant_id] > expires_at:
            mon.extend(self._expires[grant_id])
        self._add_deadline(mon)
        mon.start()
        asyncio.get_running_loop().create_task(self._forget_when_done(mon))
        return mon

    # -------------------------------------------------------- deadlines: one pass for all that are due

    def _add_deadline(self, mon: SessionMonitor) -> None:
        """Put `mon`'s deadline on the hub's timer (a clock without `call_at`, e.g. the tests'
        FakeClock, leaves deadlines to each monitor's own task)."""
        if getattr(self.clock, "call_at", None) is None or not mon.live:
            return
        mon.on_deadline_moved = self._add_deadline
        heapq.heappush(self._deadlines, (mon.deadline, next(self._order), mon))
        self._arm()

    def _arm(self) -> None:
        if not self._deadlines:
            return
        first = self._deadlines[0][0]
        if self._deadline_timer is not None:
            if self._deadline_timer_at is not None and self._deadline_timer_at <= first:
                return
            self._deadline_timer.cancel()
        self._deadline_timer_at = first
        self._deadline_timer = self.clock.call_at(first, self._deadline_pass)  # type: ignore[attr-defined]

    def _deadline_pass(self) -> None:
        """Start the cut of every session whose deadline has come, in this one call: grants that
        end in the same second come due together, and each cut's line and channel close go out
        before any of their bookkeeping (each monitor's own timer would start them one task at
        a time, behind whatever else the loop had queued). Each monitor's task then finishes its
        cut; its own timer stays as the fallback."""
        self._deadline_timer = self._deadline_timer_at = None
        now = self.clock.now()
        due: list[SessionMonitor] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, mon = heapq.heappop(self._deadlines)
            if mon.live and mon.deadline <= now:  # (moved: its new deadline has an entry of its own)
                due.append(mon)
        for mon in due:
            mon.expire_at_once()
        if len(self._deadlines) > 64 and len(self._deadlines) > 2 * len(self):
            # Sessions that ended long before their deadline: drop their entries.
            self._deadlines = [e for e in self._deadlines if e[2].live]
            heapq.heapify(self._deadlines)
        self._arm()

    async def _forget_when_done(self, mon: SessionMonitor) -> None:
        await mon.wait()
        if mon.cut is not None and self.cut_observer is not None:
            self.cut_observer(mon)
        group = self._by_grant.get(mon.grant_id)
        if group is not None:
            group.discard(mon)
            if not group:
                del self._by_grant[mon.grant_id]

    def apply(self, change: GrantChange) -> None:
        """Apply one change of a grant (from WatchEvents) to its live sessions."""
        if change.seq and change.seq < self._last_seq.get(change.grant_id, 0):
            return  # older than what we already applied
        if change.seq:
            self._last_seq[change.grant_id] = change.seq
        if change.active:
            if change.expires_at is not None and change.expires_at > self._expires.get(
                change.grant_id, change.expires_at - dt.timedelta(1)
            ):
                self._expires[change.grant_id] = change.expires_at
        elif change.state in ("REVOKED", "EXPIRED", "CANCELLED", "DENIED", "TIMED_OUT"):
            self._expires.pop(change.grant_id, None)
            self._ended[change.grant_id] = change
            self._ended.move_to_end(change.grant_id)
            while len(self._ended) > _ENDED_MEMORY:
                self._ended.popitem(last=False)
        for mon in self.monitors(change.grant_id):
            self._apply_to(mon, change, at_once=True)

    def apply_lock(self, lock: LockChange) -> None:
        """A lock was placed: cut every session under it now, from this one event (the control
        plane also revokes each grant under it; those events then find the sessions cut)."""
        cut = 0
        for mon in self.monitors():
            if mon.user and lock.matches(mon.user, mon.resource, mon.login):
                mon.revoke_at_once(f"locked by {lock.created_by}: {lock.reason}")
                cut += 1
        log.info("lock on %s %r by %s: cutting %d sessions", lock.target, lock.value, lock.created_by, cut)

    def sync(self, snapshot: dict[str, GrantChange]) -> None:
        """Apply a full snapshot of live grants (after a (re)connect).

        A monitored grant missing from the snapshot is no longer live: its
        sessions are cut, as expired if its deadline passed, else as revoked.
        """
        for change in snapshot.values():
            self.apply(change)
        now = self.clock.now()
        for grant_id in list(self._by_grant):
            if grant_id in snapshot:
                continue
            for mon in self.monitors(grant_id):
                if now >= mon.deadline:
                    mon.expire_now()
                else:
                    mon.revoke("the grant is no longer active")

    def shutdown(self) -> None:
        """Cut every live session (broker shutdown)."""
        for mon in self.monitors():
            mon.shutdown()

    async def wait_all(self, timeout: float | None = None) -> None:
        """Until every monitor stopped (after `shutdown`)."""
        mons = self.monitors()
        if mons:
            await asyncio.wait_for(asyncio.gather(*(m.wait() for m in mons)), timeout)

    def _apply_to(self, mon: SessionMonitor, change: GrantChange, at_once: bool = False) -> None:
        """Apply `change` to `mon`; `at_once`: start a cut in this call (a batch of events from
        the stream is then one pass of cuts), else in the monitor's task."""
        if change.active:
            # Deadlines only move later: an ACTIVE grant is never shortened (revocation and
            # expiry are state changes), and an event may carry a request state read before
            # an extension committed (seen: `credential.upstream_issued` after `grant.extended`).
            if change.expires_at is not None and change.expires_at > mon.deadline:
                mon.extend(change.expires_at)
        elif change.state == "EXPIRED":
            mon.expire_at_once(late=True) if at_once else mon.expire_now()
        elif change.state == "PENDING":
            return
        elif at_once:
            mon.revoke_at_once(change.message)
        else:
            mon.revoke(change.message)
