"""Refused logins before authentication: audited per source and window, and slowed down.

One rule for both brokers (SSH and PostgreSQL), so a flood of refused logins
from one address costs the audit log a handful of events, not one per attempt:

    gate = RefusalGate("postgres", RefusalLimits(), send=report)   # send(RefusalReport) -> awaitable
    gate.start()                                  # flushes ended windows in the background
    ...
    await gate.tarpit(peer)                       # a failing source waits before its refusal is answered
    gate.refused(peer, code, user, resource, message)
    ...
    await gate.stop()                             # what is still counted goes out

Per source (an IPv4 address, or an IPv6 /64: one host usually holds a whole
/64). A source's streak lasts until it has been quiet for a whole window
(`RefusalLimits.window`):

- the first `report_first` refusals of a streak are audited one by one (text
  truncated);
- the rest are counted and sent as one aggregate per window, when it ends:
  the count, refusals per code, the first and last time, a few truncated
  user names tried. A steady flood is thus one event per source and window;
- the tarpit: once a source has failed `free_failures` times (since it was
  last quiet for a whole window), each refusal it gets waits
  `delay_base * 2**k` seconds, at most `delay_max`, before it is answered.
  Only refusals wait: a good login from the same address is answered at
  once, and other sources never wait;
- memory is bounded: at most `max_sources` sources are tracked (the least
  recently failing one is dropped, its count folded into one overflow
  aggregate), and at most `max_delayed` refusals wait in the tarpit at once
  (beyond that a refusal is answered at once, so the tarpit cannot hold
  the broker's sockets).

`RefusalLimiter` is the sans-I/O core (an injected clock, no tasks); `RefusalGate`
adds the sending, the window timer and the sleep.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Marks where a text was cut, with how much was left out.
_CUT = "…(+{} chars)"
# The source key of the aggregate that collects sources dropped from a full table.
OVERFLOW_SOURCE = "(sources past the tracked limit)"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with a mark saying how many were left out."""
    return text if len(text) <= limit else text[:limit] + _CUT.format(len(text) - limit)


def source_of(client_address: str) -> str:
    """The source a refusal counts against: the IP of `host:port`, an IPv6 address's /64.

    An address that does not parse (a unix socket, a test double) is its own source, truncated.
    """
    host = client_address
    if client_address.startswith("["):
        host = client_address[1:].partition("]")[0]
    elif client_address.count(":") == 1:
        host = client_address.partition(":")[0]
    elif client_address.count(":") > 1:
        head, _, tail = client_address.rpartition(":")
        host = head if tail.isdigit() and _is_ip(head) else client_address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return clip(host, 64)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class RefusalLimits:
    """How refusals before authentication are audited and slowed (checked when built)."""

    # Seconds one aggregate covers: a minute keeps a steady flood to one event per source
    # per minute while an operator still sees it within a minute.
    window: float = 60.0
    # Refusals per source audited one by one (until it is quiet for a window): a person's few
    # typos keep full detail.
    report_first: int = 3
    # Failures before the tarpit starts: OpenSSH allows 6 tries per connection (MaxAuthTries),
    # so a user whose agent offers a few plain keys first is never slowed.
    free_failures: int = 5
    # First tarpit delay, doubled per further failure: 0.25, 0.5, 1, 2, 3 s.
    delay_base: float = 0.25
    # Tarpit cap: a serial attacker gets at most ~20 tries a minute, far under the clients'
    # login timeouts (libpq's connect_timeout, the broker's own 30/60 s), so a slowed
    # refusal still arrives as a refusal.
    delay_max: float = 3.0
    # Sources tracked at once: ~1 KiB each with samples, so ~10 MiB at most.
    max_sources: int = 10_000
    # Refusals waiting in the tarpit at once: each holds a socket; past this they are
    # answered at once rather than let a flood hold the broker's file descriptors.
    max_delayed: int = 512
    # Characters of attacker-chosen text (user name, message) kept in a report.
    text_limit: int = 256
    # Distinct user names kept per aggregate, each cut to `sample_limit` characters.
    max_samples: int = 5
    sample_limit: int = 64
    # Distinct refusal codes counted per aggregate (there are about a dozen).
    max_codes: int = 32

    def __post_init__(self) -> None:
        if not self.window > 0:
            raise ValueError(f"refusal window must be positive, got {self.window}")
        if self.delay_base < 0 or self.delay_max < 0:
            raise ValueError("refusal delays must not be negative")
        for name in ("report_first", "free_failures", "max_samples", "max_delayed"):
            if getattr(self, name) < 0:
                raise ValueError(f"refusal limit `{name}` must not be negative")
        for name in ("max_sources", "text_limit", "sample_limit", "max_codes"):
            if getattr(self, name) < 1:
                raise ValueError(f"refusal limit `{name}` must be at least 1")


