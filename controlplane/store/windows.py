"""Scheduled windows in the store: the `start_us` column of `requests` (POLICY.md Additions).

A request with a `start` keeps it while PENDING; once approved its grant is ACTIVE with
`activated_us` = the window's start (in the future until then), so the session gate
refuses it before its window (`ledger.active_grant`). The column is declared in
`tables.py` (new databases get it from v1's create_all); `add_window_column` is the
schema step that adds it to databases made before it existed.
"""
from __future__ import annotations

from sqlalchemy import Connection, inspect


def add_window_column(conn: Connection) -> None:
    """ALTER TABLE requests ADD COLUMN start_us, unless it is there already (a new database)."""
    have = {c["name"] for c in inspect(conn).get_columns("requests")}
    if "start_us" not in have:
        conn.exec_driver_sql("ALTER TABLE requests ADD COLUMN start_us BIGINT")


__all__ = ["add_window_column"]
