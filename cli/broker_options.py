"""The options both broker commands take besides their own: the lock state's fail-closed bound,
the event loop, logging, metrics, the key passphrase and the refused-login limits."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli.passphrase_options import passphrase_options
from cli.refusal_options import refusal_options

F = TypeVar("F", bound=Callable[..., Any])


def broker_options(metrics_port: int) -> Callable[[F], F]:
    """Add `--lock-stale-after`, `--uvloop`, `--log-level`, `--metrics` (its example on `metrics_port`),
    the passphrase options and the refusal options to a broker command."""

    def add(command: F) -> F:
        for option in reversed((
            click.option("--lock-stale-after", default=60.0, show_default=True,
                         type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                         help="refuse new sessions after this long without learning the lock state"),
            click.option("--uvloop/--no-uvloop", default=True, show_default=True, help="run on uvloop"),
            click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"])),
            click.option("--metrics", default=None, metavar="HOST:PORT",
                         help=f"serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:{metrics_port})"),
            passphrase_options,
            refusal_options,
        )):
            command = option(command)
        return command

    return add
