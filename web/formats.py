"""How values look on the console's pages (template filters): times, durations, states, people."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def when(ts: Any) -> str:
    """A protobuf Timestamp or datetime as `2026-12-03 14:05Z`, "" when unset."""
    if ts is None:
        return ""
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
    if ts.seconds == 0 and ts.nanos == 0:
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%MZ")


def span(value: Any) -> str:
    """A Duration or timedelta as `1h30m` (the CLI's form)."""
    from cli.output import duration_text

    if value is None:
        return ""
    if isinstance(value, timedelta):
        return duration_text(value)
    if value.seconds == 0 and value.nanos == 0:
        return ""
    return duration_text(value)


def state(value: int) -> str:
    """A RequestState as its word (`ACTIVE`)."""
    from jitgate.v1 import types_pb2

    return str(types_pb2.RequestState.Name(value)).removeprefix("REQUEST_STATE_")


def review(value: int) -> str:
    from jitgate.v1 import types_pb2

    return str(types_pb2.ReviewState.Name(value)).removeprefix("REVIEW_STATE_")


def extension_state(value: int) -> str:
    from jitgate.v1 import types_pb2

    return str(types_pb2.ExtensionState.Name(value)).removeprefix("EXTENSION_STATE_")


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def minutes(value: float) -> str:
    return f"{value:.0f} min" if value < 120 else f"{value / 60:.1f} h"


def target(req: Any) -> str:
    """`login@resource` or `role@resource`."""
    who = req.login or req.role
    return f"{who}@{req.resource}" if who else req.resource


def levels(approval: Any) -> list[str]:
    """An approval plan as lines: `level 1: 1 of group:managers`."""
    if approval is None or not approval.mode:
        return []
    if approval.mode == "auto":
        return ["approved at once (auto)"]
    if approval.mode == "break_glass":
        return ["break-glass: active at once; reviewed afterwards by " + (", ".join(approval.review) or "-")]
    return [f"level {i + 1}: {lv.min or 1} of {', '.join(lv.approvers)}" for i, lv in enumerate(approval.levels)]


def extension_asked(req: Any) -> Any | None:
    """The extension an ACTIVE grant waits on (what makes it pending on the dashboard), or None."""
    from cli.render import pending_extension

    return pending_extension(req)


FILTERS = {"extension_asked": extension_asked,
           "when": when, "span": span, "state": state, "review": review, "extension_state": extension_state,
           "percent": percent, "minutes": minutes, "target": target, "levels": levels}

__all__ = ["FILTERS", "levels", "minutes", "percent", "span", "state", "target", "when"]
