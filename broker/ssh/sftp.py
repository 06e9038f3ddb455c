"""A sans-I/O reader of the SFTP v3 stream for the recording (the relay stays raw bytes).

Feed it the client's bytes (`client_data`) and the server's bytes
(`server_data`) as they pass; it calls `on_op(SftpOp)` for each operation
that completed: open (with flags), close (with the bytes read or written
through that handle), remove, rename, mkdir, rmdir, symlink, setstat,
opendir. Stat-like queries are not logged (noise). Bytes are never changed;
a stream it cannot parse turns it off rather than failing the session.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from recorder import SftpOp

# Packet types (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it).
INIT, VERSION, OPEN, CLOSE, READ, WRITE = 1, 2, 3, 4, 5, 6
SETSTAT, OPENDIR, REMOVE, MKDIR, RMDIR, RENAME, SYMLINK = 9, 11, 13, 14, 15, 18, 20
STATUS, HANDLE, DATA, EXTENDED = 101, 102, 103, 200

_MAX_PACKET = 1 << 20  # OpenSSH's sftp-server limit is 256 KiB; anything bigger is not SFTP


def _flags(pflags: int) -> str:
    mode = ("r" if pflags & 1 else "") + ("w" if pflags & 2 else "")
    if pflags & 4:
        mode += "a"
    return mode or "r"


@dataclass
class _Open:
    path: str
    flags: str
    bytes: int = 0
    is_dir: bool = False


@dataclass
class _Pending:
    op: str
    path: str = ""
    target: str | None = None
    flags: str | None = None
    handle: bytes = b""
    size: int = 0


class _Reader:
    """Reads SSH strings and integers from one packet body."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def u32(self) -> int:
        (value,) = struct.unpack_from(">I", self.buf, self.pos)
        self.pos += 4
        return value

    def u64(self) -> int:
        (value,) = struct.unpack_from(">Q", self.buf, self.pos)
        self.pos += 8
        return value

    def raw(self) -> bytes:
        n = self.u32()
        if self.pos + n > len(self.buf):
            raise ValueError("string runs past the packet")
        value = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return value

    def skip_string(self) -> int:
        n = self.u32()
        self.pos += n
        return n

    def text(self) -> str:
        return self.raw().decode("utf-8", "replace")


class _Framer:
    """Cuts a byte stream into SFTP packets without copying large payloads twice."""

    def __init__(self, handle: Callable[[int, memoryview], None]) -> None:
        self._buf = bytearray()
        self._handle = handle

    def feed(self, data: bytes) -> None:
        self._buf += data
        buf = self._buf
        start = 0
        view = memoryview(buf)
        try:
            while len(buf) - start >= 5:
                (length,) = struct.unpack_from(">I", buf, start)
                if length < 1 or length > _MAX_PACKET:
                    raise ValueError(f"bad sftp packet length {length}")
                if len(buf) - start < 4 + length:
                    break
                self._handle(buf[start + 4], view[start + 5:start + 4 + length])
                start += 4 + length
        finally:
            view.release()
        if start:
            del buf[:start]


class SftpLog:
    """Turns the two directions of an SFTP channel into SftpOp events."""

    def __init__(self, on_op: Callable[[SftpOp], None]) -> None:
        self._on_op = on_op
        self._pending: dict[int, _Pending] = {}
        self._handles: dict[bytes, _Open] = {}
        self._client = _Framer(self._client_packet)
        self._server = _Framer(self._server_packet)
        self.broken = False

    def client_data(self, data: bytes) -> None:
        if not self.broken:
            self._feed(self._client, data)

    def server_data(self, data: bytes) -> None:
        if not self.broken:
            self._feed(self._server, data)

    def close(self) -> None:
        """Log handles the session left open (e.g. a transfer cut at expiry)."""
        for h in self._handles.values():
            if not h.is_dir:
                self._on_op(SftpOp(op="close", path=h.path, bytes=h.bytes, flags=h.flags, ok=False,
                                   error="session ended with the file open"))
        self._handles.clear()

    def _feed(self, framer: _Framer, data: bytes) -> None:
        try:
            framer.feed(data)
        except (ValueError, struct.error, IndexError):
            self.broken = True  # not SFTP as we know it: keep relaying, stop logging
            self._on_op(SftpOp(op="other", path="", ok=False, error="sftp stream not understood; log stopped"))

    # -------------------------------------------------------- client -> server

    def _client_packet(self, kind: int, body: memoryview) -> None:
        if kind == INIT:
            return
        r = _Reader(body)
        req_id = r.u32()
        if kind == OPEN:
            path = r.text()
            self._pending[req_id] = _Pending("open", path, flags=_flags(r.u32()))
        elif kind == OPENDIR:
            self._pending[req_id] = _Pending("opendir", r.text())
        elif kind == CLOSE:
            self._pending[req_id] = _Pending("close", handle=r.raw())
        elif kind == READ:
            self._pending[req_id] = _Pending("read", handle=r.raw())
        elif kind == WRITE:
            handle = r.raw()
            r.u64()
            self._pending[req_id] = _Pending("write", handle=handle, size=r.skip_string())
        elif kind in (REMOVE, MKDIR, RMDIR, SETSTAT):
            op = {REMOVE: "remove", MKDIR: "mkdir", RMDIR: "rmdir", SETSTAT: "setstat"}[kind]
            self._pending[req_id] = _Pending(op, r.text())
        elif kind == RENAME:
            self._pending[req_id] = _Pending("rename", r.text(), target=r.text())
        elif kind == SYMLINK:
            first, second = r.text(), r.text()
            # OpenSSH sends (target, link) where the draft says (link, target).
            self._pending[req_id] = _Pending("symlink", second, target=first)
        elif kind == EXTENDED:
            name = r.text()
            if name == "posix-rename@openssh.com":
                self._pending[req_id] = _Pending("rename", r.text(), target=r.text())

    # -------------------------------------------------------- server -> client

    def _server_packet(self, kind: int, body: memoryview) -> None:
        if kind == VERSION:
            return
        r = _Reader(body)
        req_id = r.u32()
        pending = self._pending.pop(req_id, None)
        if pending is None:
            return
        if kind == DATA and pending.op == "read":
            h = self._handles.get(pending.handle)
            if h is not None:
                h.bytes += r.skip_string()
        elif kind == HANDLE and pending.op in ("open", "opendir"):
            handle = r.raw()
            self._handles[handle] = _Open(pending.path, pending.flags or "", is_dir=pending.op == "opendir")
            self._on_op(SftpOp(op=pending.op, path=pending.path, flags=pending.flags))
        elif kind == STATUS:
            code = r.u32()
            message = r.text() if r.pos < len(body) else ""
            self._status(pending, code, message)

    def _status(self, pending: _Pending, code: int, message: str) -> None:
        ok = code == 0
        error = None if ok else (message or f"status {code}")
        if pending.op == "read":
            return  # EOF or an error on a read: the close carries the total
        if pending.op == "write":
            h = self._handles.get(pending.handle)
            if h is not None and ok:
                h.bytes += pending.size
            return
        if pending.op == "close":
            h = self._handles.pop(pending.handle, None)
            if h is not None and not h.is_dir:
                self._on_op(SftpOp(op="close", path=h.path, bytes=h.bytes, flags=h.flags, ok=ok, error=error))
            return
        self._on_op(SftpOp(op=pending.op, path=pending.path, target=pending.target, flags=pending.flags,
                           ok=ok, error=error))
