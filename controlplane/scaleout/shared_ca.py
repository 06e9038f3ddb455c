"""The CAs every plane on one store serves: kept in the store's `ca_files`, encrypted as on disk.

At start, under a PostgreSQL advisory lock (two planes starting at once do this one after the
other): if the store has no CA files, this plane loads or makes its CAs as a lone server does
and uploads them; if it has, they are written into this plane's `ca/` first, so `init_pki`
loads the same X.509 CA (the same identities are trusted everywhere) and the same SSH CAs.
Each plane keeps its own server certificate, issued from the shared CA for its own names.

The passphrase that decrypts the keys never enters the store: every plane must get the same
one from a secret source of its own (`JITGATE_CA_PASSPHRASE_FILE` or `_COMMAND`, or
`JITGATE_CA_PASSPHRASE`). A plane whose `ca/` already holds other CA keys is refused rather
than have them silently replaced.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TypeVar

from sqlalchemy import text

from ca.keystore import (
    DEFAULT_PASSPHRASE_FILE,
    PASSPHRASE_COMMAND_ENV,
    PASSPHRASE_ENV,
    PASSPHRASE_FILE_ENV,
    ensure_private_dir,
)
from controlplane.identity import DataDir
from controlplane.store import SqlStore, to_us
from controlplane.store.shared import CA_FILE_MAX_BYTES, CA_FILES_MAX, read_ca_files, write_ca_files
from jitgate.errors import JitgateError

STATE_SUFFIX = ".json"
_CA_LOCK = 7283541  # pg_advisory_xact_lock key: planes starting at once share the CAs one at a time

T = TypeVar("T")


class SharedCAError(JitgateError):
    code = "server.start_failed"


def require_shared_passphrase(environ: Mapping[str, str] | None = None) -> None:
    """A shared store needs the CA passphrase from outside the data directory (see module doc)."""
    env = os.environ if environ is None else environ
    if not any(env.get(n) for n in (PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, PASSPHRASE_COMMAND_ENV)):
        raise SharedCAError(
            "a PostgreSQL store is shared by every plane, and so are its CA keys: give every plane the same "
            f"key passphrase with {PASSPHRASE_FILE_ENV} (a file outside the data directory) or "
            f"{PASSPHRASE_COMMAND_ENV}")


def local_ca_files(ca_dir: Path) -> dict[str, bytes]:
    """The files of a CA directory, relative path -> content (the passphrase file left out)."""
    if not ca_dir.exists():
        return {}
    out: dict[str, bytes] = {}
    for path in sorted(ca_dir.rglob("*")):
        rel = path.relative_to(ca_dir).as_posix()
        if path.is_file() and rel != DEFAULT_PASSPHRASE_FILE:
            out[rel] = path.read_bytes()
    return out


def _check_stored(files: Mapping[str, bytes]) -> None:
    """Fail closed on stored rows that are not what a plane writes (the store is shared input)."""
    if len(files) > CA_FILES_MAX:
        raise SharedCAError(f"the store holds {len(files)} CA files, more than {CA_FILES_MAX}")
    for rel, content in files.items():
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts or rel == DEFAULT_PASSPHRASE_FILE:
            raise SharedCAError(f"the store holds a CA file with a bad path `{rel}`")
        if len(content) > CA_FILE_MAX_BYTES:
            raise SharedCAError(f"the store's CA file `{rel}` is larger than {CA_FILE_MAX_BYTES} bytes")


def _write_local(ca_dir: Path, files: Mapping[str, bytes]) -> None:
    for rel, content in files.items():
        path = ca_dir / rel
        ensure_private_dir(path.parent)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)


def with_shared_cas(store: SqlStore, data_dir: DataDir, load: Callable[[], T]) -> T:
    """Run `load` (e.g. `init_pki`) on a `ca/` that holds the store's CAs; the first plane uploads its own."""
    require_shared_passphrase()
    with store.engine.begin() as conn:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_CA_LOCK})"))
        stored = read_ca_files(conn)
        _check_stored(stored)
        if stored:
            local = local_ca_files(data_dir.ca_dir)
            # Keys and certificates must be the store's; an SSH CA's state file (`*.json`) moves as it
            # signs (`signed_until`), so the store's copy simply replaces a returning plane's.
            foreign = sorted(rel for rel, content in local.items()
                             if stored.get(rel) != content and not rel.endswith(STATE_SUFFIX))
            if foreign:
                raise SharedCAError(
                    f"the data directory `{data_dir.root}` holds CA files that differ from the store's "
                    f"({', '.join(foreign[:3])}): a plane joining a shared store takes its CAs from the store; "
                    "start it on an empty data directory (or move its `ca/` away)")
            ensure_private_dir(data_dir.root)
            ensure_private_dir(data_dir.ca_dir)
            _write_local(data_dir.ca_dir, stored)
            return load()
        result = load()
        write_ca_files(conn, local_ca_files(data_dir.ca_dir), to_us(datetime.now(UTC)) or 0)
        return result


__all__ = ["SharedCAError", "local_ca_files", "require_shared_passphrase", "with_shared_cas"]
