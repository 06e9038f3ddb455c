"""Recordings to test with, and waiting without fixed sleeps."""
from __future__ import annotations

import asyncio
import time

from recorder import DbStatement, ExecExit, FileRecordingStore, Kind, SftpOp


def make_terminal(store: FileRecordingStore, session_id: str = "sess-term") -> str:
    """A small sealed terminal recording; returns its ref."""
    w = store.create(session_id, Kind.TERMINAL, {"user": "alice", "target": "web-01", "login": "root"},
                     width=100, height=30, env={"TERM": "xterm-256color", "SHELL": "/bin/bash"})
    w.write_output(b"root@web-01:~# ")
    for ch in b"uptime\r":
        w.write_input(bytes([ch]))
    w.write_output(b"uptime\r\n 12:00:01 up 3 days\r\nroot@web-01:~# ")
    w.resize(120, 40)
    w.mark("access expires in 5 minutes")
    w.close_sync("expired")
    return w.ref


def make_all_kinds(store: FileRecordingStore) -> dict[str, str]:
    """One sealed recording of every kind; kind -> ref."""
    refs = {"terminal": make_terminal(store)}
    w = store.create("sess-exec", Kind.EXEC, {"user": "bob"}, command="tar czf - /etc")
    w.write_input(b"yes\n")
    w.write_output(b"\x1f\x8b\x08\x00binary\xff\xfe")
    w.write_stderr(b"tar: Removing leading `/'\n")
    w.write_event(ExecExit(status=2))
    w.close_sync()
    refs["exec"] = w.ref
    w = store.create("sess-sftp", Kind.SFTP, {"user": "bob"})
    w.write_event(SftpOp("open", "/srv/app/config.yml", flags="w"))
    w.write_event(SftpOp("write", "/srv/app/config.yml", bytes=4096))
    w.write_event(SftpOp("close", "/srv/app/config.yml"))
    w.write_event(SftpOp("rename", "/srv/app/a", target="/srv/app/b"))
    w.write_event(SftpOp("remove", "/srv/app/old", ok=False, error="permission denied"))
    w.write_event(SftpOp("mkdir", "/srv/app/new"))
    w.close_sync()
    refs["sftp"] = w.ref
    w = store.create("sess-db", Kind.DB, {"user": "carol", "resource": "orders", "role": "readonly"})
    now = time.time()
    w.write_event(DbStatement(text="SELECT * FROM orders WHERE id = $1", parameters=["42"],
                              started_at=now, duration_ms=1.25, rows=1, command_tag="SELECT 1",
                              protocol="extended"))
    w.write_event(DbStatement(text="DELETE FROM orders", started_at=now + 0.5, duration_ms=0.3,
                              error_sqlstate="25006",
                              error_message="cannot execute DELETE in a read-only transaction"))
    w.close_sync("revoked")
    refs["db"] = w.ref
    return refs


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Await a condition (never a fixed sleep): fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
