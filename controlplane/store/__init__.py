"""The control plane's store: one interface (`SqlStore` + `Tx`), SQLite by default, PostgreSQL-ready.

`engine` opens the database, migrates it (`migrations`, over the tables in `tables`) and runs
transactions; a `Tx` is one class per table group: `requests` (requests, approvals,
extensions, deadlines), `sessions`, `credentials` (certificate serials, database tokens),
`history` (policy history counters, used minutes, imported history) and `audit` (the chain).
"""
from __future__ import annotations

from controlplane.store.base import from_us, to_us
from controlplane.store.credentials import IssuedCertificate
from controlplane.store.engine import SqlStore, Tx, open_store
from controlplane.store.history import ImportedRow
from controlplane.store.requests import DueEnded

__all__ = ["DueEnded", "ImportedRow", "IssuedCertificate", "SqlStore", "Tx", "from_us", "open_store", "to_us"]
