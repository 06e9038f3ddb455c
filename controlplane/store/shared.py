"""State that every control plane on one store must share, beyond requests and the audit log.

`ca_files`: the CA directory's files (X.509 CA, SSH user and upstream CAs) as the first plane
made them. Private keys are stored exactly as on disk: PKCS#8 encrypted with the CA
passphrase, which never enters the store (every plane gets it from its own secret source).
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, LargeBinary, String, Table, delete, insert, select

from controlplane.store.tables import metadata

CA_FILE_MAX_BYTES = 64 * 1024  # a CA key or certificate is < 4 KiB; anything larger is not ours
CA_FILES_MAX = 64  # files in a CA directory (keys, certificates, rotation history)

ca_files = Table(
    "ca_files", metadata,
    Column("path", String(255), primary_key=True),  # relative to the data directory's `ca/`
    Column("content", LargeBinary, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)


# PostgreSQL: each commit that moves the audit chain's head tells every listening plane the new
# end (`controlplane/scaleout/tailer.py`); NOTIFY is delivered at commit, never for a rollback.
_PG_NOTIFY = [
    "CREATE OR REPLACE FUNCTION jitgate_audit_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "PERFORM pg_notify('jitgate_audit', NEW.seq::text); RETURN NULL; END $$",
    "CREATE TRIGGER audit_head_notify AFTER UPDATE ON audit_head FOR EACH ROW EXECUTE FUNCTION jitgate_audit_notify()",
]


def create_tables(conn: Connection) -> None:
    """Schema step: the shared-state tables, and on PostgreSQL the audit head's NOTIFY trigger."""
    metadata.create_all(conn, tables=[ca_files])
    if conn.dialect.name == "postgresql":
        for ddl in _PG_NOTIFY:
            conn.exec_driver_sql(ddl)


def read_ca_files(conn: Connection) -> dict[str, bytes]:
    """Every stored CA file, path -> content."""
    return {row.path: bytes(row.content) for row in conn.execute(select(ca_files.c.path, ca_files.c.content))}


def write_ca_files(conn: Connection, files: dict[str, bytes], now_us: int) -> None:
    """Replace the stored CA files with `files` (in the caller's transaction)."""
    conn.execute(delete(ca_files))
    if files:
        conn.execute(insert(ca_files), [{"path": p, "content": c, "updated_us": now_us} for p, c in files.items()])


__all__ = ["CA_FILES_MAX", "CA_FILE_MAX_BYTES", "ca_files", "create_tables", "read_ca_files", "write_ca_files"]
