"""`jitgate server`: run the control plane."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.output import echo
from cli.passphrase_options import passphrase_options


@click.command("server")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="state, CAs and store (default $JITGATE_DATA_DIR or ~/.jitgate)")
@click.option("--policies", default=None, type=click.Path(), help="policies.yaml (a file or a folder)")
@click.option("--listen", default=None, help="host:port (default 127.0.0.1:7443; port 0 picks one)")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), help="server.yaml")
@click.option("--store", default=None, envvar="JITGATE_STORE",
              help="store URL: postgresql://user@host:5432/db, shared by several planes "
                   "(default: SQLite in the data directory)")
@click.option("--metrics", default=None, metavar="HOST:PORT",
              help="serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464)")
@passphrase_options
def server(data_dir: str | None, policies: str | None, listen: str | None, config_file: str | None,
           store: str | None, metrics: str | None) -> None:
    """Run the control plane: gRPC over mTLS, with health and reflection."""
    from controlplane.config import ConfigError, build_config
    from controlplane.server import run_server

    try:
        config = build_config(
            data_dir=Path(data_dir) if data_dir else None, policies=Path(policies) if policies else None,
            listen=listen, config_file=Path(config_file) if config_file else None, store=store,
            metrics=metrics)
    except ConfigError as e:
        echo(f"error: {e}", err=True)
        sys.exit(2)
    sys.exit(run_server(config))