@dataclass(frozen=True)
class RefusalReport:
    """One audit event's worth of refusals: a single refusal (count 1) or a window's aggregate."""

    source: str
    client_address: str
    user: str
    resource: str
    code: str
    message: str
    count: int = 1
    first_at: float = 0.0  # wall-clock seconds
    last_at: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)
    samples: tuple[str, ...] = ()


@dataclass
class _Aggregate:
    """Refusals of one source not audited one by one (the first one's details kept)."""

    first: RefusalReport
    count: int = 0
    last_at: float = 0.0
    codes: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def add(self, report: RefusalReport, limits: RefusalLimits) -> None:
        self.count += report.count
        self.last_at = max(self.last_at, report.last_at or report.first_at)
        for code, n in (report.codes or {report.code: report.count}).items():
            if code in self.codes or len(self.codes) < limits.max_codes:
                self.codes[code] += n
        for sample in report.samples or (report.user,):
            cut = clip(sample, limits.sample_limit)
            if cut not in self.samples and len(self.samples) < limits.max_samples:
                self.samples.append(cut)

    def report(self, source: str | None = None) -> RefusalReport:
        """The aggregate as one report; `source` names a merged one (its address too)."""
        f = self.first
        return RefusalReport(source=source or f.source, client_address=source or f.client_address, user=f.user,
                             resource=f.resource, code=f.code, message=f.message, count=self.count,
                             first_at=f.first_at, last_at=self.last_at, codes=dict(self.codes),
                             samples=tuple(self.samples))


@dataclass
class _Source:
    window_start: float
    streak: int = 0  # failures since the source was last quiet for a whole window
    failures: int = 0  # in this window
    reported: int = 0  # audited one by one in this streak
    pending: _Aggregate | None = None


