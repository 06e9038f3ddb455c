"""Human text for requests, decisions and sessions (the `--output table` side).

Every line and cell goes out through `cli.output`, which shows what users wrote
(reasons, tickets, comments, justifications, names) literally.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from cli.client import span, when
from cli.output import echo, print_fields, print_table


def state_name(value: int) -> str:
    from jitgate.v1 import types_pb2

    return types_pb2.RequestState.Name(value).removeprefix("REQUEST_STATE_")


def review_name(value: int) -> str:
    from jitgate.v1 import types_pb2

    return "" if value == 0 else types_pb2.ReviewState.Name(value).removeprefix("REVIEW_STATE_")


def target(req: Any) -> str:
    what = req.login or req.role
    return f"{what}@{req.resource}" if what else req.resource


def _until(ts: Any) -> str:
    if not ts.seconds:
        return ""
    left = ts.ToDatetime(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)
    if left.total_seconds() <= 0:
        return when(ts)
    return f"{when(ts)} (in {span(dt.timedelta(seconds=int(left.total_seconds())))})"


def extension_state_name(value: int) -> str:
    from jitgate.v1 import types_pb2

    return types_pb2.ExtensionState.Name(value).removeprefix("EXTENSION_STATE_")


def pending_extension(req: Any) -> Any | None:
    """The extension of an ACTIVE grant that waits for approval, if any (at most one at a time)."""
    if state_name(req.state) != "ACTIVE":
        return None
    return next((e for e in req.extensions if extension_state_name(e.state) == "PENDING"), None)


def _level_met(level: Any, approvals: Any, i: int) -> bool:
    return sum(1 for a in approvals if a.level == i and a.approved) >= max(level.min, 1)


def extension_level(ext: Any) -> int:
    """The extension's next level to be met (0-based; the number of levels once all are)."""
    levels = ext.decision.approval.levels
    return next((i for i, level in enumerate(levels) if not _level_met(level, ext.approvals, i)), len(levels))


def level_lines(req: Any) -> list[str]:
    """One line per approval level of a request: who may approve, and who did."""
    return _level_lines(req.decision.approval.levels, req.approvals, req.current_level)


def _level_lines(levels: Any, approvals: Any, current: int) -> list[str]:
    lines = []
    for i, level in enumerate(levels):
        votes = [a for a in approvals if a.level == i and a.approved]
        mark = "done" if _level_met(level, approvals, i) else ("next" if i == current else "later")
        who = ", ".join(level.approvers)
        by = f" — approved by {', '.join(a.approver for a in votes)}" if votes else ""
        lines.append(f"  level {i + 1}/{len(levels)} [{mark}]: {level.min or 1} of {who}{by}")
    return lines


def extension_outcome(req: Any, ext: Any) -> list[str]:
    """What an approver or requester needs to know about one extension: its state and, while it
    waits, each level (`approve EXTENSION_ID` for the next one)."""
    state = extension_state_name(ext.state)
    lines = [f"extension {ext.id} of request {req.id}: +{span(ext.duration)} is {state} — {ext.justification}"]
    if state == "PENDING":
        level = extension_level(ext)
        levels = ext.decision.approval.levels
        if level < len(levels):
            lines.append(f"  waiting for level {level + 1}/{len(levels)}: `jitgate approve {ext.id}`")
        lines.extend(_level_lines(levels, ext.approvals, level))
    lines.append(f"  access active until {_until(req.expires_at)}" if state_name(req.state) == "ACTIVE"
                 else f"  request {req.id} is {state_name(req.state)}")
    return lines


def _break_glass_line(req: Any) -> str:
    if review_name(req.review_state) == "OWED":
        return f"  break-glass: a review is owed by {', '.join(req.decision.approval.review)}"
    return f"  {req.message}" if req.message else f"  break-glass: {review_name(req.review_state).lower()}"


def outcome(req: Any) -> list[str]:
    """What a requester needs to know after asking: the decision in plain words."""
    state = state_name(req.state)
    mode = req.decision.approval.mode
    head = f"request {req.id}: {target(req)} for {span(req.duration)} is {state}"
    lines = [head]
    if state == "ACTIVE" and req.message and (req.HasField("start") or req.decision.activate == "on_first_use"):
        # a scheduled window, or on first use before the first session: its message says when it begins
        lines.append(f"  {req.message}; until {_until(req.expires_at)}")
    elif state == "ACTIVE":
        lines.append(f"  access active until {_until(req.expires_at)}")
        if mode == "break_glass":
            lines.append(_break_glass_line(req))
        elif mode == "auto":
            lines.append("  approved automatically by policy")
    elif state == "PENDING":
        if req.HasField("start"):  # approvers and requester see the window asked for
            lines.append(f"  for the window from {_until(req.start)}")
        lines.append("  waiting for approval:")
        lines.extend(level_lines(req))
    elif req.message or req.decision.message:
        lines.append(f"  {req.message or req.decision.message}")
    if req.decision.rules:
        lines.append(f"  rules: {', '.join(req.decision.rules)} (policy {req.decision.policy_version[:19]})")
    return lines


