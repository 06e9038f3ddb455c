"""One side of a brokered connection as an asyncio protocol.

During login a `Pipe` buffers what it reads and the broker awaits it
(`read`); once the session relays, `on_data` is set and every chunk goes
straight to it, with no buffering and no copy. Flow control is passed to the
peer: when this side's writes back up, the peer stops reading.
"""
from __future__ import annotations

import asyncio
import ssl
from typing import Callable


class PipeClosed(Exception):
    """The peer closed the connection."""


class Pipe(asyncio.Protocol):
    """A transport's protocol that can be read from (login) or relayed (session)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.on_data: Callable[[bytes], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self.peer: Pipe | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._paused = False

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        on_data = self.on_data
        if on_data is not None:
            on_data(data)
            return
        self._buf += data
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_close is not None:
            self.on_close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ------------------------------------------------------------ login phase

    async def read(self) -> bytes:
        """What has arrived since the last read (waits for at least one byte); PipeClosed at EOF."""
        while not self._buf:
            if self._eof:
                raise PipeClosed("connection closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def unread(self, data: bytes) -> None:
        """Put bytes back (read past the end of the login phase)."""
        if data:
            self._buf[0:0] = data

    def take_buffer(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def start_tls(self, context: ssl.SSLContext, server_side: bool,
                        server_hostname: str | None = None, timeout: float = 10.0) -> None:
        """Upgrade this connection to TLS in place (after SSLRequest / 'S')."""
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        new = await loop.start_tls(self.transport, self, context, server_side=server_side,
                                   server_hostname=server_hostname, ssl_handshake_timeout=timeout)
        if new is None:
            raise PipeClosed("connection closed during the TLS handshake")
        self.transport = new  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
