"""The SFTP operation log from byte strings (no network)."""
from __future__ import annotations

import struct

from broker.ssh.sftp import CLOSE, DATA, HANDLE, INIT, OPEN, READ, REMOVE, RENAME, STATUS, VERSION, WRITE, SftpLog


def s(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">I", len(b)) + b


def pkt(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def status(req: int, code: int, msg: str = "") -> bytes:
    return pkt(STATUS, u32(req) + u32(code) + s(msg) + s(""))


def test_upload_download_remove_rename_in_split_chunks() -> None:
    ops = []
    log = SftpLog(ops.append)
    client = (pkt(INIT, u32(3))
              + pkt(OPEN, u32(1) + s("/tmp/up") + u32(0x1A) + u32(0))
              + pkt(WRITE, u32(2) + s(b"H1") + struct.pack(">Q", 0) + s(b"x" * 5000))
              + pkt(WRITE, u32(3) + s(b"H1") + struct.pack(">Q", 5000) + s(b"y" * 100))
              + pkt(CLOSE, u32(4) + s(b"H1"))
              + pkt(OPEN, u32(5) + s("/etc/motd") + u32(1) + u32(0))
              + pkt(READ, u32(6) + s(b"H2") + struct.pack(">Q", 0) + u32(32768))
              + pkt(CLOSE, u32(7) + s(b"H2"))
              + pkt(REMOVE, u32(8) + s("/tmp/gone"))
              + pkt(RENAME, u32(9) + s("/tmp/a") + s("/tmp/b"))
              + pkt(OPEN, u32(10) + s("/root/secret") + u32(1) + u32(0)))
    server = (pkt(VERSION, u32(3))
              + pkt(HANDLE, u32(1) + s(b"H1")) + status(2, 0) + status(3, 0) + status(4, 0)
              + pkt(HANDLE, u32(5) + s(b"H2")) + pkt(DATA, u32(6) + s(b"z" * 300)) + status(7, 0)
              + status(8, 0) + status(9, 2, "No such file") + status(10, 3, "Permission denied"))
    for i in range(0, len(client), 7):  # awkward chunking: packets split anywhere
        log.client_data(client[i:i + 7])
    for i in range(0, len(server), 5):
        log.server_data(server[i:i + 5])
    got = [(o.op, o.path, o.bytes, o.ok) for o in ops]
    assert got == [
        ("open", "/tmp/up", 0, True), ("close", "/tmp/up", 5100, True),
        ("open", "/etc/motd", 0, True), ("close", "/etc/motd", 300, True),
        ("remove", "/tmp/gone", 0, True), ("rename", "/tmp/a", 0, False), ("open", "/root/secret", 0, False),
    ]
    assert ops[0].flags == "w" and ops[2].flags == "r"
    assert ops[5].target == "/tmp/b" and ops[5].error == "No such file"


def test_garbage_turns_logging_off_without_raising() -> None:
    ops = []
    log = SftpLog(ops.append)
    log.client_data(b"\xff\xff\xff\xff\x01garbage")
    log.client_data(pkt(REMOVE, u32(1) + s("/x")))
    assert log.broken and [o.op for o in ops] == ["other"]


def test_handles_left_open_are_logged_at_close() -> None:
    ops = []
    log = SftpLog(ops.append)
    log.client_data(pkt(OPEN, u32(1) + s("/big") + u32(1) + u32(0)))
    log.server_data(pkt(HANDLE, u32(1) + s(b"H")))
    log.client_data(pkt(READ, u32(2) + s(b"H") + struct.pack(">Q", 0) + u32(10)))
    log.server_data(pkt(DATA, u32(2) + s(b"0123456789")))
    log.close()
    assert (ops[-1].op, ops[-1].bytes, ops[-1].ok) == ("close", 10, False)
