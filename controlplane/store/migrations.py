"""Ordered schema steps: each database is brought to `LATEST` when a store opens it.

Alembic runs them (`schema.py`): step N is the revision file `revisions/versions/rNNNN.py`,
whose `upgrade()` calls `apply(N)`. To add a step: write its DDL as a function of a
`Connection` in your own module, append `(N, function)` to `MIGRATIONS` below, and add
`revisions/versions/rNNNN.py` (copy the last one; set `revision`, `down_revision`, `apply(N)`).
A test checks that the two lists agree.

Steps are append-only (never edit a released one). Most are portable DDL; the one
dialect-specific step is v5's triggers (SQLite trigger bodies, a plpgsql function on
PostgreSQL), chosen by the connection's dialect. Each step runs inside the engine's
opening transaction (see `engine.py`, which also serializes two servers migrating).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Index, insert, select

from controlplane.audit import GENESIS
from controlplane.store import shared
from controlplane.store.locks import create_lock_tables
from controlplane.store.outbox import create_outbox
from controlplane.store.people import create_people_tables
from controlplane.store.recordings import create_recording_tables
from controlplane.store.tables import (
    DAY_US,
    approvals,
    audit,
    audit_head,
    certificates,
    db_tokens,
    extensions,
    history_days,
    imported_history,
    metadata,
    requests,
    schema_version,
    sessions,
)
from controlplane.store.windows import add_window_column

V1_TABLES = [requests, approvals, extensions, sessions, certificates, db_tokens, audit, audit_head]

# Defined at import, so they are attached to `requests` before any step runs: a new database
# gets them from v1's create_all already (then v2 and v3 find them there), as it always has.
V2_INDEXES = [
    # Finished grants per user and per resource, newest first (recommender history).
    Index("ix_requests_user_ended", requests.c.user, requests.c.ended_us),
    Index("ix_requests_resource_ended", requests.c.resource, requests.c.ended_us),
    # Covers the history counters: an index-only scan per decision.
    Index("ix_requests_user_history", requests.c.user, requests.c.created_us, requests.c.activated_us,
          requests.c.state, requests.c.review_state),
]
V3_INDEXES = [Index("ix_requests_review", requests.c.review_state)]  # owed break-glass reviews (the dashboard)


def _create_indexes(conn: Connection, indexes: Sequence[Index]) -> None:
    for ix in indexes:
        ix.create(conn, checkfirst=True)


def _drop_indexes(conn: Connection, names: Sequence[str]) -> None:
    for name in names:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=V1_TABLES)
    conn.execute(insert(audit_head).values(id=1, seq=0, hash=GENESIS))


def _v2(conn: Connection) -> None:
    _create_indexes(conn, V2_INDEXES)


def _v3(conn: Connection) -> None:
    _create_indexes(conn, V3_INDEXES)


def _v4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[imported_history])  # with its V4_INDEXES

# v5: `history_days` (see tables.py) and the triggers that keep it.
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
    """The DDL that keeps `history_days` in step with `requests`, for `dialect`."""
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
    _drop_indexes(conn, V6_DROPPED)
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
    _drop_indexes(conn, V7_DROPPED)
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
    (8, shared.create_tables),  # CA files every plane on one store shares
    (9, create_people_tables),  # people who signed in (OIDC) and sign-in nonces
    (10, create_recording_tables),  # uploaded recordings, their parts, seal keys (store/recordings.py)
    (11, create_outbox),  # the notification outbox (controlplane/store/outbox.py)
    (12, create_lock_tables),  # locks (controlplane/store/locks.py)
    (13, add_window_column),  # requests.start_us (controlplane/store/windows.py)
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    """The highest applied version (0 for an empty database)."""
    metadata.create_all(conn, tables=[schema_version])
    v = conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())
                     .limit(1)).scalar()
    return int(v or 0)


def apply(version: int) -> None:
    """Run step `version` on Alembic's connection and record it in `schema_version` (a revision's
    `upgrade()`: Alembic records the revision, `schema_version` keeps older jitgates refusing)."""
    from alembic import op

    conn = op.get_bind()
    dict(MIGRATIONS)[version](conn)
    now_us = (datetime.now(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    metadata.create_all(conn, tables=[schema_version])
    conn.execute(insert(schema_version).values(version=version, applied_us=now_us))


def migrate(conn: Connection, now_us: int = 0) -> list[int]:
    """Apply every pending step in order (through Alembic) inside the caller's transaction;
    returns the versions applied. `now_us` is kept for callers; `apply` stamps the time."""
    from controlplane.store import schema

    return [int(rev) for rev in schema.migrate(conn)]
