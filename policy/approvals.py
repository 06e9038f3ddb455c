"""POLICY.md rule 5: how approvals and denials move a request through its levels.

One reading of the rule, used by the control plane (`judge_vote` for each vote
as it arrives, `level_after` once it counts) and by policy tests (`progress`,
which replays a list of votes through the same two functions): levels are met
in order; a vote counts for the current level only if the approver is eligible
for it; nobody approves their own request; nobody counts for two levels; any
eligible approver's deny ends the request.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from policy.decision import ApprovalLevel, Decision

PENDING, APPROVED, DENIED = "pending", "approved", "denied"

# eligible(approver words of a level, approver): rule 6 for one request (PolicySet.is_eligible
# bound to the requester and resource; it also refuses the requester).
Eligible = Callable[[Sequence[str], str], bool]


class CountedVote(Protocol):
    """A vote already cast on a request: who, for which level (0-based), approve or deny."""

    @property
    def approver(self) -> str: ...
    @property
    def level(self) -> int: ...
    @property
    def approved(self) -> bool: ...


@dataclass(frozen=True)
class Vote:
    """A CountedVote as plain data (what `progress` replays)."""

    approver: str
    level: int
    approved: bool


@dataclass(frozen=True)
class VoteRefusal:
    """Why a vote does not count: a stable `code`, a `message` for the voter, and the short
    `reason` ApprovalProgress lists."""

    code: str
    message: str
    reason: str


@dataclass(frozen=True)
class ApprovalProgress:
    """Where a request stands: `state`, the current `level` (0-based), who counted where."""

    state: str
    level: int
    approvals: list[list[str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (approver, why)
    denied_by: str = ""


def approvers_text(words: Sequence[str]) -> str:
    """Approver words as a person reads them: `group:dba or manager`."""
    return " or ".join(words) or "nobody"


def approved_at_once(decision: Decision) -> bool:
    """An allowed decision that needs no approver: auto, break-glass, or no levels."""
    approval = decision.approval
    return approval is None or approval.mode in ("auto", "break_glass") or not approval.levels


def judge_vote(levels: Sequence[ApprovalLevel], requester: str, level: int, votes: Sequence[CountedVote],
               approver: str, approve: bool, eligible: Eligible, subject: str = "this request"
               ) -> VoteRefusal | None:
    """Whether `approver`'s new vote (approve, or deny when not `approve`) counts at `level`,
    given the `votes` already counted; None: it counts. `subject` names the request or
    extension in messages."""
    if level >= len(levels):
        return VoteRefusal("approval.not_pending", f"`{subject}` is already approved",
                           "the request is already approved")
    if approver == requester:
        message = ("you cannot approve your own request" if approve
                   else "you cannot decide on your own request; cancel it instead")
        return VoteRefusal("approval.self", message, "nobody approves their own request")
    if not approve:
        if any(eligible(lv.approvers, approver) for lv in levels):
            return None
        return VoteRefusal("approval.not_eligible", f"you are not among the approvers of `{subject}`",
                           "not an eligible approver")
    mine = [v for v in votes if v.approver == approver]
    if mine:
        counted = "already counted for a level of this request"
        if any(v.level == level for v in mine):
            return VoteRefusal("approval.duplicate", f"you already approved level {level + 1} of `{subject}`",
                               counted)
        return VoteRefusal("approval.two_levels",
                           f"you already approved level {mine[0].level + 1} of `{subject}`; "
                           "nobody counts for two levels of one request", counted)
    if eligible(levels[level].approvers, approver):
        return None
    named = approvers_text(levels[level].approvers)
    later = [j for j in range(level + 1, len(levels)) if eligible(levels[j].approvers, approver)]
    if later:
        return VoteRefusal("approval.level_order",
                           f"level {level + 1} ({named}) must approve first; "
                           f"you may approve level {later[0] + 1} after it",
                           f"not eligible for level {level + 1}")
    return VoteRefusal("approval.not_eligible",
                       f"you are not among the approvers of level {level + 1} ({named}) for `{subject}`",
                       f"not eligible for level {level + 1}")


def level_after(levels: Sequence[ApprovalLevel], level: int, votes: Iterable[CountedVote]) -> int:
    """The current level once `votes` (including the newest) are counted: the next one when
    `level` has its minimum of approvals."""
    count = sum(1 for v in votes if v.level == level and v.approved)
    return level + 1 if count >= levels[level].min else level


def progress(decision: Decision, requester: str, votes: Iterable[tuple[str, str]],
             eligible: Eligible) -> ApprovalProgress:
    """Replay `votes` ((approver, "approve"|"deny"), in order) against a decision's plan."""
    if decision.effect != "allow" or decision.approval is None:
        return ApprovalProgress(DENIED, 0)
    if approved_at_once(decision):
        return ApprovalProgress(APPROVED, 0)
    levels = decision.approval.levels
    counted: list[list[str]] = [[] for _ in levels]
    cast: list[Vote] = []
    ignored: list[tuple[str, str]] = []
    current = 0
    for approver, verdict in votes:
        if current < len(levels) and approver != requester and verdict not in ("approve", "deny"):
            ignored.append((approver, f"unknown verdict `{verdict}`"))
            continue
        refusal = judge_vote(levels, requester, current, cast, approver, verdict == "approve", eligible)
        if refusal is not None:
            ignored.append((approver, refusal.reason))
            continue
        if verdict == "deny":
            return ApprovalProgress(DENIED, current, counted, ignored, denied_by=approver)
        counted[current].append(approver)
        cast.append(Vote(approver, current, True))
        current = level_after(levels, current, cast)
    state = APPROVED if current >= len(levels) else PENDING
    return ApprovalProgress(state, current, counted, ignored)
