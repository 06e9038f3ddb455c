"""The PostgreSQL broker's recording process: `python -m broker.pg.recordproc DATA_DIR`.

The broker's event loop only collects raw finished statements (a few
references per statement) and ships them here in batches; this process turns
them into `DbStatement` events and writes them through `recorder/`
(hash-chained JSON lines, sealed at the end). Decoding and writing are most of
the cost of recording, and here they run beside the relay, not in its loop.

Frames both ways: a 4-byte big-endian length, then `marshal` of a tuple
(trusted: both ends are this package). Parent -> child:
    ("init", passphrase) first, then
    ("open", session_id, metadata) | ("stmts", [(session_id, [raw, ...]), ...])
    | ("note", session_id, text) | ("close", session_id, end_reason, bytes_in, bytes_out)
Child -> parent:
    ("opened", session_id, ref) | ("closed", session_id, ref, final_hash)
    | ("error", session_id, message)
"""
from __future__ import annotations

import asyncio
import marshal
import struct
import sys
from typing import Any

from broker.pg.tracker import statement_lines
from recorder import FileRecordingStore, Kind, Note, RecordingError, RecordingWriter

_LEN = struct.Struct("!I")


def frame(item: tuple[Any, ...]) -> bytes:
    """One frame: length + marshal of `item`."""
    body = marshal.dumps(item)
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next frame, None at EOF."""
    try:
        head = await reader.readexactly(4)
        body = await reader.readexactly(_LEN.unpack(head)[0])
    except asyncio.IncompleteReadError:
        return None
    return marshal.loads(body)  # noqa: S302  (our own parent process wrote it)


class _Child:
    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.store: FileRecordingStore | None = None
        self.writers: dict[str, RecordingWriter] = {}
        self.failed: set[str] = set()

    def send(self, item: tuple[Any, ...]) -> None:
        sys.stdout.buffer.write(frame(item))
        sys.stdout.buffer.flush()

    def fail(self, sid: str, exc: Exception) -> None:
        if sid not in self.failed:
            self.failed.add(sid)
            self.send(("error", sid, str(exc)))

    async def handle(self, item: tuple[Any, ...]) -> None:
        op = item[0]
        if op == "init":
            self.store = FileRecordingStore(self.data_dir, passphrase=item[1])
        elif op == "stmts":
            for sid, raws in item[1]:
                writer = self.writers.get(sid)
                if writer is None:
                    continue
                try:
                    writer.write_statement_lines(statement_lines(raws, writer.header.started_at))
                except RecordingError as exc:
                    self.fail(sid, exc)
        elif op == "open":
            sid, metadata = item[1], item[2]
            try:
                assert self.store is not None, "recording process not initialised"
                writer = self.store.create(sid, Kind.DB, metadata, on_error=lambda e, s=sid: self.fail(s, e))
            except (RecordingError, OSError, AssertionError) as exc:
                self.send(("error", sid, str(exc)))
                return
            self.writers[sid] = writer
            self.send(("opened", sid, writer.ref))
        elif op == "note":
            writer = self.writers.get(item[1])
            if writer is not None:
                try:
                    writer.write_event(Note(item[2]))
                except RecordingError as exc:
                    self.fail(item[1], exc)
        elif op == "close":
            sid = item[1]
            writer = self.writers.pop(sid, None)
            if writer is None:
                self.send(("closed", sid, "", ""))
                return
            writer.bytes_in, writer.bytes_out = item[3], item[4]
            try:
                seal = await writer.close(item[2])
                self.send(("closed", sid, writer.ref, seal.final_hash))
            except RecordingError as exc:
                self.send(("closed", sid, writer.ref, ""))
                self.fail(sid, exc)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 30)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        while True:
            item = await read_frame(reader)
            if item is None:
                break
            await self.handle(item)
        # The broker went away with sessions open: it died (a clean stop closes them all first).
        # Their recordings stay unsealed, as far as they got; the broker's next start finds them
        # and reports those sessions ended in error, as the SSH broker does after a crash.
        for writer in self.writers.values():
            writer.abort()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m broker.pg.recordproc DATA_DIR")
    asyncio.run(_Child(sys.argv[1]).run())


if __name__ == "__main__":
    main()
