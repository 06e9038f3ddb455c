"""The refused-login options both brokers take (`--refusal-window`, ...), see broker/refusals.py."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def refusal_options(command: F) -> F:
    """Add `--refusal-window`, `--refusal-reports` and `--refusal-delay-max` to a broker command."""
    from broker.refusals import RefusalLimits

    d = RefusalLimits()
    for option in reversed(
        (
            click.option(
                "--refusal-window",
                type=float,
                default=d.window,
                show_default=True,
                help="seconds over which one source's refused logins are audited as one event with a count",
            ),
            click.option(
                "--refusal-reports",
                type=int,
                default=d.report_first,
                show_default=True,
                help="refused logins per source audited one by one before they are counted "
                "(until the source is quiet for a window)",
            ),
            click.option(
                "--refusal-delay-max",
                type=float,
                default=d.delay_max,
                show_default=True,
                help="longest wait before a failing source's refusal is answered (0 turns the tarpit off)",
            ),
        )
    ):
        command = option(command)
    return command


def refusal_limits(refusal_window: float, refusal_reports: int, refusal_delay_max: float) -> Any:
    """The RefusalLimits of the options (ValueError with a plain message when one is out of range)."""
    from broker.refusals import RefusalLimits

    return RefusalLimits(window=refusal_window, report_first=refusal_reports, delay_max=refusal_delay_max)
