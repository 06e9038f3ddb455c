"""Small SSH writes sent as one TCP segment: `with corked(conn): ...`.

asyncssh writes each SSH packet to the socket at once, and before each packet an
SSH_MSG_IGNORE of its own: a cut's line and CHANNEL_CLOSE are four writes, a
signal or a DISCONNECT two. Each write to a loopback or LAN peer is a segment the
peer wakes up for; when hundreds of sessions are cut in the same second, those
sends are most of what a cut costs. TCP_CORK holds them back until the block ends.
"""
from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def corked(conn: Any) -> Iterator[None]:
    """Hold `conn`'s writes (an asyncssh connection, or None) back and send them as one segment
    on exit; without TCP (or off Linux) the writes simply go one by one."""
    sock = conn.get_extra_info("socket") if conn is not None else None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)  # type: ignore[union-attr]
    except (AttributeError, OSError):
        sock = None
    try:
        yield
    finally:
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            except OSError:
                pass
