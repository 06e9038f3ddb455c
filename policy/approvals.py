"""POLICY.md rule 5: how approvals and denials move a request through its levels.

A pure function over the votes cast so far, so the control plane and the
tests share one reading of the rule: levels are met in order; a vote counts
for the current level only if the approver is eligible for it; nobody
approves their own request; nobody counts for two levels; any eligible
approver's deny ends the request.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from policy.decision import Decision

PENDING, APPROVED, DENIED = "pending", "approved", "denied"


@dataclass(frozen=True)
class ApprovalProgress:
    """Where a request stands: `state`, the current `level` (0-based), who counted where."""

    state: str
    level: int
    approvals: list[list[str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (approver, why)
    denied_by: str = ""


def progress(decision: Decision, requester: str, votes: Iterable[tuple[str, str]],
             eligible: Callable[[list[str], str], bool]) -> ApprovalProgress:
    """Replay `votes` ((approver, "approve"|"deny"), in order) against a decision's plan.

    `eligible(approvers, approver)` answers rule 6 for this request (see
    PolicySet.is_eligible, which also refuses the requester).
    """
    if decision.effect != "allow" or decision.approval is None:
        return ApprovalProgress(DENIED, 0)
    if decision.approval.mode in ("auto", "break_glass"):
        return ApprovalProgress(APPROVED, 0)
    levels = decision.approval.levels
    counted: list[list[str]] = [[] for _ in levels]
    ignored: list[tuple[str, str]] = []
    current = 0
    for approver, verdict in votes:
        if current >= len(levels):
            ignored.append((approver, "the request is already approved"))
            continue
        if approver == requester:
            ignored.append((approver, "nobody approves their own request"))
            continue
        if verdict == "deny":
            if any(eligible(lv.approvers, approver) for lv in levels):
                return ApprovalProgress(DENIED, current, counted, ignored, denied_by=approver)
            ignored.append((approver, "not an eligible approver"))
            continue
        if verdict != "approve":
            ignored.append((approver, f"unknown verdict `{verdict}`"))
            continue
        if any(approver in c for c in counted):
            ignored.append((approver, "already counted for a level of this request"))
            continue
        if not eligible(levels[current].approvers, approver):
            ignored.append((approver, f"not eligible for level {current + 1}"))
            continue
        counted[current].append(approver)
        if len(counted[current]) >= levels[current].min:
            current += 1
    state = APPROVED if current >= len(levels) else PENDING
    return ApprovalProgress(state, current, counted, ignored)
