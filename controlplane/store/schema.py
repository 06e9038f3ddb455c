"""Schema migrations with Alembic, run in-process: at every store opening and by `jitgate admin migrate`.

The revisions live in `revisions/versions/` (one file per step of `migrations.MIGRATIONS`,
each calling `migrations.apply(N)`). Alembic keeps the applied revision in `alembic_version`;
`schema_version` keeps getting one row per step as before, so an older jitgate still refuses
a schema newer than it knows.

A database made before Alembic (only `schema_version`, at version N) is adopted: it is stamped
at revision N and upgraded from there. A database whose revision this jitgate does not know
(a newer jitgate migrated it) is refused with `store.schema_newer`: a server never runs on a
schema it cannot read correctly.
"""
from __future__ import annotations

from pathlib import Path

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect

from controlplane.errors import JitError
from controlplane.store import migrations

SCRIPTS = Path(__file__).resolve().parent / "revisions"


def revision_of(version: int) -> str:
    """The Alembic revision id of schema step `version` (its file `revisions/versions/rNNNN.py`)."""
    return f"{version:04d}"


def script_directory() -> ScriptDirectory:
    return ScriptDirectory(str(SCRIPTS))


def head() -> str:
    """The newest revision this jitgate knows."""
    rev = script_directory().get_current_head()
    assert rev is not None, "no schema revisions found"
    return rev


def _context(conn: Connection, script: ScriptDirectory) -> MigrationContext:
    def upgrade(rev: str, _context: object) -> object:
        return script._upgrade_revs("head", rev)  # what `alembic upgrade head` runs

    return MigrationContext.configure(connection=conn, opts={"script": script, "fn": upgrade})


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at (None: Alembic never ran on it)."""
    return MigrationContext.configure(connection=conn).get_current_revision()


def migrate(conn: Connection) -> list[str]:
    """Bring the database to the head revision inside the caller's transaction; returns the
    revisions applied. Refuses (`store.schema_newer`) a database at a revision not known here."""
    script = script_directory()
    ctx = _context(conn, script)
    have = ctx.get_current_revision()
    legacy = _legacy_version(conn)
    if legacy > migrations.LATEST:  # whichever record says newer (a step may not be a revision here)
        raise _newer(f"version {legacy}", migrations.LATEST)
    if have is None:
        if legacy:
            # Made before Alembic: adopt it at the step it reached, then upgrade as usual.
            ctx.stamp(script, revision_of(legacy))
            have = revision_of(legacy)
    elif have not in {s.revision for s in script.walk_revisions()}:
        raise _newer(f"revision {have}", head())
    target = head()
    if have == target:
        return []
    try:
        pending = [s.revision for s in script.iterate_revisions(target, have or "base")]
    except CommandError:
        raise _newer(f"revision {have}", target) from None
    with Operations.context(ctx):
        ctx.run_migrations()
    return list(reversed(pending))


def _legacy_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    return migrations.current_version(conn)


def _newer(what: str, latest: object) -> JitError:
    return JitError(
        "store.schema_newer",
        f"the database schema is at {what}, newer than this jitgate knows (its newest is {latest}): "
        "run a jitgate at least as new as the one that migrated it")


__all__ = ["current_revision", "head", "migrate", "revision_of", "script_directory"]
