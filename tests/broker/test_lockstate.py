"""broker/lockstate.py: a broker that cannot learn the lock state for longer than its bound
refuses new sessions (fail closed), and is fresh again as soon as it hears the control plane."""
from __future__ import annotations

import asyncio

import pytest

from broker.cpclient import ControlPlaneError
from broker.lockstate import LockState


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_stale_after_the_bound_without_stream_or_poll() -> None:
    clock = Clock()
    state = LockState(stale_after=10, poll_interval=1, clock=clock)
    state.check()  # at start: the bound to connect first
    clock.t += 11
    with pytest.raises(ControlPlaneError) as info:
        state.check()
    assert info.value.reason == "lock.stale" and info.value.unavailable and "11 s" in info.value.message
    state.stream(True)  # the event stream synced: fresh however long it stays up
    clock.t += 1000
    state.check()
    state.stream(False)  # it knew until the stream went down
    clock.t += 9
    state.check()
    clock.t += 2
    assert state.stale
    state.learned()  # a ListLocks answer
    state.check()
    with pytest.raises(ValueError):
        LockState(stale_after=0)


def test_the_poll_keeps_it_fresh_only_while_the_control_plane_answers() -> None:
    class Source:
        def __init__(self) -> None:
            self.up = True
            self.calls = 0

        async def list_locks(self) -> list[object]:
            self.calls += 1
            if not self.up:
                raise ControlPlaneError("UNAVAILABLE", "control plane unreachable (list locks)", True)
            return ["lock"]

    async def scenario() -> None:
        clock = Clock()
        state = LockState(stale_after=5, poll_interval=0.01, clock=clock)
        source = Source()
        task = asyncio.get_running_loop().create_task(state.poll(source))
        await asyncio.sleep(0.05)
        assert source.calls >= 2 and state.locks == ["lock"]
        clock.t += 4
        await asyncio.sleep(0.05)
        assert not state.stale
        source.up = False
        await asyncio.sleep(0.03)
        clock.t += 6
        await asyncio.sleep(0.03)
        assert state.stale  # no answer for 6 s > 5 s
        state.stream(True)
        calls = source.calls
        await asyncio.sleep(0.05)
        assert source.calls == calls  # no polling while the stream is up
        task.cancel()

    asyncio.run(scenario())


def test_a_lock_event_cuts_the_matching_sessions_at_once() -> None:
    import datetime as dt

    from broker.cpclient import LockChange
    from broker.monitor import FakeClock, MonitorHub

    async def scenario() -> None:
        clock = FakeClock()
        hub = MonitorHub(clock)
        cuts: dict[str, str] = {}
        later = clock.now() + dt.timedelta(hours=1)
        for sid, user, resource, login in [("a1", "alice", "web-01", "root"), ("a2", "alice", "db", "readonly"),
                                           ("b1", "bob", "web-01", "root"), ("b2", "bob", "db", "readonly")]:
            hub.start_monitor(session_id=sid, grant_id=f"g-{sid}", resource=resource, expires_at=later,
                              grace_period=dt.timedelta(0), user=user, login=login,
                              on_cut=lambda cut, sid=sid: cuts.__setitem__(sid, cut.message))
        hub.apply_lock(LockChange("user", "alice", "laptop stolen", "admin"))
        await asyncio.sleep(0.01)
        assert set(cuts) == {"a1", "a2"} and all("locked by admin: laptop stolen" in m for m in cuts.values())
        hub.apply_lock(LockChange("login", "readonly", "rotate", "admin"))
        await asyncio.sleep(0.01)
        assert set(cuts) == {"a1", "a2", "b2"}
        hub.apply_lock(LockChange("resource", "nothing-here", "x", "admin"))
        await asyncio.sleep(0.01)
        assert "b1" not in cuts
        hub.shutdown()
        await hub.wait_all(1)

    asyncio.run(scenario())


def test_a_lock_starts_every_cut_in_its_own_pass_then_each_task_finishes_it() -> None:
    import datetime as dt

    from broker.cpclient import LockChange
    from broker.monitor import FakeClock, MonitorHub

    async def scenario() -> None:
        clock = FakeClock()
        hub = MonitorHub(clock)
        started: list[str] = []
        finished: list[str] = []
        later = clock.now() + dt.timedelta(hours=1)
        for sid, user in [("a1", "alice"), ("a2", "alice"), ("b1", "bob")]:
            hub.start_monitor(session_id=sid, grant_id=f"g-{sid}", resource="web-01", expires_at=later,
                              grace_period=dt.timedelta(0), user=user, login="root",
                              on_cut=lambda cut, sid=sid: finished.append(sid),
                              on_cut_now=lambda cut, sid=sid: started.append(f"{sid}: {cut.message}"))
        hub.apply_lock(LockChange("user", "alice", "laptop stolen", "admin"))
        # Started within the call, before any task ran; finished only by each monitor's task.
        assert sorted(s.split(":")[0] for s in started) == ["a1", "a2"] and finished == []
        assert all("locked by admin: laptop stolen" in s for s in started)
        await asyncio.sleep(0.01)
        assert sorted(finished) == ["a1", "a2"]
        hub.apply_lock(LockChange("all", "", "incident", "admin"))  # a1, a2 are cut already: once only
        await asyncio.sleep(0.01)
        assert sorted(s.split(":")[0] for s in started) == ["a1", "a2", "b1"]
        assert sorted(finished) == ["a1", "a2", "b1"]

    asyncio.run(scenario())
