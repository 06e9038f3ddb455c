"""Pipe's read holds: reading stops while any reason holds it and resumes only when all are released."""
from __future__ import annotations

import asyncio

from broker.pg.pipe import Pipe


class FakeTransport:
    """A fake transport (only pause/resume are looked at): records what the pipe asked of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.reading = True

    def pause_reading(self) -> None:
        self.calls.append("pause")
        self.reading = False

    def resume_reading(self) -> None:
        self.calls.append("resume")
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        pass


def test_reading_resumes_only_when_every_hold_is_released() -> None:
    async def run() -> None:
        client, upstream = Pipe(), Pipe()
        fake = FakeTransport()
        client.connection_made(fake)  # type: ignore[arg-type]
        upstream.peer = client
        upstream.pause_writing()  # the upstream's writes back up: the client is not read
        client.hold("recording")  # and recording is behind
        upstream.resume_writing()
        assert not fake.reading  # still held for recording
        client.release("recording")
        assert fake.reading
        client.release("recording")  # releasing twice is harmless
        assert fake.calls == ["pause", "resume"]

    asyncio.run(run())
