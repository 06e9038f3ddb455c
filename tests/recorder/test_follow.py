"""follow(): a live recording's events as they are written, ending at the seal."""
from __future__ import annotations

import asyncio

from recorder import DbStatement, FileRecordingStore, Kind, TerminalEvent
from tests.recorder.conftest import PASSPHRASE
from tests.recorder.helpers import make_terminal, wait_for


def test_follow_a_live_terminal_until_it_is_sealed(store: FileRecordingStore) -> None:
    live = FileRecordingStore(store.data_dir, passphrase=PASSPHRASE, flush_interval=0.02)

    async def run() -> list[TerminalEvent]:
        w = live.create("s-watch", Kind.TERMINAL, {"user": "alice"})
        seen: list[TerminalEvent] = []

        async def watch() -> None:
            async for ev in store.follow("s-watch", poll_interval=0.01):
                seen.append(ev)  # type: ignore[arg-type]

        watcher = asyncio.create_task(watch())
        w.write_output(b"$ ")
        w.write_input(b"id\r")
        await wait_for(lambda: len(seen) == 2)  # seen while the session is still open
        assert not watcher.done()
        w.write_output(b"uid=0(root)\r\n")
        w.resize(100, 50)
        await wait_for(lambda: len(seen) == 4)
        w.write_output(b"logout\r\n")
        await w.close("client_exit")
        await asyncio.wait_for(watcher, 5)  # the seal ends the follow
        return seen

    seen = asyncio.run(run())
    assert [(e.code, e.data) for e in seen] == [
        ("o", "$ "), ("i", "id\r"), ("o", "uid=0(root)\r\n"), ("r", "100x50"), ("o", "logout\r\n")]


def test_follow_a_sealed_recording_replays_it_and_ends(store: FileRecordingStore) -> None:
    ref = make_terminal(store)

    async def run() -> int:
        return len([ev async for ev in store.follow(ref)])

    assert asyncio.run(run()) == len(list(store.open(ref).events()))


def test_follow_a_live_database_session_and_give_up_when_idle(store: FileRecordingStore) -> None:
    live = FileRecordingStore(store.data_dir, passphrase=PASSPHRASE, flush_interval=0.02)

    async def run() -> list[DbStatement]:
        w = live.create("s-db-watch", Kind.DB, {})
        w.write_event(DbStatement(text="SELECT 1", started_at=0, duration_ms=0.1, rows=1))
        seen = [ev async for ev in store.follow("s-db-watch", poll_interval=0.01, idle_timeout=0.3)]
        w.abort()  # never sealed: the follower stopped by its idle timeout
        return seen  # type: ignore[return-value]

    seen = asyncio.run(run())
    assert [e.text for e in seen] == ["SELECT 1"]
