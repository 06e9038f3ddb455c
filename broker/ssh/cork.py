"""Small SSH writes sent in one write to the socket: `with corked(conn): ...`.

asyncssh writes each SSH packet to its transport at once, and before each packet
an SSH_MSG_IGNORE of its own: a cut's line and CHANNEL_CLOSE are four writes, a
signal or a DISCONNECT two, each a system call, and each (with TCP_NODELAY) a
segment the peer wakes up for. When hundreds of sessions are cut in the same
second, those sends are most of what a cut costs. Inside the block the packets
are collected (asyncssh 2.x sends every packet through `SSHConnection._send`)
and leave in one write on exit: one system call and one segment. (TCP_CORK,
used before, also made one segment, but with two setsockopt calls per block on
top of the writes: in a cProfile of 500 cuts at once it was the largest item.)
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def corked(conn: Any) -> Iterator[None]:
    """Collect `conn`'s writes (an asyncssh connection, or None) and send them in one write on
    exit. Nested blocks on one connection share the outer block's write; an object without
    asyncssh's `_send` (another asyncssh version, a test double) simply writes as it goes."""
    own = getattr(conn, "__dict__", None)
    if own is None or "_send" in own or not callable(getattr(conn, "_send", None)):
        yield
        return
    chunks: list[bytes] = []
    conn._send = chunks.append  # an instance attribute: shadows the method until deleted
    try:
        yield
    finally:
        del conn._send
        if chunks:
            conn._send(b"".join(chunks))  # (drops them itself when the transport is gone)
