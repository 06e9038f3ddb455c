"""The control plane's store as a history sink and source, used locally on a data directory.

`import_history_file` puts a history file's rows into the store's
`imported_history` table (one `history.imported` audit event with the row count
and the file's SHA-256; a file is imported once). Those rows feed only the
recommender: the server's per-user and per-resource history for explanations and
fallbacks, and training. They never become requests or grants.

`history_from_store` is what `jitgate recommend train` reads without `--history`:
the store's own finished grants (`AuditLog.export_history`) plus the imported
rows. A grant's labels come from the policies when given, else from imported
rows of the same resource.

SQLite in WAL mode lets this run while the server is up on the same directory.
(This lives in the control plane, not in `recommend/`: the recommender is a
library the control plane calls, and it never opens the control plane's store.)
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from ca.errors import CAError
from ca.keystore import ensure_private_dir
from controlplane.auditlog import AuditLog
from controlplane.errors import JitError
from controlplane.identity import DataDir
from controlplane.ledger import Ledger
from controlplane.store import open_store
from policy import PolicySet
from recommend.errors import HistoryError, RecommendError
from recommend.history import HistoryRow, read_history, row_from_json

LOCAL_ACTOR = "local-admin"  # the actor of local admin commands (as `jitgate admin` records them)
ALL_DAYS = 36500.0  # "all of it" for exports that take a number of days


class StoreError(RecommendError):
    """The control plane's store cannot be used as asked; the message says why."""

    code = "recommend.store_unavailable"


@dataclass(frozen=True)
class ImportResult:
    """What an import stored."""

    rows: int
    sha256: str
    db_path: Path


@dataclass(frozen=True)
class StoreHistory:
    """History read from a store: finished grants first, then imported rows."""

    rows: list[HistoryRow]
    grants: int
    imported: int
    warnings: list[str] = field(default_factory=list)


class _NoPolicy:
    """Local history access decides nothing: any use of a policy is a bug, refused."""

    @property
    def current(self) -> NoReturn:
        raise JitError("internal", "local history access has no policy in force")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def db_path(data_dir: str | os.PathLike[str]) -> Path:
    """The store file of a server data directory."""
    return DataDir(Path(data_dir)).db_path


def model_dir_of(data_dir: str | os.PathLike[str]) -> Path:
    """Where the server of `data_dir` loads its duration model from."""
    return Path(data_dir) / "model"


@contextmanager
def _local_audit(data_dir: Path, *, create: bool) -> Iterator[AuditLog]:
    """A short-lived AuditLog on the data directory's store (no CAs, no recommender, no policy)."""
    path = db_path(data_dir)
    if not create and not path.exists():
        raise StoreError(f"{data_dir}: no control plane store here ({path.name}); start the server on it "
                         "or import a history first")
    if create:
        try:
            ensure_private_dir(Path(data_dir))  # the server refuses a data directory others can read
        except CAError as exc:
            raise StoreError(exc.message) from None
    try:
        store = open_store(str(path))
    except Exception as exc:  # sqlalchemy / sqlite errors, a newer schema: one plain line
        raise StoreError(f"{path}: cannot open the store ({exc})") from None
    try:
        yield AuditLog(Ledger(store, _NoPolicy()))
    finally:
        store.close()


def import_rows(data_dir: str | os.PathLike[str], rows: Sequence[HistoryRow], source: str, sha256: str,
                actor: str = LOCAL_ACTOR) -> ImportResult:
    """Import rows into the data directory's store (created if new) under `sha256`."""
    with _local_audit(Path(data_dir), create=True) as audit:
        try:
            count = audit.import_history(actor, rows, source, sha256)
        except JitError as exc:
            raise StoreError(exc.message) from None
    return ImportResult(rows=count, sha256=sha256, db_path=db_path(data_dir))


def import_history_file(data_dir: str | os.PathLike[str], path: str | os.PathLike[str],
                        actor: str = LOCAL_ACTOR) -> ImportResult:
    """Validate a whole history file, then import it (all rows or none)."""
    rows = read_history(path)
    if not rows:
        raise HistoryError(os.fspath(path), 0, "holds no history rows")
    return import_rows(data_dir, rows, os.fspath(path), file_sha256(path), actor)


def count_imported(data_dir: str | os.PathLike[str]) -> int:
    """Imported rows in the data directory's store (0 when there is no store yet)."""
    if not db_path(data_dir).exists():
        return 0
    with _local_audit(Path(data_dir), create=False) as audit:
        with audit.ledger.store.read() as tx:
            return tx.count_imported_history()


def history_from_store(data_dir: str | os.PathLike[str], policies: PolicySet | None = None,
                       days: float | None = None) -> StoreHistory:
    """Finished grants (with sessions) and imported rows of the last `days` (None: all).

    `policies` gives the grants' resource labels (None: labels of imported rows only).
    """
    warnings: list[str] = []
    with _local_audit(Path(data_dir), create=False) as audit:
        imported = [row_from_json(obj) for obj in audit.export_imported_history(days)]
        labels: dict[str, Mapping[str, str]] = {r.resource: dict(r.labels) for r in imported}
        if policies is not None:
            labels.update({name: dict(res.labels) for name, res in policies.resources.items()})
        grants = [row_from_json(obj)
                  for obj in audit.export_history(days if days is not None else ALL_DAYS, labels)]
    unlabelled = sorted({r.resource for r in grants if r.resource not in labels})
    if unlabelled:
        warnings.append(f"no labels known for {', '.join(unlabelled[:5])}"
                        f"{' ...' if len(unlabelled) > 5 else ''} (give --policies)")
    return StoreHistory(rows=grants + imported, grants=len(grants), imported=len(imported), warnings=warnings)


__all__ = ["ImportResult", "StoreError", "StoreHistory", "count_imported", "db_path", "file_sha256",
           "history_from_store", "import_history_file", "import_rows", "model_dir_of"]
