"""The recording uploader's cadence: which recordings a poke hurries.

The control plane here is a stand-in (named `FakeRecordings`): it only answers AppendRecording
with the offsets it was sent up to; the real service is exercised end to end in
tests/recordings/test_store_e2e.py.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace

from broker.uploader import RecordingUploader
from jitgate.v1 import recordings_pb2


class FakeRecordings:
    """AppendRecording that stores nothing and acknowledges every byte (a stand-in, see the module doc)."""

    def __init__(self) -> None:
        self.sent: list[str] = []  # refs of the calls that carried data

    async def AppendRecording(self, req: recordings_pb2.AppendRecordingRequest, timeout: float = 0
                              ) -> recordings_pb2.AppendRecordingResponse:
        if req.data or req.chain:
            self.sent.append(req.ref)
        return recordings_pb2.AppendRecordingResponse(data_offset=req.data_offset + len(req.data),
                                                      chain_offset=req.chain_offset + len(req.chain))


def write_recording(root: Path, ref: str) -> Path:
    directory = root / "recordings" / ref
    directory.mkdir(parents=True)
    (directory / "meta.json").write_text(json.dumps({"session_id": f"s-{ref}", "kind": "ssh", "started_at": 1.0}))
    (directory / "session.cast").write_bytes(b"[0.1, \"o\", \"hello\"]\n")
    (directory / "chain").write_bytes(b"h1\n")
    return directory


def append(directory: Path) -> None:
    with open(directory / "session.cast", "ab") as f:
        f.write(b"[0.2, \"o\", \"more\"]\n")


def test_a_session_end_hurries_its_own_recording_only(tmp_path: Path) -> None:
    fake = FakeRecordings()
    uploader = RecordingUploader(SimpleNamespace(recordings=fake), tmp_path, interval=60.0)
    first, second = write_recording(tmp_path, "r1"), write_recording(tmp_path, "r2")

    async def scenario() -> None:
        uploader._scan()
        await uploader.round()  # both are new: both go
        assert sorted(fake.sent) == ["r1", "r2"]
        append(first)
        append(second)
        fake.sent.clear()
        await uploader.round()
        assert fake.sent == []  # not due for another minute
        uploader.poke("r1")
        await uploader.round()
        assert fake.sent == ["r1"]
        uploader.poke(probe=True)  # someone started watching: every recording goes at once
        await uploader.round()
        assert fake.sent == ["r1", "r2"]

    asyncio.run(scenario())


def test_a_poke_for_a_recording_not_scanned_yet_wakes_the_loop(tmp_path: Path) -> None:
    fake = FakeRecordings()
    uploader = RecordingUploader(SimpleNamespace(recordings=fake), tmp_path, interval=60.0)

    async def scenario() -> None:
        task = asyncio.create_task(uploader.run())
        try:
            await asyncio.sleep(0.05)  # the first scan found nothing
            write_recording(tmp_path, "late")
            uploader.poke("late")
            async with asyncio.timeout(5):
                while fake.sent != ["late"]:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()

    asyncio.run(scenario())


def test_the_loop_sleeps_at_least_the_live_interval_between_rounds(tmp_path: Path) -> None:
    """Recordings come due one by one; the loop wakes for a batch of them, not for each alone."""
    uploader = RecordingUploader(SimpleNamespace(recordings=FakeRecordings()), tmp_path, interval=2.0,
                                 live_interval=0.1)
    write_recording(tmp_path, "r1")
    uploader._scan()
    for upload in uploader._uploads.values():
        upload.next_at = time.monotonic() + 0.001
    assert 0.1 <= uploader._sleep_time() <= 2.0
    for upload in uploader._uploads.values():
        upload.next_at = time.monotonic() + 1.0
    assert 0.5 < uploader._sleep_time() <= 1.0
