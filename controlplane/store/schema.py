"""The control plane's tables (SQLAlchemy Core) and ordered schema migrations.

Portable types only, so the same tables and queries serve SQLite and PostgreSQL:
times are BIGINT microseconds since the Unix epoch (UTC), durations BIGINT
microseconds, JSON as TEXT, booleans as BOOLEAN.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger, Boolean, Column, Connection, Float, Index, Integer, MetaData, String, Table, Text,
    insert, select,
)

metadata = MetaData()

# An auto-incrementing 64-bit key: INTEGER PRIMARY KEY (rowid) in SQLite, BIGSERIAL elsewhere.
_AutoKey = BigInteger().with_variant(Integer(), "sqlite")

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_us", BigInteger, nullable=False),
)

requests = Table(
    "requests", metadata,
    Column("num", _AutoKey, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("user", String(200), nullable=False),
    Column("resource", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("login", String(200), nullable=False, default=""),
    Column("role", String(200), nullable=False, default=""),
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
    Column("user", String(200), nullable=False),
    Column("resource", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("login", String(200), nullable=False, default=""),
    Column("role", String(200), nullable=False, default=""),
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

V1_TABLES = [requests, approvals, extensions, sessions, certificates, db_tokens, audit, audit_head]


def _v1(conn: Connection) -> None:
    from controlplane.audit import GENESIS
    metadata.create_all(conn, tables=V1_TABLES)
    conn.execute(insert(audit_head).values(id=1, seq=0, hash=GENESIS))


def _v2(conn: Connection) -> None:
    # Finished grants per user and per resource, newest first (recommender history).
    for ix in V2_INDEXES:
        ix.create(conn, checkfirst=True)


V2_INDEXES = [
    Index("ix_requests_user_ended", requests.c.user, requests.c.ended_us),
    Index("ix_requests_resource_ended", requests.c.resource, requests.c.ended_us),
    # Covers the history counters: an index-only scan per decision.
    Index("ix_requests_user_history", requests.c.user, requests.c.created_us, requests.c.activated_us,
          requests.c.state, requests.c.review_state),
]

def _v3(conn: Connection) -> None:
    # Owed break-glass reviews (the dashboard).
    for ix in V3_INDEXES:
        ix.create(conn, checkfirst=True)


V3_INDEXES = [Index("ix_requests_review", requests.c.review_state)]

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


def _v4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[imported_history])  # with its V4_INDEXES

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
DAY_US = 86_400_000_000

# Each counter as an SQL expression of a row (0 or 1); `{r}` is NEW or OLD.
_FLAGS = {
    "granted": "CASE WHEN {r}.activated_us IS NULL THEN 0 ELSE 1 END",
    "denied": "CASE WHEN {r}.state = 'DENIED' THEN 1 ELSE 0 END",
    "revoked": "CASE WHEN {r}.state = 'REVOKED' THEN 1 ELSE 0 END",
    "flagged": "CASE WHEN {r}.review_state = 'FLAGGED' THEN 1 ELSE 0 END",
}
_COUNTERS = list(_FLAGS)


def _upsert(row: str, sign: str) -> str:
    """Add (sign "+") or take away ("-") `row`'s flags on its (user, day) counters."""
    cols = ", ".join(_COUNTERS)
    vals = ", ".join(f"{sign}({_FLAGS[c].format(r=row)})" for c in _COUNTERS)
    sets = ", ".join(f"{c} = history_days.{c} + excluded.{c}" for c in _COUNTERS)
    return (f'INSERT INTO history_days ("user", day, {cols}) VALUES ({row}."user", {row}.created_us / {DAY_US}, '
            f'{vals}) ON CONFLICT ("user", day) DO UPDATE SET {sets}')


# An update touches the counters only when a counted flag (or the row's key) changes:
# the sweeper's mass expiry (ACTIVE -> EXPIRED) changes none.
_CHANGED = " OR ".join(
    [f"({_FLAGS[c].format(r='OLD')}) <> ({_FLAGS[c].format(r='NEW')})" for c in _COUNTERS]
    + ['OLD."user" <> NEW."user"', "OLD.created_us <> NEW.created_us"])


