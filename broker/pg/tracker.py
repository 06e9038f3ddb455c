"""Request/answer matching of a live PostgreSQL session, sans-I/O and built for the hot path.

The relay forwards every chunk it reads unchanged (the stream is never copied
or re-framed) and keeps it, with the time it passed, for `StatementTracker.feed`
(`from_client` / `from_server` take one chunk at a time). The client direction
is framed by `broker.pg.framing.Walker`; the backend direction by a loop of its
own here, specialised for the common messages (DataRow, CommandComplete,
ReadyForQuery), because every answer passes it. The tracker skips what is not
recorded, counts DataRows without decoding them, and keeps the raw bodies of
only the messages a statement record needs (Query, Parse, Bind, Execute,
Describe, Close, CommandComplete, ErrorResponse, ParameterDescription). A
finished statement is one plain tuple appended to `completed` (its shapes are
named below); turning it into text happens later, off the relay's loop, in the
recording process (`broker.pg.decode`).

How responses are matched to requests: every frontend message that the
backend answers is queued in order (Query, Parse, Bind, Describe, Execute,
Close, Sync, FunctionCall); backend messages complete the head of the queue.
After an error in the extended protocol the backend skips to the next Sync,
and so does the queue.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from broker.pg.framing import (
    B_BIND_OK,
    B_CLOSE_OK,
    B_COMPLETE,
    B_COPY_BOTH,
    B_COPY_IN,
    B_COPY_OUT,
    B_DATAROW,
    B_EMPTY,
    B_ERROR,
    B_NODATA,
    B_PARAMDESC,
    B_PARSE_OK,
    B_READY,
    B_ROWDESC,
    B_SUSPENDED,
    DEFAULT_MAX_MESSAGE,
    F_BIND,
    F_CLOSE,
    F_DESCRIBE,
    F_EXECUTE,
    F_FUNCTION,
    F_PARSE,
    F_QUERY,
    F_SYNC,
    U32,
    Walker,
    fill_body,
    finish_header,
)
from broker.pg.protocol import ProtocolError

# One frontend request awaiting its backend answer, as a list (cheaper than an object here):
# [kind, statement body (Query body or the Parse body), Bind body, start time, tags, error body, copy?,
#  statement name (extended protocol; a Describe's statement name)]
_K, _STMT, _BIND, _START, _TAGS, _ERR, _COPY, _NAME = range(8)

# The shapes of a raw statement. Each is a plain tuple, built inline on the hot path (no call,
# one allocation) and shipped to the recording process by `marshal` (which takes plain tuples
# only); its first item names its shape.
#
# An AnsweredStatement: a statement and its answer, in general.
#   (ANSWERED, protocol, stmt body (Query, Parse or FunctionCall body), Bind body, start, end,
#    datarows, tags (a CommandComplete body, a list of them, or None), ErrorResponse body,
#    kind (F_QUERY, F_FUNCTION or F_EXECUTE), ParameterDescription body or None)
# A QuickStatement: a simple Query answered by one command within one chunk (most statements),
# kept as the two messages themselves.
#   (QUICK, Query message, answer chunk (from its CommandComplete on), datarows, start, end)
# A SentStatement: sent upstream and not answered yet; recorded as a note until its answer
# makes it one of the two above.
#   (SENT, protocol, stmt body, Bind body, start, kind, ParameterDescription body or None)
ANSWERED, QUICK, SENT = 0, 1, 2
AnsweredStatement = tuple[int, str, "bytes | None", "bytes | None", float, float, int, Any, "bytes | None", int,
                          "bytes | None"]
QuickStatement = tuple[int, bytes, bytes, int, float, float]
SentStatement = tuple[int, str, "bytes | None", "bytes | None", float, int, "bytes | None"]
RawStatement = AnsweredStatement | QuickStatement | SentStatement
STARTED, ENDED = 4, 5  # where both finished shapes keep their start and end times
_STATEMENT_KINDS = (F_QUERY, F_FUNCTION, F_EXECUTE)

_SERVER_OTHER = frozenset({B_EMPTY, B_SUSPENDED, B_COPY_IN, B_COPY_OUT, B_COPY_BOTH, B_PARSE_OK,
                           B_BIND_OK, B_CLOSE_OK, B_ROWDESC, B_NODATA})
_unpack_u32 = U32.unpack_from


class StatementTracker:
    """Matches frontend requests to backend answers; appends finished statements to `completed`.

    `from_client(chunk)` / `from_server(chunk)` take the stream as it is relayed.
    The backend direction is walked by a loop specialised for the common
    messages (DataRow, CommandComplete, ReadyForQuery), the hot path of any relay.
    """

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE,
                 clock: Callable[[], float] = time.time) -> None:
        self.completed: list[RawStatement] = []
        self._clock = clock
        self._ops: deque[list] = deque()
        self._statements: dict[bytes, bytes] = {}  # statement name -> Parse body
        self._portals: dict[bytes, tuple[bytes | None, bytes, bytes]] = {}  # portal -> (Parse, Bind, stmt name)
        self._described: dict[bytes, bytes] = {}  # statement name -> ParameterDescription body (types)
        self._skipping = False  # after an extended-protocol error, until the client's Sync
        self._rows = 0  # DataRows seen since the last finished statement
        self._max = max_message
        # The hot path: a simple Query sent when nothing else waits is kept here as the
        # message itself, not queued; answered by one command, it becomes a QuickStatement.
        self._query: bytes | None = None
        self._query_at = 0.0
        # What `take_sent` handed over last: the kept Query, and the newest queued request.
        self._sent_query: bytes | None = None
        self._sent_op: list | None = None
        self.client = Walker(
            frozenset({F_QUERY, F_PARSE, F_BIND, F_EXECUTE, F_FUNCTION, F_CLOSE, F_DESCRIBE}),
            frozenset({F_SYNC}),
            self._on_client, max_length=max_message)
        # Backend direction state (see from_server).
        self._s_skip = 0
        self._s_part: bytearray | None = None
        self._s_type = -1
        self._s_need = 0

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered (0 when the session is idle)."""
        return len(self._ops) + (self._query is not None)

    @property
    def server_at_boundary(self) -> bool:
        """True between two backend messages (a broker message may be inserted here)."""
        return self._s_skip == 0 and self._s_part is None

    # ------------------------------------------------------------ frontend

    def from_client(self, data: bytes) -> None:
        """One chunk from the client (ProtocolError on a malformed or oversized message)."""
        client = self.client
        if self._query is not None:
            self._queue_query()
        # Fast path: one whole simple Query in the chunk (what interactive clients and pgbench send).
        if (data and data[0] == F_QUERY and client._skip == 0 and client._partial is None and len(data) > 5
                and _unpack_u32(data, 1)[0] + 1 == len(data) and not self._skipping and len(data) <= self._max):
            if self._ops:
                self._ops.append([F_QUERY, data[5:], None, self._clock(), None, None, False, None])
            else:
                self._query = data
                self._query_at = self._clock()
            return
        client.feed(data)

    def _queue_query(self) -> None:
        """Put the Query kept aside in the queue, where everything but the hot path looks."""
        query, self._query = self._query, None
        op = [F_QUERY, query[5:], None, self._query_at, None, None, False, None]  # type: ignore[index]
        self._ops.append(op)
        if query is self._sent_query:  # the queue was empty: this is its first request
            self._sent_op = op

    def _on_client(self, t: int, body: bytes) -> None:
        if t == F_SYNC:
            self._skipping = False
            self._ops.append([F_SYNC, None, None, 0.0, None, None, False, None])
            return
        if self._skipping:
            return  # the backend ignores these until Sync
        if t == F_QUERY:
            self._ops.append([F_QUERY, body, None, self._clock(), None, None, False, None])
        elif t == F_PARSE:
            name = body[: body.find(b"\x00")]
            self._statements[name] = body
            self._described.pop(name, None)  # a new statement under this name
            self._ops.append([F_PARSE, body, None, 0.0, None, None, False, None])
        elif t == F_BIND:
            i = body.find(b"\x00")
            portal = body[:i]
            stmt_name = body[i + 1: body.find(b"\x00", i + 1)]
            parse = self._statements.get(stmt_name)
            self._portals[portal] = (parse, body, stmt_name)
            self._ops.append([F_BIND, parse, body, 0.0, None, None, False, None])
        elif t == F_EXECUTE:
            portal = body[: body.find(b"\x00")]
            parse, bind, stmt_name = self._portals.get(portal, (None, b"", b""))
            self._ops.append([F_EXECUTE, parse, bind, self._clock(), None, None, False, stmt_name])
        elif t == F_FUNCTION:
            self._ops.append([F_FUNCTION, body, None, self._clock(), None, None, False, None])
        else:  # Describe, Close
            name = body[1: body.find(b"\x00", 1)] if body else b""
            if t == F_CLOSE and body:  # forget what the client closed: long sessions stay small
                (self._statements if body[:1] == b"S" else self._portals).pop(name, None)
                if body[:1] == b"S":
                    self._described.pop(name, None)
            described = name if t == F_DESCRIBE and body[:1] == b"S" else None
            self._ops.append([t, None, None, 0.0, None, None, False, described])

    # ------------------------------------------------------------ backend

    def from_server(self, data: bytes) -> None:
        """One chunk from the upstream (ProtocolError on a message length below 4)."""
        n = len(data)
        # Fast path: one CommandComplete then ReadyForQuery, the whole answer to most
        # statements of a write workload (INSERT, UPDATE, BEGIN, COMMIT).
        if n > 11 and data[0] == B_COMPLETE and not self._s_skip and self._s_part is None:
            end = 1 + _unpack_u32(data, 1)[0]
            if end + 6 == n and data[end] == B_READY and end >= 5 and data[end + 1:end + 5] == b"\x00\x00\x00\x05":
                query = self._query
                if query is not None:  # the Query kept aside, answered by one command
                    self._query = None
                    self.completed.append((QUICK, query, data, self._rows, self._query_at, self._clock()))
                    self._rows = 0
                    return
                self._complete(data[5:end])
                self._ready()
                return
        if self._query is not None:
            if data and data[0] == B_ROWDESC and not self._s_skip and self._s_part is None and self._quick_rows(data):
                return
            self._queue_query()
        p = 0
        if self._s_skip:
            if self._s_skip >= n:
                self._s_skip -= n
                return
            p = self._s_skip
            self._s_skip = 0
        elif self._s_part is not None:
            p = self._s_resume(data)
            if p < 0:
                return
        while p < n:
            if n - p < 5:
                self._s_part = bytearray(data[p:])
                self._s_type = -1
                return
            t = data[p]
            length = _unpack_u32(data, p + 1)[0]
            if length < 4:
                raise ProtocolError(f"invalid message length {length} from the database")
            end = p + 1 + length
            if t == B_DATAROW:
                self._rows += 1
            elif t == B_READY:
                self._ready()
            elif t == B_COMPLETE or t == B_ERROR or t == B_PARAMDESC:
                if end > n:
                    self._s_part = bytearray(data[p + 5:])
                    self._s_type = t
                    self._s_need = end - n
                    return
                if t == B_COMPLETE:
                    self._complete(data[p + 5:end])
                elif t == B_ERROR:
                    self._error(data[p + 5:end])
                else:
                    self._param_types(data[p + 5:end])
            elif t in _SERVER_OTHER:
                self._other(t)
            p = end
        if p > n:
            self._s_skip = p - n

    def _quick_rows(self, data: bytes) -> bool:
        """The Query kept aside answered in this one chunk by RowDescription, DataRows, one
        CommandComplete and ReadyForQuery (a small SELECT): a QuickStatement. False, having
        changed nothing, for anything else."""
        n = len(data)
        p = 0
        rows = -1  # the RowDescription is counted out
        while True:
            if p + 5 > n:
                return False
            length = _unpack_u32(data, p + 1)[0]
            if length < 4:
                return False  # the general walk refuses it
            if data[p] == B_COMPLETE:
                break
            if rows >= 0 and data[p] != B_DATAROW:
                return False
            rows += 1
            p += 1 + length
        end = p + 1 + length
        if end + 6 != n or data[end] != B_READY or data[end + 1:end + 5] != b"\x00\x00\x00\x05":
            return False
        query, self._query = self._query, None
        self.completed.append((QUICK, query, data[p:], self._rows + rows, self._query_at,  # type: ignore[arg-type]
                               self._clock()))
        self._rows = 0
        return True

    def _s_resume(self, data: bytes) -> int:
        """Finish a backend header or body split across chunks; where to go on from, or -1."""
        part = self._s_part
        assert part is not None
        n = len(data)
        p = 0
        if self._s_type < 0:
            p = finish_header(part, data)
            if p < 0:
                return -1
            t = part[0]
            length = _unpack_u32(part, 1)[0]
            if length < 4:
                raise ProtocolError(f"invalid message length {length} from the database")
            self._s_part = None
            body_len = length - 4
            if t == B_COMPLETE or t == B_ERROR or t == B_PARAMDESC:
                self._s_part = bytearray()
                self._s_type = t
                self._s_need = body_len
            else:
                if t == B_DATAROW:
                    self._rows += 1
                elif t == B_READY:
                    self._ready()
                elif t in _SERVER_OTHER:
                    self._other(t)
                if body_len > n - p:
                    self._s_skip = body_len - (n - p)
                    return -1
                return p + body_len
        part = self._s_part
        assert part is not None  # set above whenever a body is wanted
        take = fill_body(part, self._s_need, data, p)
        self._s_need -= take
        p += take
        if self._s_need:
            return -1
        self._s_part = None
        if self._s_type == B_COMPLETE:
            self._complete(bytes(part))
        elif self._s_type == B_ERROR:
            self._error(bytes(part))
        else:
            self._param_types(bytes(part))
        return p

    def _finish(self, op: list) -> None:
        kind = op[_K]
        protocol = "copy" if op[_COPY] else ("simple" if kind == F_QUERY or kind == F_FUNCTION else "extended")
        name = op[_NAME]
        self.completed.append((ANSWERED, protocol, op[_STMT], op[_BIND], op[_START], self._clock(),
                               self._rows, op[_TAGS], op[_ERR], kind,
                               self._described.get(name) if name is not None else None))
        self._rows = 0

    def _param_types(self, body: bytes) -> None:
        """ParameterDescription: the statement's parameter types, to show binary parameters as text."""
        ops = self._ops
        if ops and ops[0][_K] == F_DESCRIBE and ops[0][_NAME] is not None:
            self._described[ops[0][_NAME]] = body

    def _ready(self) -> None:
        # Answers a Sync, a Query or a FunctionCall; anything before it is done with.
        ops = self._ops
        while ops:
            op = ops.popleft()
            k = op[_K]
            if k == F_QUERY or k == F_FUNCTION:
                self._finish(op)
                return
            if k == F_SYNC:
                return

    def _complete(self, body: bytes) -> None:
        ops = self._ops
        if not ops:
            self._rows = 0
            return
        head = ops[0]
        k = head[_K]
        if k == F_EXECUTE:
            ops.popleft()
            head[_TAGS] = body
            self._finish(head)
        elif k == F_QUERY or k == F_FUNCTION:
            tags = head[_TAGS]
            if tags is None:
                head[_TAGS] = body
            elif isinstance(tags, list):
                tags.append(body)
            else:
                head[_TAGS] = [tags, body]

    def _error(self, body: bytes) -> None:
        ops = self._ops
        if not ops:
            self._rows = 0
            return
        head = ops[0]
        k = head[_K]
        if k == F_QUERY or k == F_FUNCTION:
            if head[_ERR] is None:
                head[_ERR] = body
            return
        if k == F_SYNC:
            return  # an error outside a request (e.g. a termination notice before the Sync's answer)
        # Extended protocol: this request failed, the backend skips to Sync.
        ops.popleft()
        if k == F_EXECUTE or k == F_PARSE or k == F_BIND:
            head[_ERR] = body
            if not head[_START]:
                head[_START] = self._clock()
            self._finish(head)
        while ops and ops[0][_K] != F_SYNC:
            ops.popleft()
        if not ops:
            self._skipping = True

    def _other(self, t: int) -> None:
        ops = self._ops
        if not ops:
            return
        head = ops[0]
        k = head[_K]
        if t == B_ROWDESC or t == B_NODATA:
            if k == F_DESCRIBE:
                ops.popleft()
        elif t == B_COPY_IN or t == B_COPY_OUT or t == B_COPY_BOTH:
            head[_COPY] = True
        elif t == B_PARSE_OK:
            if k == F_PARSE:
                ops.popleft()
        elif t == B_BIND_OK:
            if k == F_BIND:
                ops.popleft()
        elif t == B_CLOSE_OK:
            if k == F_CLOSE:
                ops.popleft()
        elif t == B_EMPTY:
            if k == F_EXECUTE:
                ops.popleft()
                self._finish(head)
        elif t == B_SUSPENDED:
            if k == F_EXECUTE:
                ops.popleft()
                head[_TAGS] = b"SUSPENDED\x00"
                self._finish(head)

    def abandon(self, sqlstate: str, message: str) -> None:
        """The session ended with requests unanswered: record the statements among them as
        ended with `sqlstate` (a statement cut mid-way is still on the record)."""
        body = b"SFATAL\x00C" + sqlstate.encode() + b"\x00M" + message.encode() + b"\x00\x00"
        if self._query is not None:
            self._queue_query()
        while self._ops:
            op = self._ops.popleft()
            if op[_K] in (F_QUERY, F_FUNCTION, F_EXECUTE) and op[_START]:
                if op[_ERR] is None:
                    op[_ERR] = body
                self._finish(op)

    def feed(self, chunks: list[tuple[bytes, bool, float]]) -> tuple[bool, ProtocolError] | None:
        """Walk chunks kept as they were relayed, in order: (data, from the client?, the time it
        passed), each timed by its own time. Stops at the first chunk refused and returns
        (from the client?, the ProtocolError); None when all were taken."""
        own = self._clock
        at = 0.0
        self._clock = lambda: at  # reads the `at` of the chunk being walked
        try:
            for data, from_client, at in chunks:  # noqa: B007  # `at` is read by self._clock
                try:
                    if from_client:
                        self.from_client(data)
                    else:
                        self.from_server(data)
                except ProtocolError as exc:
                    return from_client, exc
        finally:
            self._clock = own
        return None

    def take_sent(self) -> list[RawStatement]:
        """SentStatements for the requests sent upstream and not answered yet that were not
        handed over before (each once, oldest first). Requests leave the queue only from its
        front, so the ones after the newest handed over are the new ones."""
        sent: list[RawStatement] = []
        query = self._query
        if query is not None and query is not self._sent_query:
            self._sent_query = query
            sent.append((SENT, "simple", query[5:], None, self._query_at, F_QUERY, None))
        ops = self._ops
        if ops and ops[-1] is not self._sent_op:
            last = self._sent_op
            new = []
            for op in reversed(ops):
                if op is last:
                    break
                new.append(op)
            self._sent_op = ops[-1]
            for op in reversed(new):
                kind = op[_K]
                if kind in _STATEMENT_KINDS and op[_START]:
                    name = op[_NAME]
                    sent.append((SENT, "simple" if kind != F_EXECUTE else "extended", op[_STMT], op[_BIND],
                                 op[_START], kind, self._described.get(name) if name is not None else None))
        return sent

    def take_completed(self) -> list[RawStatement]:
        """Hand over the finished statements (the list is replaced, not copied)."""
        done = self.completed
        self.completed = []
        return done
