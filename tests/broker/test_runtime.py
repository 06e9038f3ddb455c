"""BrokerRuntime (what both brokers share): session-end reports, activity rounds, the cut's log line."""
from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.cpclient import ControlPlaneError
from broker.monitor import EXPIRED, REVOKED, Cut, MonitorHub
from broker.refusals import RefusalLimits
from broker.runtime import BrokerRuntime, cut_summary, end_report
from recorder import FileRecordingStore

T0 = dt.datetime(2026, 11, 21, 12, 0, 0, tzinfo=dt.UTC)


class FakeControlPlane:
    """Records the calls; `down` makes every call fail as unreachable."""

    name = "broker-test"

    def __init__(self) -> None:
        self.down = False
        self.ends: list[tuple[str, str]] = []
        self.activity: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def _check(self) -> None:
        if self.down:
            raise ControlPlaneError("UNAVAILABLE", "control plane unreachable", unavailable=True)

    async def report_session_end(self, session_id: str, reason: str, **details: Any) -> None:
        await self.gate.wait()
        self._check()
        self.ends.append((session_id, reason))

    async def report_activity(self, session_id: str, last_activity_at: dt.datetime, bytes_in: int = 0,
                              bytes_out: int = 0) -> None:
        self._check()
        self.activity.append(session_id)

    async def report_refusal(self, **details: Any) -> None:
        self._check()


@dataclass(eq=False)
class Live:
    session_id: str
    last_activity: dt.datetime = T0
    bytes_in: int = 1
    bytes_out: int = 2


def runtime(cp: FakeControlPlane, data: Path) -> BrokerRuntime:
    return BrokerRuntime("ssh", cp, MonitorHub(), RefusalLimits(), 30.0, data)  # type: ignore[arg-type]


def test_an_end_the_control_plane_missed_is_kept_and_sent_once_it_is_back(tmp_path: Path) -> None:
    async def main() -> None:
        cp = FakeControlPlane()
        rt = runtime(cp, tmp_path)
        await rt.recover(FileRecordingStore(tmp_path), cp.name)
        cp.down = True
        await rt.report_end(end_report("s1", "expired", 10, 20, "ref", "hash", T0))
        assert cp.ends == [] and [r.session_id for r in rt.spool.pending()] == ["s1"]  # type: ignore[union-attr]
        await rt.send_pending()  # still down: kept
        assert [r.session_id for r in rt.spool.pending()] == ["s1"]  # type: ignore[union-attr]
        cp.down = False
        await rt._on_sync({})  # the watch re-synced: the control plane is back
        await asyncio.sleep(0.05)
        assert cp.ends == [("s1", "expired")] and rt.spool.pending() == []  # type: ignore[union-attr]

    asyncio.run(main())


def test_a_sweep_does_not_send_again_an_end_being_sent(tmp_path: Path) -> None:
    async def main() -> None:
        cp = FakeControlPlane()
        rt = runtime(cp, tmp_path)
        await rt.recover(FileRecordingStore(tmp_path), cp.name)
        cp.gate.clear()  # the first send hangs in the call
        first = asyncio.ensure_future(rt.report_end(end_report("s1", "client_exit", 0, 0, "", "", T0)))
        await asyncio.sleep(0.01)
        await rt.send_pending()  # a round while it is in flight
        cp.gate.set()
        await first
        await rt.send_pending()
        assert cp.ends == [("s1", "client_exit")]

    asyncio.run(main())


def test_activity_goes_for_opened_sessions_and_stops_at_an_unreachable_control_plane(tmp_path: Path) -> None:
    async def main() -> None:
        cp = FakeControlPlane()
        rt = runtime(cp, tmp_path)
        rt.sessions.update({Live("s1"), Live("")})  # type: ignore[arg-type]
        await rt.report_activity()
        assert cp.activity == ["s1"]
        cp.down = True
        await rt.report_activity()  # no exception: the next round tries again
        assert cp.activity == ["s1"]

    asyncio.run(main())


def test_the_cut_log_line_says_how_far_from_the_deadline() -> None:
    deadline = T0 + dt.timedelta(seconds=296)
    revoked = Cut(REVOKED, "jitgate: access to web-01 was revoked; closing the session", T0)
    assert cut_summary("s1", revoked, deadline, now=T0) == "session s1 cut: revoked 296 s before its deadline"
    expired = Cut(EXPIRED, "jitgate: access to web-01 expired", deadline)
    late = deadline + dt.timedelta(milliseconds=12)
    assert (cut_summary("s1", expired, deadline, now=late)
            == "session s1 cut: expired 12 ms after its deadline")
    assert cut_summary("s1", revoked, None) == "session s1 cut: revoked"
