"""`jitgate admin migrate`: bring a store's schema to this jitgate's newest revision (Alembic).

Servers migrate at start too (one at a time, under a lock); this command does it ahead of a
rollout, or shows where a store stands (`--check`: no change, exit 1 when behind).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.output import echo


@click.command("migrate")
@click.option("--store", default=None, envvar="JITGATE_STORE",
              help="store URL (postgresql://user@host:5432/db); default: the data directory's SQLite store")
@click.option("--data-dir", default=None, help="the server's data directory (default $JITGATE_DATA_DIR or ~/.jitgate)")
@click.option("--check", is_flag=True, help="only report; exit 1 when the store is behind, 2 when it is newer")
def migrate(store: str | None, data_dir: str | None, check: bool) -> None:
    """Migrate the store's schema to the newest revision this jitgate knows."""
    from sqlalchemy import create_engine

    from controlplane.config import ConfigError, default_data_dir
    from controlplane.errors import JitError
    from controlplane.identity import DataDir
    from controlplane.scaleout.storeurl import normalize, shown
    from controlplane.store import SqlStore, schema

    try:
        if store:
            url = normalize(store)
        else:
            url = f"sqlite:///{DataDir(Path(data_dir).expanduser() if data_dir else default_data_dir()).db_path}"
    except ConfigError as e:
        echo(f"error: {e}", err=True)
        sys.exit(2)
    head = schema.head()
    if check:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                have = schema.current_revision(conn)
        except Exception as e:
            echo(f"error: cannot open the store `{shown(url)}`: {type(e).__name__}", err=True)
            sys.exit(2)
        finally:
            engine.dispose()
        known = {s.revision for s in schema.script_directory().walk_revisions()}
        echo(f"store `{shown(url)}` is at revision {have or 'none'}; this jitgate's newest is {head}")
        sys.exit(0 if have == head else 2 if have is not None and have not in known else 1)
    try:
        opened = SqlStore.open_url(url)
    except JitError as e:
        echo(f"error: {e} [{e.code}]", err=True)
        sys.exit(2)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        echo(f"error: cannot open the store `{shown(url)}`: {first}", err=True)
        sys.exit(2)
    try:
        with opened.read() as tx:
            have = schema.current_revision(tx.conn)
    finally:
        opened.close()
    echo(f"store `{shown(url)}` is at revision {have} (the newest this jitgate knows: {head})")
