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
    left = ts.ToDatetime(tzinfo=dt.timezone.utc) - dt.datetime.now(dt.timezone.utc)
    if left.total_seconds() <= 0:
        return when(ts)
    return f"{when(ts)} (in {span(dt.timedelta(seconds=int(left.total_seconds())))})"


def level_lines(req: Any) -> list[str]:
    """One line per approval level: who may approve, and who did."""
    lines = []
    levels = req.decision.approval.levels
    for i, level in enumerate(levels):
        votes = [a for a in req.approvals if a.level == i and a.approved]
        mark = "done" if len(votes) >= max(level.min, 1) else ("next" if i == req.current_level else "later")
        who = ", ".join(level.approvers)
        by = f" — approved by {', '.join(a.approver for a in votes)}" if votes else ""
        lines.append(f"  level {i + 1}/{len(levels)} [{mark}]: {level.min or 1} of {who}{by}")
    return lines


def outcome(req: Any) -> list[str]:
    """What a requester needs to know after asking: the decision in plain words."""
    state = state_name(req.state)
    mode = req.decision.approval.mode
    head = f"request {req.id}: {target(req)} for {span(req.duration)} is {state}"
    lines = [head]
    if state == "ACTIVE":
        lines.append(f"  access active until {_until(req.expires_at)}")
        if mode == "break_glass":
            lines.append(f"  break-glass: a review is owed by {', '.join(req.decision.approval.review)}")
        elif mode == "auto":
            lines.append("  approved automatically by policy")
    elif state == "PENDING":
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


def print_requests(title: str, requests: list[Any]) -> None:
    print_table(title, REQUEST_COLUMNS, (request_row(r) for r in requests))


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
        from jitgate.v1 import types_pb2

        echo(f"  extension {e.id}: +{span(e.duration)} {types_pb2.ExtensionState.Name(e.state)[16:]}"
                   f" — {e.justification}")


SESSION_COLUMNS = ["id", "grant", "user", "target", "broker", "started", "ended", "end reason", "in", "out"]


def session_row(s: Any) -> list[Any]:
    what = s.login or s.role
    return [s.id, s.grant_id, s.user, f"{what}@{s.resource}" if what else s.resource, s.broker,
            when(s.started_at), when(s.ended_at) or "live", s.end_reason, s.bytes_in, s.bytes_out]
