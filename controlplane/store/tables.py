"""The control plane's tables (SQLAlchemy Core), as the latest migration leaves them.

Portable types only, so the same tables and queries serve SQLite and PostgreSQL:
times are BIGINT microseconds since the Unix epoch (UTC), durations BIGINT
microseconds, JSON as TEXT, booleans as BOOLEAN. A change here is a new step in
`migrations.py`.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# An auto-incrementing 64-bit key: INTEGER PRIMARY KEY (rowid) in SQLite, BIGSERIAL elsewhere.
_AutoKey = BigInteger().with_variant(Integer(), "sqlite")

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_us", BigInteger, nullable=False),
)



def _target_columns() -> list[Column[Any]]:
    """Who a grant is for and on what: a request's, and again its sessions' (lists need no join)."""
    return [
        Column("user", String(200), nullable=False),
        Column("resource", String(200), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("login", String(200), nullable=False, default=""),
        Column("role", String(200), nullable=False, default=""),
    ]


requests = Table(
    "requests", metadata,
    Column("num", _AutoKey, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    *_target_columns(),
    Column("duration_us", BigInteger, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("ticket", Text, nullable=False, default=""),
    Column("emergency", Boolean, nullable=False, default=False),
    Column("state", String(16), nullable=False),
    Column("decision", Text, nullable=False),
    Column("history", Text, nullable=False, default="{}"),
    Column("created_us", BigInteger, nullable=False),
    Column("activated_us", BigInteger),
    Column("expires_us", BigInteger),
    Column("ended_us", BigInteger),
    Column("pending_deadline_us", BigInteger),
    Column("extensions_used", Integer, nullable=False, default=0),
    Column("current_level", Integer, nullable=False, default=0),
    Column("review_state", String(16), nullable=False, default=""),
    Column("review_by", String(200), nullable=False, default=""),
    Column("review_comment", Text, nullable=False, default=""),
    Column("end_reason", Text, nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("start_us", BigInteger),  # a scheduled window's start (store/windows.py); NULL: at approval
)
Index("ix_requests_state_expires", requests.c.state, requests.c.expires_us)
Index("ix_requests_state_pending", requests.c.state, requests.c.pending_deadline_us)
Index("ix_requests_user_created", requests.c.user, requests.c.created_us)
Index("ix_requests_resource", requests.c.resource)
Index("ix_requests_created", requests.c.created_us)

approvals = Table(
    "approvals", metadata,
    Column("num", _AutoKey, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("extension_id", String(80), nullable=False, default=""),  # "" = the request itself
    Column("approver", String(200), nullable=False),
    Column("level", Integer, nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("at_us", BigInteger, nullable=False),
)
Index("ix_approvals_request", approvals.c.request_id)

extensions = Table(
    "extensions", metadata,
    Column("id", String(80), primary_key=True),
    Column("request_id", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("duration_us", BigInteger, nullable=False),
    Column("justification", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("decision", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("decided_us", BigInteger),
    Column("current_level", Integer, nullable=False, default=0),
)
Index("ix_extensions_request", extensions.c.request_id)
Index("ix_extensions_state", extensions.c.state)

sessions = Table(
    "sessions", metadata,
    Column("num", _AutoKey, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("grant_id", String(64), nullable=False),
    *_target_columns(),
    Column("broker", String(200), nullable=False),
    Column("client_address", String(200), nullable=False, default=""),
    Column("channel", String(32), nullable=False, default=""),
    Column("started_us", BigInteger, nullable=False),
    Column("ended_us", BigInteger),
    Column("end_reason", Text, nullable=False, default=""),
    Column("bytes_in", BigInteger, nullable=False, default=0),
    Column("bytes_out", BigInteger, nullable=False, default=0),
    Column("recording_ref", Text, nullable=False, default=""),
    Column("recording_hash", String(200), nullable=False, default=""),
    Column("last_activity_us", BigInteger),
)
Index("ix_sessions_grant", sessions.c.grant_id)
Index("ix_sessions_user", sessions.c.user)

certificates = Table(
    "certificates", metadata,
    Column("serial", BigInteger, primary_key=True, autoincrement=False),
    Column("grant_id", String(64), nullable=False),
    Column("purpose", String(16), nullable=False),  # "user" or "upstream"
    Column("session_id", String(64), nullable=False, default=""),
    Column("principals", Text, nullable=False),
    Column("issued_us", BigInteger, nullable=False),
    Column("valid_before_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger),
)
Index("ix_certificates_grant", certificates.c.grant_id)

db_tokens = Table(
    "db_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("issued_us", BigInteger, nullable=False),
)
Index("ix_db_tokens_grant", db_tokens.c.grant_id)

audit = Table(
    "audit", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at_us", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("data", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_type", audit.c.type)
Index("ix_audit_subject", audit.c.subject)

# One row: the end of the chain. Every write transaction locks it first (FOR UPDATE
# on PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers), which
# serializes appends and makes a cut tail detectable.
audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Past grants imported from a history file (`jitgate recommend import`): the duration
# recommender's history only. They are never requests or grants (no policy history
# counters, no exports of requests); one `history.imported` audit event per file.
imported_history = Table(
    "imported_history", metadata,
    Column("num", _AutoKey, primary_key=True, autoincrement=True),
    Column("batch", String(64), nullable=False),  # SHA-256 of the imported file
    Column("user", String(200), nullable=False),
    Column("resource", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("labels", Text, nullable=False, default="{}"),
    Column("login", String(200)),  # exactly one of login (ssh) / role (database)
    Column("role", String(200)),
    Column("reason", Text, nullable=False, default=""),
    Column("ticket", Text, nullable=False, default=""),
    Column("requested_us", BigInteger, nullable=False),
    Column("finished_us", BigInteger, nullable=False),  # requested + used: when the use was known
    Column("asked_minutes", Float, nullable=False),
    Column("used_minutes", Float, nullable=False),
    Column("extensions", Integer, nullable=False, default=0),
    Column("imported_us", BigInteger, nullable=False),
)
V4_INDEXES = [
    Index("ix_imported_user_finished", imported_history.c.user, imported_history.c.finished_us),
    Index("ix_imported_resource_finished", imported_history.c.resource, imported_history.c.finished_us),
    Index("ix_imported_batch", imported_history.c.batch),
    Index("ix_imported_requested", imported_history.c.requested_us),
]

# POLICY.md's `history` counters per requester and UTC day of creation, kept by triggers
# on `requests` in the transaction of every change (so any writer, any replica, stays exact).
# A decision sums the whole days inside its 90-day window here and counts only the first,
# partial day from `requests`: constant work instead of a scan of the requester's rows.
history_days = Table(
    "history_days", metadata,
    Column("user", String(200), primary_key=True),
    Column("day", BigInteger, primary_key=True, autoincrement=False),  # created_us // DAY_US
    Column("granted", BigInteger, nullable=False, default=0),  # activated at some point
    Column("denied", BigInteger, nullable=False, default=0),   # state DENIED
    Column("revoked", BigInteger, nullable=False, default=0),  # state REVOKED
    Column("flagged", BigInteger, nullable=False, default=0),  # review FLAGGED
)
DAY_US = 86_400_000_000  # one day in microseconds: history_days.day is created_us // DAY_US