class RefusalLimiter:
    """Per-source windows, aggregates and tarpit delays (no I/O; `clock` is monotonic seconds)."""

    def __init__(self, limits: RefusalLimits, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self._clock = clock
        self._wall = wall
        self._sources: OrderedDict[str, _Source] = OrderedDict()  # least recently failing first
        self._ready: list[RefusalReport] = []  # aggregates of ended windows, not yet taken
        self._overflow: _Aggregate | None = None

    def __len__(self) -> int:
        """Sources tracked now."""
        return len(self._sources)

    def claim_report(self, client_address: str) -> bool:
        """Take one of this source's individual audits for an attempt someone else audits (the
        control plane); False when the source is past them, so this broker counts the refusal.

        Taken before the attempt, so concurrent attempts cannot all pass the check at once.
        """
        source = source_of(client_address)
        entry = self._current(source) or self._add(source)
        if entry.reported >= self.limits.report_first:
            return False
        entry.reported += 1
        return True

    def release_report(self, client_address: str) -> None:
        """Give back a claimed individual audit: the attempt was not refused."""
        entry = self._sources.get(source_of(client_address))
        if entry is not None and entry.reported > 0:
            entry.reported -= 1

    def delay(self, client_address: str, extra: int = 0) -> float:
        """Seconds a refusal of this source waits now: its failures so far (plus `extra` not yet
        recorded) past `free_failures` double `delay_base`, up to `delay_max`."""
        entry = self._current(source_of(client_address))
        over = (entry.streak if entry else 0) + extra - self.limits.free_failures
        if over <= 0 or self.limits.delay_max == 0:
            return 0.0
        return min(self.limits.delay_max, self.limits.delay_base * 2.0 ** min(over - 1, 30))

    def record(self, client_address: str, code: str, user: str, resource: str, message: str,
               audited: bool = False) -> RefusalReport | None:
        """Count one refusal; the report to audit now, or None (counted for the window's aggregate).

        `audited`: the control plane already audited this refusal itself (under a `claim_report`);
        it only counts.
        """
        source = source_of(client_address)
        entry = self._current(source) or self._add(source)
        self._sources.move_to_end(source)
        entry.streak += 1
        entry.failures += 1
        if audited:
            return None
        lim = self.limits
        now = self._wall()
        report = RefusalReport(source=source, client_address=clip(client_address, 64),
                               user=clip(user, lim.text_limit), resource=clip(resource, lim.text_limit),
                               code=clip(code, 64), message=clip(message, lim.text_limit),
                               first_at=now, last_at=now)
        if entry.reported < lim.report_first:
            entry.reported += 1
            return report
        if entry.pending is None:
            entry.pending = _Aggregate(first=report)
            log.warning("refused logins from %s are now counted into one audit event per %.0f s window",
                        source, lim.window)
        entry.pending.add(report, lim)
        return None

    def take_due(self) -> list[RefusalReport]:
        """Aggregates of windows that have ended (and the overflow's); forgets quiet sources."""
        now = self._clock()
        for source in list(self._sources):
            self._current(source, now)
        return self._take_ready()

    def take_all(self) -> list[RefusalReport]:
        """Every aggregate still counted, windows ended or not (at shutdown)."""
        for entry in self._sources.values():
            if entry.pending is not None:
                self._ready.append(entry.pending.report())
                entry.pending = None
        return self._take_ready()

    # ------------------------------------------------------------ internals

    def _take_ready(self) -> list[RefusalReport]:
        ready, self._ready = self._ready, []
        if self._overflow is not None:
            ready.append(self._overflow.report(OVERFLOW_SOURCE))
            self._overflow = None
        return ready

    def _current(self, source: str, now: float | None = None) -> _Source | None:
        """The source's entry with its window rolled to `now`; None when it is not (or no longer) tracked."""
        entry = self._sources.get(source)
        if entry is None:
            return None
        now = self._clock() if now is None else now
        if now - entry.window_start < self.limits.window:
            return entry
        if entry.pending is not None:
            self._ready.append(entry.pending.report())
        if entry.failures == 0:  # quiet for a whole window: its streak is forgiven
            del self._sources[source]
            return None
        entry.window_start, entry.failures, entry.pending = now, 0, None
        return entry

    def _add(self, source: str) -> _Source:
        if len(self._sources) >= self.limits.max_sources:
            _, dropped = self._sources.popitem(last=False)
            if dropped.pending is not None:
                if self._overflow is None:
                    self._overflow = _Aggregate(first=dropped.pending.first)
                self._overflow.add(dropped.pending.report(), self.limits)
        entry = _Source(window_start=self._clock())
        self._sources[source] = entry
        return entry


Send = Callable[[RefusalReport], Awaitable[None]]


def control_plane_sender(cp: Any, kind: str) -> Send:
    """A `Send` that reports to the control plane (`ControlPlaneClient.report_refusal`)."""

    def when(seconds: float) -> dt.datetime | None:
        return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds else None

    async def send(report: RefusalReport) -> None:
        from broker.cpclient import ControlPlaneError  # here: the CLI imports this module for its defaults

        extra: dict[str, Any] = {}
        if report.count > 1:
            extra = {"count": report.count, "first_at": when(report.first_at), "last_at": when(report.last_at),
                     "codes": report.codes, "samples": report.samples}
        try:
            await cp.report_refusal(kind=kind, user=report.user, resource=report.resource, code=report.code,
                                    message=report.message, client_address=report.client_address, **extra)
        except ControlPlaneError as exc:
            log.warning("%d refused login(s) from %s not reported: %s", report.count, report.source, exc)

    return send


class RefusalGate:
    """A broker's refusals: `RefusalLimiter` plus sending reports, the window timer and the tarpit."""

    def __init__(self, kind: str, limits: RefusalLimits, send: Send,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.limits = limits
        self.limiter = RefusalLimiter(limits, clock)
        self._send = send
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.Task[None] | None = None
        self.delayed = 0  # refusals in the tarpit now

    def start(self) -> None:
        """Start sending aggregates as their windows end."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_loop(), name="jitgate-refusals")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the timer and send what is still counted (within `timeout`)."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        for report in self.limiter.take_all():
            self._spawn(report)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def claim_report(self, client_address: str) -> bool:
        return self.limiter.claim_report(client_address)

    def release_report(self, client_address: str) -> None:
        self.limiter.release_report(client_address)

    def refused(self, client_address: str, code: str, user: str, resource: str, message: str,
                audited: bool = False) -> None:
        """Count one refusal and audit it now when the source is within its individual reports."""
        report = self.limiter.record(client_address, code, user, resource, message, audited)
        if report is not None:
            self._spawn(report)

    async def tarpit(self, client_address: str, extra: int = 0) -> None:
        """Wait as long as this source's failures call for before its refusal is answered."""
        delay = self.limiter.delay(client_address, extra)
        if delay <= 0 or self.delayed >= self.limits.max_delayed:
            return
        self.delayed += 1
        try:
            await asyncio.sleep(delay)
        finally:
            self.delayed -= 1

    async def _flush_loop(self) -> None:
        tick = min(1.0, self.limits.window / 4)
        while True:
            await asyncio.sleep(tick)
            for report in self.limiter.take_due():
                self._spawn(report)

    def _spawn(self, report: RefusalReport) -> None:
        task = asyncio.get_running_loop().create_task(self._send_one(report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_one(self, report: RefusalReport) -> None:
        try:
            await self._send(report)
        except Exception:  # an audit report must never take a login path down
            log.exception("could not report %d refused login(s) from %s", report.count, report.source)
