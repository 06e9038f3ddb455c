"""broker.refusals.RefusalLimiter on a fake clock: windows, aggregates, tarpit, bounds (no I/O)."""
from __future__ import annotations

import asyncio

import pytest

from broker.refusals import (
    OVERFLOW_SOURCE,
    RefusalGate,
    RefusalLimiter,
    RefusalLimits,
    RefusalReport,
    clip,
    source_of,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(**kw: object) -> tuple[RefusalLimiter, FakeClock]:
    clock = FakeClock()
    return RefusalLimiter(RefusalLimits(**kw), clock=clock, wall=clock), clock  # type: ignore[arg-type]


def flood(
    lim: RefusalLimiter, address: str, n: int, user: str = "u@r", code: str = "user.malformed"
) -> list[RefusalReport]:
    out = []
    for _ in range(n):
        report = lim.record(address, code, user, "r", f"user name `{user}` is bad")
        if report is not None:
            out.append(report)
    return out


def test_sources_are_addresses_without_ports_and_ipv6_slash_64() -> None:
    assert source_of("10.0.0.7:5555") == source_of("10.0.0.7:6666") == "10.0.0.7"
    assert source_of("[2001:db8::1]:22") == source_of("2001:db8::ffff:1:2") == "2001:db8::/64"
    assert source_of("::1:5432") == "::/64"
    assert source_of("::ffff:10.0.0.7") == "10.0.0.7"
    assert source_of("x" * 1000).startswith("x" * 64) and len(source_of("x" * 1000)) < 100


def test_clip_marks_what_was_cut() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("a" * 9000, 10) == "a" * 10 + "…(+8990 chars)"


def test_first_refusals_are_reported_then_one_aggregate_per_window() -> None:
    lim, clock = limiter(window=60, report_first=3)
    singles = flood(lim, "10.0.0.7:1", 1000, user="x" * 9000)
    assert len(singles) == 3 and all(r.count == 1 for r in singles)
    assert all(len(r.user) < 300 and len(r.message) < 300 for r in singles)  # attacker's text cut
    assert lim.take_due() == []  # the window is still open
    clock.now += 61
    [agg] = lim.take_due()
    assert agg.count == 997 and agg.codes == {"user.malformed": 997} and agg.source == "10.0.0.7"
    assert len(agg.samples) == 1 and len(agg.samples[0]) < 100
    assert lim.take_due() == []
    # The flood goes on: no new single reports, one aggregate per window.
    assert flood(lim, "10.0.0.7:1", 10) == []
    clock.now += 61
    assert [r.count for r in lim.take_due()] == [10]


def test_other_sources_keep_their_own_reports_and_no_delay() -> None:
    lim, _ = limiter(report_first=3, free_failures=5, delay_base=0.25, delay_max=3)
    flood(lim, "10.0.0.7:1", 50)
    assert lim.delay("10.0.0.7:2") == 3.0
    assert lim.delay("10.0.0.8:1") == 0.0
    assert len(flood(lim, "10.0.0.8:1", 5)) == 3


def test_tarpit_grows_with_failures_and_is_capped() -> None:
    lim, _ = limiter(free_failures=5, delay_base=0.25, delay_max=3)
    delays = []
    for _ in range(12):
        flood(lim, "10.0.0.7:1", 1)
        delays.append(lim.delay("10.0.0.7:1"))
    assert delays[:5] == [0.0] * 5
    assert delays[5:10] == [0.25, 0.5, 1.0, 2.0, 3.0] and max(delays) == 3.0
    assert lim.delay("10.0.0.7:1", extra=100) == 3.0


def test_a_source_quiet_for_a_whole_window_is_forgiven() -> None:
    lim, clock = limiter(window=10, free_failures=1, delay_base=1, delay_max=4)
    flood(lim, "10.0.0.7:1", 5)
    assert lim.delay("10.0.0.7:1") == 4
    clock.now += 11  # the window with failures ends: the streak stays
    assert lim.delay("10.0.0.7:1") == 4
    clock.now += 11  # a whole window without a failure
    lim.take_due()
    assert lim.delay("10.0.0.7:1") == 0 and len(lim) == 0


def test_claimed_reports_bound_concurrent_attempts_audited_elsewhere() -> None:
    lim, _ = limiter(report_first=3)
    claims = [lim.claim_report("10.0.0.7:1") for _ in range(10)]  # ten attempts in flight at once
    assert claims == [True] * 3 + [False] * 7
    for claimed in claims:
        assert lim.record("10.0.0.7:1", "session.refused", "u@r", "r", "bad token", audited=claimed) is None
    [agg] = lim.take_all()
    assert agg.count == 7


def test_good_logins_give_their_claimed_report_back() -> None:
    lim, _ = limiter(report_first=3)
    for _ in range(10):  # a busy client logging in fine
        assert lim.claim_report("10.0.0.7:1")
        lim.release_report("10.0.0.7:1")
    assert lim.claim_report("10.0.0.7:1")  # its next bad token is still audited at once


def test_tracked_sources_are_bounded_and_dropped_counts_are_kept() -> None:
    lim, _ = limiter(max_sources=100, report_first=1)
    for i in range(1000):
        flood(lim, f"10.1.{i // 256}.{i % 256}:1", 3)
    assert len(lim) == 100
    reports = lim.take_all()
    overflow = [r for r in reports if r.source == OVERFLOW_SOURCE]
    assert len(overflow) == 1 and overflow[0].count == 900 * 2
    assert sum(r.count for r in reports) == 1000 * 2


def test_limits_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="window"):
        RefusalLimits(window=0)
    with pytest.raises(ValueError, match="max_sources"):
        RefusalLimits(max_sources=0)


def test_gate_sends_reports_and_the_rest_at_stop() -> None:
    sent: list[RefusalReport] = []

    async def send(report: RefusalReport) -> None:
        sent.append(report)

    async def main() -> None:
        gate = RefusalGate("ssh", RefusalLimits(report_first=2, free_failures=0, delay_base=0.05, delay_max=0.05),
                           send)
        gate.start()
        for _ in range(10):
            gate.refused("10.0.0.7:1", "cert.required", "u@r", "r", "no")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await gate.tarpit("10.0.0.7:1")
        assert loop.time() - t0 >= 0.04
        assert gate.limiter.delay("10.0.0.8:1") == 0  # another source never waits
        await gate.stop()

    asyncio.run(main())
    assert [r.count for r in sent] == [1, 1, 8]
