"""The control plane's store: one interface (`SqlStore` + `Tx`), SQLite by default, PostgreSQL-ready."""
from __future__ import annotations

from controlplane.store.sql import SqlStore, Tx, from_us, to_us

__all__ = ["SqlStore", "Tx", "from_us", "to_us", "open_store"]


def open_store(target: str) -> SqlStore:
    """A store from a SQLAlchemy URL, or a SQLite file path."""
    if "://" in target:
        return SqlStore.open_url(target)
    return SqlStore.open_sqlite(target)
