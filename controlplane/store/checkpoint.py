"""SQLite WAL checkpoints in a thread of their own, never inside a commit on the request path.

SQLite's automatic checkpoint runs inside whichever commit makes the WAL cross 1000
pages: that commit copies every page into the database file and fsyncs it, a stall of
milliseconds for one unlucky request (the benchmark's p99). With the automatic
checkpoint off on the store's connections, this thread runs a PASSIVE checkpoint
(it never blocks readers or writers) every `interval` seconds on its own connection.
Durability is unchanged: a commit is in the WAL either way, and a checkpoint is crash-safe.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("jitgate.store")


class Checkpointer:
    """`start()` once; `stop()` ends the thread after one last checkpoint."""

    def __init__(self, path: Path, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.checkpoints += 1

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.checkpoint(conn)
                except sqlite3.Error as e:  # busy or locked now: the next round catches up
                    log.debug("checkpoint skipped: %s", e)
            self.checkpoint(conn)
        except sqlite3.Error as e:
            log.warning("checkpoint failed: %s", e)
        finally:
            conn.close()