def print_outcome(req: Any) -> None:
    for line in outcome(req):
        echo(line)


REQUEST_COLUMNS = ["id", "user", "target", "state", "duration", "expires", "level", "reason"]


def request_row(req: Any) -> list[Any]:
    levels = len(req.decision.approval.levels)
    level = f"{req.current_level + 1}/{levels}" if state_name(req.state) == "PENDING" and levels else ""
    return [req.id, req.user, target(req), state_name(req.state) + (
        f" ({review_name(req.review_state)})" if req.review_state else ""), span(req.duration),
        when(req.expires_at), level, req.reason]


def extension_row(req: Any, ext: Any) -> list[Any]:
    """A grant's pending extension as a row of REQUEST_COLUMNS: its own id (what `approve` takes)."""
    levels = len(ext.decision.approval.levels)
    level = f"{extension_level(ext) + 1}/{levels}" if levels else ""
    return [ext.id, req.user, target(req), "EXTENSION PENDING", f"+{span(ext.duration)}", when(req.expires_at),
            level, ext.justification]


def print_requests(title: str, requests: list[Any], *, to_approve: bool = False) -> None:
    """Requests as a table; with `to_approve`, a grant whose extension waits is shown as that
    extension (its id is what the approver types)."""
    def row(req: Any) -> list[Any]:
        ext = pending_extension(req) if to_approve else None
        return request_row(req) if ext is None else extension_row(req, ext)

    print_table(title, REQUEST_COLUMNS, (row(r) for r in requests))


def risk_text(decision: Any) -> str:
    """`0.93: hour unusual for this user; resource new to this user`, `unknown (why)`, or "" (none recorded)."""
    if not decision.HasField("risk"):
        return ""
    risk = decision.risk
    if not risk.known:
        return f"unknown ({'; '.join(risk.reasons) or 'no reason given'})"
    return f"{risk.score:.2f}" + (f": {'; '.join(risk.reasons)}" if risk.reasons else "")


def print_request(req: Any) -> None:
    pairs = [
        ("id", req.id), ("user", req.user), ("target", target(req)), ("kind", req.kind),
        ("state", state_name(req.state)), ("duration", span(req.duration)), ("reason", req.reason),
        ("ticket", req.ticket), ("emergency", "yes" if req.emergency else "no"),
        ("created", when(req.created_at)), ("activated", when(req.activated_at)),
        ("expires", when(req.expires_at)), ("ended", when(req.ended_at)), ("end reason", req.end_reason),
        ("approval", req.decision.approval.mode), ("extensions used", req.extensions_used),
        ("review", review_name(req.review_state)), ("message", req.message),
        ("rules", ", ".join(req.decision.rules)), ("policy", req.decision.policy_version),
        ("risk", risk_text(req.decision)),
    ]
    print_fields(f"request {req.id}", [(k, v) for k, v in pairs if v not in ("", None)])
    for line in level_lines(req):
        echo(line)
    for a in req.approvals:
        verb = "approved" if a.approved else "denied"
        echo(f"  {when(a.at)} {a.approver} {verb} level {a.level + 1}" + (f": {a.comment}" if a.comment else ""))
    for e in req.extensions:
        echo(f"  extension {e.id}: +{span(e.duration)} {extension_state_name(e.state)} — {e.justification}")
        if risk_text(e.decision):  # scored as the whole grant the extension makes
            echo(f"    risk: {risk_text(e.decision)}")
        if extension_state_name(e.state) == "PENDING":
            for line in _level_lines(e.decision.approval.levels, e.approvals, extension_level(e)):
                echo(f"  {line}")


SESSION_COLUMNS = ["id", "grant", "user", "target", "broker", "started", "ended", "end reason", "in", "out"]


def session_row(s: Any) -> list[Any]:
    what = s.login or s.role
    return [s.id, s.grant_id, s.user, f"{what}@{s.resource}" if what else s.resource, s.broker,
            when(s.started_at), when(s.ended_at) or "live", s.end_reason, s.bytes_in, s.bytes_out]
