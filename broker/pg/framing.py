"""PostgreSQL message framing for the relay, sans-I/O: headers only, the stream never copied.

A message is one type byte, a 4-byte big-endian length (which counts itself)
and the body. `Walker` follows one direction of a stream chunk by chunk as
the relay passes it on: it reads each header, skips the bodies nobody
needs by their length, and hands over only the bodies of the types it is
asked for (whole, even when a body spans chunks). Lengths are checked where
they enter: below 4 is malformed (08P01), over the session's `max_message`
is refused (54000).

The type bytes of the messages the relay looks at are named here for both
directions; `broker.pg.tracker` matches them into statements.
"""
from __future__ import annotations

import struct
from collections.abc import Callable

from broker.pg.protocol import ProtocolError

U32 = struct.Struct("!I")

# Frontend type bytes.
F_QUERY, F_PARSE, F_BIND, F_EXECUTE, F_DESCRIBE, F_CLOSE, F_SYNC, F_FUNCTION = (
    ord("Q"), ord("P"), ord("B"), ord("E"), ord("D"), ord("C"), ord("S"), ord("F"))
# Backend type bytes.
B_COMPLETE, B_ERROR, B_READY, B_EMPTY, B_SUSPENDED = ord("C"), ord("E"), ord("Z"), ord("I"), ord("s")
B_COPY_IN, B_COPY_OUT, B_COPY_BOTH = ord("G"), ord("H"), ord("W")
B_PARSE_OK, B_BIND_OK, B_CLOSE_OK, B_ROWDESC, B_NODATA = ord("1"), ord("2"), ord("3"), ord("T"), ord("n")
B_DATAROW = ord("D")
B_PARAMDESC = ord("t")

# The bound when none is given (the broker passes `PgBrokerConfig.max_message`, the same value).
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024


# A message split across chunks is finished by these two, for the Walker and the tracker's
# backend loop alike (a call on such chunks only, never on the common path).
def finish_header(part: bytearray, data: bytes) -> int:
    """Complete a header split across chunks (`part` holds its first bytes) from the start of
    `data`: the bytes taken, or -1 when `data` was too short as well (all of it was taken)."""
    take = 5 - len(part)
    part += data[:take]
    return take if len(part) == 5 else -1


def fill_body(part: bytearray, need: int, data: bytes, p: int) -> int:
    """Add to a body split across chunks up to `need` bytes of `data` from `p`: the bytes taken."""
    take = min(need, len(data) - p)
    part += data[p:p + take]
    return take


class Walker:
    """Walks the messages of one direction of a stream, chunk by chunk.

    `body_types`: the handler gets (type, body) once the whole body is in.
    `header_types`: the handler gets (type, b"") at the header; the body is skipped.
    `count_type`: only counted (`count`), never handed over.
    Every other message is skipped by its length. Lengths are checked against
    `max_length` (ProtocolError 54000 when over, 08P01 when below 4).
    """

    __slots__ = (
        "_body_types",
        "_count_type",
        "_header_types",
        "_max",
        "_need",
        "_on",
        "_partial",
        "_ptype",
        "_skip",
        "count",
    )

    def __init__(self, body_types: frozenset[int], header_types: frozenset[int],
                 on_message: Callable[[int, bytes], None], count_type: int = -1,
                 max_length: int = DEFAULT_MAX_MESSAGE) -> None:
        self._body_types = body_types
        self._header_types = header_types
        self._on = on_message
        self._count_type = count_type
        self.count = 0
        self._max = max_length
        self._skip = 0  # body bytes still to pass by
        self._partial: bytearray | None = None  # an unfinished header (ptype -1) or wanted body
        self._ptype = -1
        self._need = 0

    def feed(self, data: bytes) -> None:
        """Account for one chunk of the stream (ProtocolError on a bad length)."""
        n = len(data)
        p = 0
        if self._skip:
            if self._skip >= n:
                self._skip -= n
                return
            p = self._skip
            self._skip = 0
        elif self._partial is not None:
            p = self._resume(data)
            if p < 0:
                return
        body_types = self._body_types
        header_types = self._header_types
        count_type = self._count_type
        limit = self._max
        while p < n:
            if n - p < 5:
                self._partial = bytearray(data[p:])
                self._ptype = -1
                return
            t = data[p]
            (length,) = U32.unpack_from(data, p + 1)
            if length < 4 or length > limit:
                self._bad_length(length)
            end = p + 1 + length
            if t == count_type:
                self.count += 1
            elif t in body_types:
                if end > n:
                    self._partial = bytearray(data[p + 5:])
                    self._ptype = t
                    self._need = end - n
                    return
                self._on(t, data[p + 5:end])
            elif t in header_types:
                self._on(t, b"")
            p = end
        if p > n:
            self._skip = p - n

    @property
    def at_boundary(self) -> bool:
        """True between two messages (a broker message may be inserted here)."""
        return self._skip == 0 and self._partial is None

    def _bad_length(self, length: int) -> None:
        if length < 4:
            raise ProtocolError(f"invalid message length {length}")
        raise ProtocolError(f"message of {length} bytes is over the limit of {self._max}", "54000")

    def _resume(self, data: bytes) -> int:
        """Finish a header or body split across chunks; the position to go on from, or -1."""
        part = self._partial
        assert part is not None
        p = 0
        n = len(data)
        if self._ptype < 0:
            p = finish_header(part, data)
            if p < 0:
                return -1
            t = part[0]
            (length,) = U32.unpack_from(part, 1)
            if length < 4 or length > self._max:
                self._bad_length(length)
            self._partial = None
            body_len = length - 4
            if t == self._count_type:
                self.count += 1
            elif t in self._body_types:
                self._partial = bytearray()
                self._ptype = t
                self._need = body_len
                if body_len == 0:
                    self._partial = None
                    self._on(t, b"")
                    return p
            elif t in self._header_types:
                self._on(t, b"")
            if self._partial is None:
                if body_len > n - p:
                    self._skip = body_len - (n - p)
                    return -1
                return p + body_len
        part = self._partial
        assert part is not None  # set above whenever a body is wanted
        take = fill_body(part, self._need, data, p)
        self._need -= take
        p += take
        if self._need:
            return -1
        self._partial = None
        self._on(self._ptype, bytes(part))
        return p

