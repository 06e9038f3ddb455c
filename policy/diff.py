"""Replay recorded requests through two policy sets and list the decisions that change."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.decision import Decision
from policy.errors import RequestError
from policy.policyset import PolicySet
from policy.request import PolicyRequest, request_from_json


@dataclass(frozen=True)
class Change:
    """One request whose decision differs; `fields` names what changed."""

    line: int
    request: PolicyRequest
    old: Decision
    new: Decision
    fields: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "request": self.request.to_mapping(), "changed": self.fields,
                "old": self.old.to_json(), "new": self.new.to_json()}


def read_requests(path: str | Path) -> list[tuple[int, PolicyRequest]]:
    """Requests from a JSON-lines file (blank lines and `#` comments skipped).

    Raises RequestError naming `file:line` on the first bad line.
    """
    out = []
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RequestError(f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append((n, request_from_json(line)))  # size and nesting bounded before parsing
        except RequestError as e:
            raise RequestError(f"{p}:{n}: {e}") from None
    return out


def _comparable(d: Decision) -> dict[str, Any]:
    j = d.to_json()
    j.pop("policy_version")
    return j


def diff(old: PolicySet, new: PolicySet, requests: Iterable[tuple[int, PolicyRequest]]) -> list[Change]:
    """Every request whose decision (apart from policy_version) differs between old and new."""
    changes = []
    for line, req in requests:
        a, b = old.decide(req), new.decide(req)
        ja, jb = _comparable(a), _comparable(b)
        if ja != jb:
            changes.append(Change(line, req, a, b, [k for k in ja if ja[k] != jb[k]]))
    return changes


def summary(d: Decision) -> str:
    """A one-line view of a decision for tables and Markdown."""
    if d.effect == "deny":
        return f"deny: {d.message}" if d.message else "deny"
    assert d.approval is not None
    parts = [f"allow, {d.approval.mode}"]
    if d.approval.mode == "levels":
        parts.append(" then ".join(
            ("/".join(lv.approvers) + (f" x{lv.min}" if lv.min > 1 else "")) for lv in d.approval.levels))
    if d.approval.mode == "break_glass":
        parts.append("review by " + "/".join(d.approval.review))
    if d.max_duration is not None:
        from policy.durations import format_duration
        parts.append(f"max {format_duration(d.max_duration)}")
    parts.append(f"{d.max_extensions} ext")
    off = [k for k, v in d.session.to_json().items() if not v]
    if off:
        parts.append("no " + "/".join(off))
    return ", ".join(parts)


def request_label(r: PolicyRequest) -> str:
    what = r.login or r.role
    label = (f"{r.id}: " if r.id else "") + f"{r.user} -> {r.resource}" + (f" as {what}" if what else "")
    label += f" for {r.to_mapping()['duration']}"
    if r.emergency:
        label += " (emergency)"
    if r.extension:
        label += f" (extension {r.extension})"
    return label


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(changes: list[Change], old: PolicySet, new: PolicySet, total: int) -> str:
    """A pull-request comment: what the policy change does to recorded requests."""
    lines = ["### Policy diff", "",
             f"Replayed **{total}** recorded request(s) through `{old.version[:19]}` (old) and "
             f"`{new.version[:19]}` (new): **{len(changes)}** decision(s) change.", ""]
    if not changes:
        lines.append("No decision changes.")
        return "\n".join(lines) + "\n"
    lines += ["| line | request | time | old | new |", "| --- | --- | --- | --- | --- |"]
    for c in changes:
        lines.append(f"| {c.line} | {_md(request_label(c.request))} | {c.request.to_mapping()['time']} "
                     f"| {_md(summary(c.old))} | {_md(summary(c.new))} |")
    grants = sum(1 for c in changes if c.old.effect == "deny" and c.new.effect == "allow")
    revokes = sum(1 for c in changes if c.old.effect == "allow" and c.new.effect == "deny")
    lines += ["", f"Newly allowed: **{grants}**, newly denied: **{revokes}**, "
                  f"other changes: **{len(changes) - grants - revokes}**."]
    return "\n".join(lines) + "\n"
