"""SessionMonitor and MonitorHub with a fake clock: warning, cut, extension, revocation, re-sync."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from broker.cpclient import GrantChange
from broker.monitor import BROKER_SHUTDOWN, EXPIRED, REVOKED, FakeClock, MonitorHub, SessionMonitor

T0 = dt.datetime(2026, 11, 21, 12, 0, 0, tzinfo=dt.UTC)


class Seen:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.extended: list[str] = []
        self.cuts: list = []
        self.cut_event = asyncio.Event()

    def warn(self, line: str) -> None:
        self.warnings.append(line)

    def extend(self, line: str) -> None:
        self.extended.append(line)

    def cut(self, cut) -> None:
        self.cuts.append(cut)
        self.cut_event.set()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def make(clock: FakeClock, seen: Seen, expires_in: float = 60, grace: float = 10) -> SessionMonitor:
    return SessionMonitor(session_id="s1", grant_id="g1", resource="web-01",
                          expires_at=clock.now() + dt.timedelta(seconds=expires_in),
                          grace_period=dt.timedelta(seconds=grace), clock=clock,
                          on_cut=seen.cut, on_warning=seen.warn, on_extended=seen.extend).start()


async def test_warns_once_then_cuts_at_deadline() -> None:
    clock, seen = FakeClock(T0), Seen()
    mon = make(clock, seen)
    clock.advance(49)
    await settle()
    assert seen.warnings == [] and seen.cuts == []
    clock.advance(1)
    await settle()
    assert len(seen.warnings) == 1
    assert (
        "web-01" in seen.warnings[0] and "12:01:00 UTC" in seen.warnings[0] and "jitgate extend g1" in seen.warnings[0]
    )
    clock.advance(9.5)
    await settle()
    assert seen.cuts == [] and len(seen.warnings) == 1
    clock.advance(0.5)
    cut = await asyncio.wait_for(mon.wait(), 1)
    assert cut is not None and cut.reason == EXPIRED
    assert "expired at 2026-11-21 12:01:00 UTC" in cut.message
    assert seen.cuts == [cut]


async def test_extension_moves_deadline_and_rearms_warning() -> None:
    clock, seen = FakeClock(T0), Seen()
    mon = make(clock, seen)
    clock.advance(55)
    await settle()
    assert len(seen.warnings) == 1
    mon.extend(T0 + dt.timedelta(seconds=120))
    await settle()
    assert seen.extended and "12:02:00 UTC" in seen.extended[0]
    clock.advance(10)  # old deadline passes
    await settle()
    assert seen.cuts == []
    clock.advance(50)  # 115 s: inside the new grace
    await settle()
    assert len(seen.warnings) == 2
    clock.advance(5)
    cut = await asyncio.wait_for(mon.wait(), 1)
    assert cut.reason == EXPIRED and "12:02:00" in cut.message


async def test_revoke_and_shutdown_cut_at_once_and_only_once() -> None:
    clock, seen = FakeClock(T0), Seen()
    mon = make(clock, seen)
    mon.revoke("incident 42")
    mon.shutdown()
    cut = await asyncio.wait_for(mon.wait(), 1)
    assert cut.reason == REVOKED and "revoked (incident 42)" in cut.message
    clock.advance(100)
    await settle()
    assert len(seen.cuts) == 1

    seen2 = Seen()
    mon2 = make(clock, seen2)
    mon2.shutdown()
    assert (await asyncio.wait_for(mon2.wait(), 1)).reason == BROKER_SHUTDOWN


async def test_close_stops_without_cut() -> None:
    clock, seen = FakeClock(T0), Seen()
    mon = make(clock, seen)
    mon.close()
    assert await asyncio.wait_for(mon.wait(), 1) is None
    clock.advance(100)
    await settle()
    assert seen.cuts == [] and seen.warnings == []


async def test_failing_callback_does_not_stop_the_deadline() -> None:
    clock, seen = FakeClock(T0), Seen()

    def bad_warning(line: str) -> None:
        raise RuntimeError("terminal gone")

    mon = SessionMonitor(session_id="s", grant_id="g", resource="r", expires_at=T0 + dt.timedelta(seconds=5),
                         grace_period=dt.timedelta(seconds=3), clock=clock, on_cut=seen.cut,
                         on_warning=bad_warning).start()
    clock.advance(3)
    await settle()
    clock.advance(2)
    assert (await asyncio.wait_for(mon.wait(), 1)).reason == EXPIRED


def change(state: str, expires: dt.datetime | None = None, seq: int = 1, message: str = "") -> GrantChange:
    return GrantChange(grant_id="g1", state=state, expires_at=expires, message=message, event_type="x", seq=seq)


async def test_hub_applies_revocation_extension_and_expiry() -> None:
    clock = FakeClock(T0)
    hub = MonitorHub(clock)
    a, b = Seen(), Seen()
    kw = dict(grant_id="g1", resource="web-01", expires_at=T0 + dt.timedelta(seconds=60),
              grace_period=dt.timedelta(seconds=10))
    m1 = hub.start_monitor(session_id="s1", on_cut=a.cut, on_warning=a.warn, **kw)
    m2 = hub.start_monitor(session_id="s2", on_cut=b.cut, on_warning=b.warn, **kw)
    assert len(hub) == 2
    hub.apply(change("ACTIVE", T0 + dt.timedelta(seconds=300), seq=5))
    await settle()
    assert m1.deadline == m2.deadline == T0 + dt.timedelta(seconds=300)
    hub.apply(change("ACTIVE", T0 + dt.timedelta(seconds=900), seq=4))  # stale: ignored
    assert m1.deadline == T0 + dt.timedelta(seconds=300)
    hub.apply(change("REVOKED", seq=6, message="left the company"))
    assert (await asyncio.wait_for(m1.wait(), 1)).reason == REVOKED
    assert (await asyncio.wait_for(m2.wait(), 1)).reason == REVOKED
    assert "left the company" in a.cuts[0].message
    await settle()
    assert len(hub) == 0


async def test_hub_cuts_a_session_that_starts_after_its_revocation_was_seen() -> None:
    clock = FakeClock(T0)
    hub = MonitorHub(clock)
    hub.apply(change("REVOKED", seq=3))
    seen = Seen()
    mon = hub.start_monitor(session_id="late", grant_id="g1", resource="r", expires_at=T0 + dt.timedelta(hours=1),
                            grace_period=dt.timedelta(minutes=5), on_cut=seen.cut)
    assert (await asyncio.wait_for(mon.wait(), 1)).reason == REVOKED


async def test_hub_sync_cuts_grants_missing_from_snapshot() -> None:
    clock = FakeClock(T0)
    hub = MonitorHub(clock)
    seen_live, seen_gone = Seen(), Seen()
    live = hub.start_monitor(session_id="a", grant_id="live", resource="r", expires_at=T0 + dt.timedelta(hours=1),
                             grace_period=dt.timedelta(minutes=5), on_cut=seen_live.cut)
    gone = hub.start_monitor(session_id="b", grant_id="gone", resource="r", expires_at=T0 + dt.timedelta(hours=1),
                             grace_period=dt.timedelta(minutes=5), on_cut=seen_gone.cut)
    snapshot = {"live": GrantChange("live", "ACTIVE", T0 + dt.timedelta(hours=2), "", "snapshot", 0)}
    hub.sync(snapshot)
    assert (await asyncio.wait_for(gone.wait(), 1)).reason == REVOKED
    await settle()
    assert live.cut is None and live.deadline == T0 + dt.timedelta(hours=2)
    hub.shutdown()
    assert (await asyncio.wait_for(live.wait(), 1)).reason == BROKER_SHUTDOWN


async def test_naive_deadline_is_refused() -> None:
    with pytest.raises(ValueError):
        SessionMonitor(session_id="s", grant_id="g", resource="r", expires_at=dt.datetime(2026, 1, 1),
                       grace_period=dt.timedelta(0), clock=FakeClock(), on_cut=lambda c: None)


async def test_hub_never_shortens_an_active_deadline() -> None:
    clock = FakeClock(T0)
    hub = MonitorHub(clock)
    seen = Seen()
    mon = hub.start_monitor(session_id="s", grant_id="g1", resource="r", expires_at=T0 + dt.timedelta(seconds=60),
                            grace_period=dt.timedelta(seconds=10), on_cut=seen.cut)
    hub.apply(change("ACTIVE", T0 + dt.timedelta(seconds=120), seq=6))
    # A later event carrying a request state read before the extension committed.
    hub.apply(change("ACTIVE", T0 + dt.timedelta(seconds=60), seq=7))
    await settle()
    assert mon.deadline == T0 + dt.timedelta(seconds=120)
    clock.advance(61)
    await settle()
    assert seen.cuts == []



async def test_a_revocation_reason_reaches_the_terminal_literally() -> None:
    """An admin's reason is shown to the session's user: escapes it carries are made visible."""
    clock, seen = FakeClock(T0), Seen()
    mon = make(clock, seen)
    mon.revoke("done \x1b[2K\x1b[8mhidden\u202e")
    cut = await asyncio.wait_for(mon.wait(), 1)
    assert "\x1b" not in cut.message and "\u202e" not in cut.message
    assert "\\x1b[2K\\x1b[8mhidden\\u202e" in cut.message


async def test_hub_starts_every_due_cut_in_one_pass_before_any_finishes() -> None:
    # Sessions whose deadlines come together: the hub's timer starts each cut (`on_cut_now`)
    # before the first monitor task finishes one (`on_cut`), whatever the order of their timers.
    hub = MonitorHub()  # the system clock: its `call_at` drives the hub's deadline timer
    order: list[str] = []
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=50)
    mons = [hub.start_monitor(session_id=f"s{i}", grant_id=f"g{i}", resource="r", expires_at=deadline,
                              grace_period=dt.timedelta(0), on_cut=lambda c, i=i: order.append(f"cut {i}"),
                              on_cut_now=lambda c, i=i: order.append(f"now {i}"))
            for i in range(5)]
    later = hub.start_monitor(session_id="later", grant_id="gl", resource="r",
                              expires_at=deadline + dt.timedelta(hours=1), grace_period=dt.timedelta(0),
                              on_cut=lambda c: order.append("cut later"))
    cuts = await asyncio.wait_for(asyncio.gather(*(m.wait() for m in mons)), 5)
    assert all(c is not None and c.reason == EXPIRED and "expired at" in c.message for c in cuts)
    assert sorted(order[:5]) == [f"now {i}" for i in range(5)], order
    assert sorted(order[5:]) == [f"cut {i}" for i in range(5)], order
    assert later.live and "cut later" not in order
    later.close()


async def test_hub_extension_moves_a_session_off_the_pass() -> None:
    hub = MonitorHub()
    order: list[str] = []
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=50)
    mon = hub.start_monitor(session_id="s", grant_id="g1", resource="r", expires_at=deadline,
                            grace_period=dt.timedelta(0), on_cut=lambda c: order.append("cut"),
                            on_cut_now=lambda c: order.append("now"))
    hub.apply(change("ACTIVE", deadline + dt.timedelta(hours=1), seq=2))
    await asyncio.sleep(0.2)
    assert order == [] and mon.live
    mon.close()


async def test_hub_starts_cuts_from_a_batch_of_events_at_once() -> None:
    clock = FakeClock(T0)
    hub = MonitorHub(clock)
    order: list[str] = []
    kw = dict(resource="r", expires_at=T0 + dt.timedelta(hours=1), grace_period=dt.timedelta(0))
    m1 = hub.start_monitor(session_id="s1", grant_id="g1", on_cut=lambda c: order.append("cut 1"),
                           on_cut_now=lambda c: order.append("now 1"), **kw)
    m2 = hub.start_monitor(session_id="s2", grant_id="g2", on_cut=lambda c: order.append("cut 2"),
                           on_cut_now=lambda c: order.append("now 2"), **kw)
    hub.apply(change("REVOKED", seq=2, message="gone"))  # g1
    hub.apply(GrantChange(grant_id="g2", state="EXPIRED", expires_at=None, message="", event_type="x", seq=2))
    assert order == ["now 1", "now 2"]  # started in the calls, before either task ran
    assert (await asyncio.wait_for(m1.wait(), 1)).reason == REVOKED
    assert (await asyncio.wait_for(m2.wait(), 1)).reason == EXPIRED
    assert sorted(order[2:]) == ["cut 1", "cut 2"]
