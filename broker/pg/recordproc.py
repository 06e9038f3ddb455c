"""The PostgreSQL broker's recording process: `python -m broker.pg.recordproc DATA_DIR`.

The broker's event loop only collects raw finished statements (a few
references per statement) and ships them here in batches; this process turns
them into `DbStatement` events and writes them through `recorder/`
(hash-chained JSON lines, sealed at the end). Decoding and writing are most of
the cost of recording, and here they run beside the relay, not in its loop.

A statement sent upstream and not answered yet comes as a SentStatement and is
written as a note at once (handed to the OS, not left in the writer's buffer),
so a crash of the broker or of both processes still leaves on record what ran.
Each session's recording is bounded (`max_bytes`, from "init"): the batch that
crosses the bound is written, a note says so, and the broker is told ("limit")
so it cuts the session; what comes after it until the cut is still written, each
statement cut short (`_capped`).

Frames both ways: a 4-byte big-endian length, then `marshal` of a tuple
(trusted: both ends are this package). Parent -> child:
    ("init", passphrase, max_bytes) first, then
    ("open", session_id, metadata) | ("stmts", [(session_id, [raw, ...]), ...])
    | ("note", session_id, text) | ("close", session_id, end_reason, bytes_in, bytes_out)
Child -> parent:
    ("opened", session_id, ref) | ("closed", session_id, ref, final_hash)
    | ("error", session_id, message) | ("limit", session_id, message)
"""
from __future__ import annotations

import asyncio
import functools
import json
import marshal
import struct
import sys
from typing import Any

from broker.pg.decode import statement_lines, waits_for_answer
from recorder import FileRecordingStore, Kind, Note, RecordingError, RecordingWriter
from recorder.events import json_line, storage_problem

_LEN = struct.Struct("!I")
# Each line also costs its newline and a chain line (64 hex digits and a newline) on disk.
_LINE_OVERHEAD = 66
# Past the bound, until the cut lands, statements are still written but each in short: the
# recording keeps what ran while its size stays near the bound whatever the client sends.
_CAPPED_TEXT = 256
_CAPPED_LINE = 1024


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
    return marshal.loads(body)


def _capped(line: bytes) -> bytes:
    """A statement line written past the session's bound, at most about `_CAPPED_LINE` bytes:
    its text's beginning and its size, no parameters."""
    if len(line) <= _CAPPED_LINE:
        return line
    record = json.loads(line)
    text = record.get("text", "")
    if len(text) > _CAPPED_TEXT:
        record["text"] = f"{text[:_CAPPED_TEXT]}... ({len(text)} characters; the rest is not recorded: " \
                         "the recording is past its bound)"
    if record.get("parameters"):
        record["parameters"] = [f"<{len(record['parameters'])} parameters not recorded: past the bound>"]
    return json_line(record)


class _Child:
    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.store: FileRecordingStore | None = None
        self.writers: dict[str, RecordingWriter] = {}
        self.failed: set[str] = set()
        self.max_bytes = 0  # 0: no bound (set by "init")
        self.written: dict[str, int] = {}  # bytes each open recording holds, about

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
            self.max_bytes = item[2]
        elif op == "stmts":
            for sid, raws in item[1]:
                writer = self.writers.get(sid)
                if writer is None:
                    continue
                lines = self.bounded(sid, list(statement_lines(raws, writer.header.started_at)))
                try:
                    writer.write_statement_lines(lines)
                    if waits_for_answer(raws):  # on disk now, before the answer comes
                        writer.flush()
                except RecordingError as exc:
                    self.fail(sid, exc)
                    continue
                self.count(sid, writer, sum(len(line) for line, _ in lines) + _LINE_OVERHEAD * len(lines))
        elif op == "open":
            sid, metadata = item[1], item[2]
            try:
                assert self.store is not None, "recording process not initialised"
                writer = self.store.create(sid, Kind.DB, metadata, on_error=functools.partial(self.fail, sid))
            except OSError as exc:
                self.send(("error", sid, storage_problem(exc)))
                return
            except (RecordingError, AssertionError) as exc:
                self.send(("error", sid, str(exc)))
                return
            self.writers[sid] = writer
            self.written[sid] = 0
            self.send(("opened", sid, writer.ref))
        elif op == "note":
            writer = self.writers.get(item[1])
            if writer is not None:
                try:
                    writer.write_event(Note(item[2]))
                except RecordingError as exc:
                    self.fail(item[1], exc)
                    return
                self.count(item[1], writer, len(item[2]) + 40 + _LINE_OVERHEAD)
        elif op == "close":
            sid = item[1]
            writer = self.writers.pop(sid, None)
            self.written.pop(sid, None)
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

    def bounded(self, sid: str, lines: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
        """The lines as they are up to the session's bound, each one past it cut short (until the cut)."""
        room = self.max_bytes - self.written.get(sid, 0)
        if not self.max_bytes or sum(len(line) for line, _ in lines) + _LINE_OVERHEAD * len(lines) <= room:
            return lines
        out = []
        for line, n in lines:
            if room < 0:
                line = _capped(line)
            room -= len(line) + _LINE_OVERHEAD
            out.append((line, n))
        return out

    def count(self, sid: str, writer: RecordingWriter, size: int) -> None:
        """Add what was written; past `max_bytes` (the first time), note it and tell the broker."""
        before = self.written.get(sid, 0)
        now = self.written[sid] = before + size
        if self.max_bytes and before <= self.max_bytes < now:
            message = f"the session's recording reached its limit of {self.max_bytes} bytes"
            try:
                writer.write_event(Note(message + "; the session is cut"))
            except RecordingError as exc:
                self.fail(sid, exc)
                return
            self.send(("limit", sid, message))

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
