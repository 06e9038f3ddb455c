"""Reading a recording back: header, typed events, seal."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from recorder import chain
from recorder.events import Event, Kind, RecordingError, event_from_cast, event_from_record
from recorder.header import RecordingHeader


@dataclass(slots=True)
class RecordingInfo:
    """A recording as a store lists it (no event data). Sealed fields are None until closed."""

    ref: str
    session_id: str
    kind: Kind
    started_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    location: str = ""  # where the store keeps it (a path, a URL)
    sealed: bool = False
    ended_at: float | None = None
    end_reason: str | None = None
    events: int | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    final_hash: str | None = None

    @property
    def where(self) -> str:
        """`login@target` (SSH) or `role@resource` (PostgreSQL), or the target alone, from the metadata."""
        m = self.metadata
        target = str(m.get("target") or m.get("resource") or "")
        as_ = str(m.get("login") or m.get("role") or "")
        return f"{as_}@{target}" if as_ and target else target

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "session_id": self.session_id, "kind": self.kind.value,
            "started_at": self.started_at, "ended_at": self.ended_at, "sealed": self.sealed,
            "end_reason": self.end_reason, "events": self.events, "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out, "final_hash": self.final_hash, "command": self.command,
            "metadata": self.metadata, "location": self.location,
        }


def parse_event(kind: Kind, line: bytes) -> Event:
    """One data line (not the header) -> its event (ValueError when malformed)."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    return event_from_cast(item) if kind is Kind.TERMINAL else event_from_record(item)


class RecordingReader:
    """Streams one recording's lines from its store. Large recordings are never read whole."""

    def __init__(self, info: RecordingInfo, open_data: Callable[[], BinaryIO],
                 read_chain: Callable[[], bytes]) -> None:
        self.info = info
        self._open_data = open_data
        self._read_chain = read_chain

    @property
    def ref(self) -> str:
        return self.info.ref

    @property
    def kind(self) -> Kind:
        return self.info.kind

    def lines(self) -> Iterator[bytes]:
        """Raw lines of the data file, newlines kept (the last may be unfinished)."""
        with self._open_data() as f:
            yield from f

    def chain_bytes(self) -> bytes:
        return self._read_chain()

    def header(self) -> RecordingHeader:
        with self._open_data() as f:
            first = f.readline()
        try:
            return RecordingHeader.from_line(first)
        except ValueError as exc:
            raise RecordingError(f"recording {self.ref}: {exc}") from None

    def events(self) -> Iterator[Event]:
        """Events in order, the header skipped; an unfinished last line (crash) is ignored."""
        it = self.lines()
        next(it, None)
        for number, raw in enumerate(it, 2):
            if not raw.endswith(b"\n"):
                return
            try:
                yield parse_event(self.kind, raw[:-1])
            except ValueError as exc:
                raise RecordingError(f"recording {self.ref} line {number}: {exc}") from None

    def seal(self) -> chain.Seal | None:
        """The seal if the recording was closed and the seal parses, else None."""
        tail = self._read_chain().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if not tail.startswith(b"{"):
            return None
        try:
            return chain.Seal.from_line(tail.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