def _history_triggers(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER history_days_insert AFTER INSERT ON requests BEGIN {_upsert('NEW', '+')}; END",
            f"CREATE TRIGGER history_days_update AFTER UPDATE ON requests WHEN {_CHANGED} "
            f"BEGIN {_upsert('OLD', '-')}; {_upsert('NEW', '+')}; END",
            f"CREATE TRIGGER history_days_delete AFTER DELETE ON requests BEGIN {_upsert('OLD', '-')}; END",
        ]
    # PostgreSQL: one plpgsql function for the three events.
    return [
        "CREATE OR REPLACE FUNCTION jitgate_history_days() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' THEN {_upsert('OLD', '-')}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN {_upsert('NEW', '+')}; END IF; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER history_days_insert AFTER INSERT ON requests "
        "FOR EACH ROW EXECUTE FUNCTION jitgate_history_days()",
        f"CREATE TRIGGER history_days_update AFTER UPDATE ON requests FOR EACH ROW WHEN ({_CHANGED}) "
        "EXECUTE FUNCTION jitgate_history_days()",
        "CREATE TRIGGER history_days_delete AFTER DELETE ON requests "
        "FOR EACH ROW EXECUTE FUNCTION jitgate_history_days()",
    ]


def _v5(conn: Connection) -> None:
    metadata.create_all(conn, tables=[history_days])
    sums = ", ".join(f"SUM({_FLAGS[c].format(r='requests')})" for c in _COUNTERS)
    conn.exec_driver_sql(
        f'INSERT INTO history_days ("user", day, {", ".join(_COUNTERS)}) '
        f'SELECT "user", created_us / {DAY_US}, {sums} FROM requests GROUP BY "user", created_us / {DAY_US}')
    for ddl in _history_triggers(conn.dialect.name):
        conn.exec_driver_sql(ddl)


# Every index is one more B-tree page written (to the WAL) by each new request. The
# history counters make the covering history index redundant, ix_requests_resource is a
# prefix of ix_requests_resource_ended, and only owed reviews are ever looked up by
# review state (a partial index: other rows never touch it).
V6_DROPPED = ["ix_requests_user_history", "ix_requests_resource", "ix_requests_review"]


def _v6(conn: Connection) -> None:
    for name in V6_DROPPED:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_requests_review_owed ON requests (review_state) "
                         "WHERE review_state = 'OWED'")


# Indexes a new request does not need to touch: finished grants are looked up only by the
# time they ended (`ended_us >= ?` implies NOT NULL, so the partial indexes serve it) and
# pending deadlines only among PENDING requests (queried with the literal state). Lists
# by resource, newest first, get back their own index (v6 left them a sort).
V7_DROPPED = ["ix_requests_user_ended", "ix_requests_resource_ended", "ix_requests_state_pending"]
V7_CREATED = {
    "ix_requests_user_ended_p": 'requests ("user", ended_us) WHERE ended_us IS NOT NULL',
    "ix_requests_resource_ended_p": "requests (resource, ended_us) WHERE ended_us IS NOT NULL",
    "ix_requests_pending_p": "requests (pending_deadline_us) WHERE state = 'PENDING'",
    "ix_requests_resource": "requests (resource)",
}


def _v7(conn: Connection) -> None:
    for name in V7_DROPPED:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    for name, spec in V7_CREATED.items():
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {spec}")


# Ordered migrations: version -> step. Append only; never edit a released step.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _v1),
    (2, _v2),
    (3, _v3),
    (4, _v4),
    (5, _v5),
    (6, _v6),
    (7, _v7),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    """The highest applied version (0 for an empty database)."""
    metadata.create_all(conn, tables=[schema_version])
    v = conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())
                     .limit(1)).scalar()
    return int(v or 0)


def migrate(conn: Connection, now_us: int) -> list[int]:
    """Apply every pending migration in order inside the caller's transaction; returns those applied."""
    have = current_version(conn)
    if have > LATEST:
        raise RuntimeError(f"the database schema is version {have}, newer than this jitgate ({LATEST})")
    applied = []
    for version, step in MIGRATIONS:
        if version > have:
            step(conn)
            conn.execute(insert(schema_version).values(version=version, applied_us=now_us))
            applied.append(version)
    return applied
