"""Byte builders for the PostgreSQL tests: messages as the client and the server send them."""
from __future__ import annotations

import struct


def msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\x00"


ROW = msg(b"D", struct.pack("!h", 1) + struct.pack("!i", 1) + b"1")


def ready() -> bytes:
    return msg(b"Z", b"I")


def bind(stmt: str, *params: str, portal: str = "") -> bytes:
    body = cstr(portal) + cstr(stmt) + struct.pack("!h", 0) + struct.pack("!h", len(params))
    for v in params:
        body += struct.pack("!i", len(v)) + v.encode()
    return msg(b"B", body + struct.pack("!h", 0))


def execute(portal: str = "") -> bytes:
    return msg(b"E", cstr(portal) + struct.pack("!i", 0))
