"""One side of a brokered connection as an asyncio protocol.

During login a `Pipe` buffers what it reads and the broker awaits it
(`read`); once the session relays, `on_data` is set and every chunk goes
straight to it, with no buffering and no copy. Flow control is passed to the
peer: when this side's writes back up, the peer stops reading (`hold`); the
broker holds clients' reads the same way while recording is behind.

TLS is done here with `ssl.SSLObject` over memory BIOs on the plain TCP
transport, not with the event loop's TLS transport: for the small records of a
database session that is one decrypt (or encrypt) call per chunk and nothing
else, which measured about a third cheaper per round trip than the loop's
layered TLS protocol. `send` is the function the relay writes with (plain or TLS).
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

# How much one SSLObject.read asks for. A TLS record holds at most 16 KiB. CPython
# allocates the whole request before it shrinks the result: at 256 KiB that was an
# mmap, an mremap and a munmap for every record read (strace on the broker), and a
# small query's round trip took 21.6 us of CPU in Python and OpenSSL against 5.5 us.
_TLS_READ = 65536


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
        self._tls: ssl.SSLObject | None = None
        self._tls_in: ssl.MemoryBIO | None = None
        self._tls_out: ssl.MemoryBIO | None = None
        self._handshaking = False
        self._tls_read: Callable[[int], bytes] | None = None
        self._tls_write: Callable[[bytes], int] | None = None
        self._holds: set[str] = set()
        self.send: Callable[[bytes], None] = self._send_plain

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send = transport.write  # type: ignore[attr-defined]  # the transport's own method: no extra frame

    def relay_to(self, handler: Callable[[bytes], None]) -> None:
        """From now on every chunk read goes to `handler` (decrypted first under TLS).

        Without TLS the handler becomes this protocol's `data_received` itself, and the
        transport is told again about its protocol because the event loop keeps the
        method it found at connection time.
        """
        self.on_data = handler
        if self._tls is None and self.transport is not None:
            self.data_received = handler  # type: ignore[assignment]
            self.transport.set_protocol(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._wake()

    def _tls_received(self, raw: bytes) -> None:
        """`data_received` once TLS starts: decrypt, then buffer (login) or hand on (relay)."""
        incoming = self._tls_in
        incoming.write(raw)  # type: ignore[union-attr]
        if self._handshaking:
            self._wake()
            return
        # One read per record: a record's plaintext fits in one read, so the input
        # running dry is the end (no SSLWantReadError raised for every chunk).
        try:
            data = self._tls_read(_TLS_READ)  # type: ignore[misc]  # set when TLS starts
            if incoming.pending:  # type: ignore[union-attr]  # more records came in this chunk
                data = self._read_records(data)
        except ssl.SSLWantReadError:  # the rest of the record is still to come
            data = b""
        except ssl.SSLZeroReturnError:  # close_notify
            self._eof = True
            self._wake()
            return
        except ssl.SSLError:
            self.abort()
            return
        if self._tls_out.pending:  # type: ignore[union-attr]  # e.g. an answer to a TLS 1.3 KeyUpdate
            self._send_plain(self._tls_out.read())  # type: ignore[union-attr]
        if data:
            on_data = self.on_data
            if on_data is not None:
                on_data(data)
            else:
                self._buf += data
                self._wake()

    def _read_records(self, first: bytes) -> bytes:
        """The plaintext of the further records in the input, after `first`."""
        parts = [first]
        try:
            while self._tls_in.pending:  # type: ignore[union-attr]
                parts.append(self._tls_read(_TLS_READ))  # type: ignore[misc]  # set when TLS starts
        except ssl.SSLWantReadError:  # the last record is not complete yet
            pass
        except ssl.SSLZeroReturnError:  # close_notify after the data
            self._eof = True
        return b"".join(parts)

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
        if self.peer is not None:
            self.peer.hold("peer")

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.release("peer")

    def hold(self, reason: str) -> None:
        """Stop reading for `reason`; reading resumes once every reason is released."""
        if not self._holds and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._holds.add(reason)

    def release(self, reason: str) -> None:
        if reason not in self._holds:
            return
        self._holds.discard(reason)
        if not self._holds and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

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
            self.send(data)

    def _send_plain(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def _send_tls(self, data: bytes) -> None:
        try:
            self._tls_write(data)  # type: ignore[misc]  # set when TLS starts
        except ssl.SSLError:
            self.abort()
            return
        self.transport.write(self._tls_out.read())  # type: ignore[union-attr]

    @property
    def tls(self) -> bool:
        return self._tls is not None

    async def start_tls(self, context: ssl.SSLContext, server_side: bool,
                        server_hostname: str | None = None) -> None:
        """Upgrade this connection to TLS in place (after SSLRequest / 'S'); ssl.SSLError if it fails."""
        assert self.transport is not None
        self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._tls_in, self._tls_out, server_side=server_side,
                                     server_hostname=server_hostname)
        self._tls_read, self._tls_write = self._tls.read, self._tls.write  # bound once, for the hot path
        self._handshaking = True
        self.data_received = self._tls_received  # type: ignore[assignment]
        self.transport.set_protocol(self)
        try:
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if self._tls_out.pending:
                        self._send_plain(self._tls_out.read())
                    if self._eof:
                        raise PipeClosed("connection closed during the TLS handshake") from None
                    self._waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
        finally:
            self._handshaking = False
        if self._tls_out.pending:  # the last handshake flight, TLS 1.3 session tickets
            self._send_plain(self._tls_out.read())
        self.send = self._send_tls
        if self._tls_in.pending:  # records that came with the end of the handshake
            self._tls_received(b"")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self._tls is not None and self._tls_out is not None:
                try:
                    self._tls.unwrap()  # close_notify
                except ssl.SSLError:
                    pass
                if self._tls_out.pending:
                    self._send_plain(self._tls_out.read())
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
