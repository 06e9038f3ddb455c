"""`--passphrase-file` and `--passphrase-command` for the commands that unlock keys at start.

They are the command-line spelling of `JITGATE_CA_PASSPHRASE_FILE` and
`JITGATE_CA_PASSPHRASE_COMMAND` (see ca/keystore.py): a given option is put in
this process's environment, where every reader of the passphrase (the CAs, the
server key, a broker's host and recorder keys) looks, so one setting serves them
all. Giving one while another source is set is refused at start as ambiguous.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ca.keystore import PASSPHRASE_COMMAND_ENV, PASSPHRASE_FILE_ENV

F = TypeVar("F", bound=Callable[..., Any])


def _export(name: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            os.environ[name] = value

    return callback


def passphrase_options(f: F) -> F:
    """Adds --passphrase-file and --passphrase-command (not passed to the command itself)."""
    f = click.option("--passphrase-command", envvar=PASSPHRASE_COMMAND_ENV, expose_value=False,
                     callback=_export(PASSPHRASE_COMMAND_ENV), metavar="COMMAND",
                     help=f"a command printing the key passphrase (run without a shell; ${PASSPHRASE_COMMAND_ENV})")(f)
    return click.option("--passphrase-file", envvar=PASSPHRASE_FILE_ENV, expose_value=False,
                        callback=_export(PASSPHRASE_FILE_ENV), type=click.Path(dir_okay=False), metavar="PATH",
                        help=f"a 0600 file holding the key passphrase, outside the data directory "
                             f"(${PASSPHRASE_FILE_ENV})")(f)
