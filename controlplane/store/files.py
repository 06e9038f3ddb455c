"""The SQLite store's files are the owner's only (0600), like the keys beside them.

The store holds every request's reason, the audit log and session metadata.
SQLite creates a new database file with 0644 less the umask, and makes its
`-wal` and `-shm` files with the database file's own mode; so the database file
is created 0600 here before SQLite opens it, and a store an earlier version left
readable by others is tightened (with one warning) rather than used as it is.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("jitgate.store")

_DB_FILE_MODE = 0o600
_SIDE_FILES = ("-wal", "-shm", "-journal")


def prepare_private_db_file(path: Path) -> None:
    """Create `path` empty at 0600 if missing; bring it and its WAL/shm/journal files to 0600."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _DB_FILE_MODE)
        os.close(fd)
    except FileExistsError:
        pass
    for file in (path, *(path.with_name(path.name + suffix) for suffix in _SIDE_FILES)):
        try:
            mode = stat.S_IMODE(os.stat(file).st_mode)
        except FileNotFoundError:
            continue
        if mode != _DB_FILE_MODE:
            os.chmod(file, _DB_FILE_MODE)  # the umask may have taken bits from os.open's mode, too
            if mode & 0o077:
                log.warning("store file `%s` had mode %04o, readable by others: set to 0600", file, mode)
