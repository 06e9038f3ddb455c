"""Approvals: approve and deny a pending request or extension, review break-glass access.

Whether a vote counts ("nobody approves their own request; one person one
level"; levels in order) is POLICY.md rule 5 as `policy.approvals` reads it;
this module applies its answer to the store.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from controlplane.errors import JitError
from controlplane.ledger import SYSTEM, AuditEntry, Ledger, Write, fmt_td, iso, load_target
from controlplane.locks import refuse_if_grant_locked
from controlplane.model import (
    ACTIVE,
    DENIED,
    EXT_APPROVED,
    EXT_DENIED,
    EXT_PENDING,
    FLAGGED,
    PENDING,
    REVIEW_OWED,
    REVIEWED,
    UNCLAIMED,
    ApprovalRecord,
    ExtensionRecord,
    RequestRecord,
)
from controlplane.signin import stepup
from policy import Decision, PolicySet
from policy.approvals import Eligible, VoteRefusal, approvers_text, judge_vote, level_after


def activate(rec: RequestRecord, now: datetime) -> None:
    """PENDING -> ACTIVE: the clock starts at activation, or, on first use, waits for the first
    session until the claim deadline (`expires_at` until then)."""
    begin = max(now, rec.start) if rec.start is not None else now  # a scheduled window starts at its start
    rec.state = ACTIVE
    rec.activated_at = begin
    rec.pending_deadline = None
    rec.message = "" if begin == now else f"approved for the window from {iso(begin)}"
    claim_within = rec.decision.claim_within
    if rec.decision.activate == "on_first_use" and claim_within is not None:
        rec.expires_at = begin + claim_within
        rec.end_reason = UNCLAIMED
        rec.message = (f"approved; the {fmt_td(rec.duration)} start at the first session, "
                       f"which must come by {iso(rec.expires_at)}")
        return
    rec.expires_at = (rec.start if rec.start is not None and rec.start > now else now) + rec.duration


def claim(rec: RequestRecord, now: datetime) -> AuditEntry | None:
    """The first session of an unclaimed on-first-use grant starts its clock; its `grant.claimed` event."""
    if rec.state != ACTIVE or rec.end_reason != UNCLAIMED:
        return None
    rec.activated_at, rec.expires_at = now, now + rec.duration
    rec.end_reason, rec.message = "", ""
    return ("grant.claimed", SYSTEM, rec.id, {"expires_at": iso(rec.expires_at)}, now)


def latest_end(rec: RequestRecord) -> datetime | None:
    """The latest the grant can end as it stands: an unclaimed grant may still be claimed at its
    claim deadline and then run its whole duration (a credential must last that long)."""
    if rec.expires_at is not None and rec.end_reason == UNCLAIMED:
        return rec.expires_at + rec.duration
    return rec.expires_at


def apply_extension(rec: RequestRecord, ext: ExtensionRecord, now: datetime) -> AuditEntry:
    """An approved extension moves the grant's deadline; returns its `grant.extended` event."""
    ext.state = EXT_APPROVED
    ext.decided_at = now
    rec.extensions_used = ext.number
    assert rec.expires_at is not None
    rec.expires_at = rec.expires_at + ext.duration
    return ("grant.extended", SYSTEM, rec.id,
            {"extension": ext.number, "duration": fmt_td(ext.duration), "expires_at": iso(rec.expires_at)}, now)


def waiting_text(decision: Decision, level: int) -> str:
    """What a pending request waits for at `level` (0-based)."""
    assert decision.approval is not None
    levels = decision.approval.levels
    lv = levels[level]
    return (f"waiting for level {level + 1} of {len(levels)}: "
            f"{lv.min} approval(s) from {approvers_text(lv.approvers)}")


def review_owed_text(reviewers: Sequence[str]) -> str:
    """A break-glass grant's message until its review is done."""
    return f"break-glass: a review by {approvers_text(reviewers)} is owed"


def _eligible(ps: PolicySet, rec: RequestRecord) -> Eligible:
    """Rule 6 for this request: PolicySet.is_eligible bound to its requester and resource."""
    return lambda words, who: ps.is_eligible(list(words), who, rec.user, rec.resource)


def _pending_target(rec: RequestRecord, ext: ExtensionRecord | None, now: datetime
                    ) -> tuple[Decision, int, list[ApprovalRecord]]:
    """The decision, current level and votes of whatever waits for approval at `target_id`."""
    if ext is None:
        if rec.state != PENDING:
            raise JitError("approval.not_pending", f"request `{rec.id}` is {rec.state}, not waiting for approval")
        return rec.decision, rec.current_level, rec.approvals
    if ext.state != EXT_PENDING:
        raise JitError("approval.not_pending", f"extension `{ext.id}` is {ext.state}, not waiting for approval")
    if rec.state != ACTIVE or rec.expires_at is None or rec.expires_at <= now:
        raise JitError("grant.not_active", f"grant `{rec.id}` is no longer active")
    return ext.decision, ext.current_level, ext.approvals


def _raise(refusal: VoteRefusal | None) -> None:
    if refusal is not None:
        raise JitError(refusal.code, refusal.message)


class ApprovalService:
    """Votes on requests and extensions, and break-glass reviews."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _cast(self, w: Write, actor: str, target_id: str, approve: bool, comment: str, now: datetime
              ) -> tuple[RequestRecord, ExtensionRecord | None, Decision, ApprovalRecord]:
        """Store `actor`'s vote on what waits at `target_id`, if rule 5 lets it count."""
        rec, ext = load_target(w.tx, target_id)
        if approve:  # a deny is always welcome; an approval under a lock would start access
            refuse_if_grant_locked(w.tx, now, rec)
        decision, level, approvals = _pending_target(rec, ext, now)
        assert decision.approval is not None
        eligible = _eligible(self.ledger.policy.current, rec)
        _raise(judge_vote(decision.approval.levels, rec.user, level, approvals, actor, approve, eligible, target_id))
        vote = ApprovalRecord(approver=actor, level=level, approved=approve, comment=comment, at=now)
        w.tx.add_approval(rec.id, ext.id if ext else "", vote)
        approvals.append(vote)
        return rec, ext, decision, vote

    def approve(self, actor: str, target_id: str, comment: str = "") -> RequestRecord:
        """Approve the current level of a request or extension (`target_id`)."""
        now = self.ledger.clock()
        if any(r.step_up is not None for r in self.ledger.policy.current.rules):  # a rule may want a fresh sign-in
            with self.ledger.store.read() as tx:
                rec, ext = load_target(tx, target_id)
            stepup.enforce(self.ledger, (ext or rec).decision.rules, "approve", actor, target_id, now)
        with self.ledger.write() as w:
            rec, ext, decision, vote = self._cast(w, actor, target_id, True, comment, now)
            assert decision.approval is not None
            levels = decision.approval.levels
            events: list[AuditEntry] = [
                ("approval.granted", actor, target_id, {"level": vote.level + 1, "comment": comment}, now)]
            level = level_after(levels, vote.level, ext.approvals if ext else rec.approvals)
            done = level >= len(levels)
            if ext is None:
                rec.current_level = level
                if done:
                    activate(rec, now)
                    events.append(("grant.activated", SYSTEM, rec.id,
                                   {"mode": "levels", "expires_at": iso(rec.expires_at)}, now))
                else:
                    rec.message = waiting_text(decision, level)
            else:
                ext.current_level = level
                if done:
                    events.append(apply_extension(rec, ext, now))
                w.tx.update_extension(ext)
            w.tx.update_request(rec)
            w.commit(events, request=rec)
        return rec

    def deny(self, actor: str, target_id: str, comment: str = "") -> RequestRecord:
        """Any eligible approver's deny ends a pending request or extension."""
        now = self.ledger.clock()
        with self.ledger.write() as w:
            rec, ext, _decision, _vote = self._cast(w, actor, target_id, False, comment, now)
            message = f"denied by {actor}" + (f": {comment}" if comment else "")
            if ext is None:
                rec.state, rec.ended_at, rec.end_reason, rec.message = DENIED, now, "denied", message
                rec.pending_deadline = None
                etype = "request.denied"
            else:
                ext.state, ext.decided_at = EXT_DENIED, now
                w.tx.update_extension(ext)
                etype = "extension.denied"
            w.tx.update_request(rec)
            w.commit([(etype, actor, target_id, {"comment": comment}, now)], request=rec)
        return rec

    def can_approve_now(self, actor: str, rec: RequestRecord) -> bool:
        """Whether `actor` could approve the request (or its pending extension) right now."""
        if rec.state == PENDING:
            decision, level, approvals = rec.decision, rec.current_level, rec.approvals
        else:
            ext = rec.pending_extension
            if rec.state != ACTIVE or ext is None:
                return False
            decision, level, approvals = ext.decision, ext.current_level, ext.approvals
        levels = decision.approval.levels if decision.approval else []
        eligible = _eligible(self.ledger.policy.current, rec)
        return judge_vote(levels, rec.user, level, approvals, actor, True, eligible) is None

    def review(self, actor: str, request_id: str, flag: bool, comment: str = "") -> RequestRecord:
        """A break-glass reviewer closes the owed review: REVIEWED, or FLAGGED when `flag`."""
        ps = self.ledger.policy.current
        now = self.ledger.clock()
        with self.ledger.write() as w:
            rec = w.tx.get_request(request_id)
            if rec is None:
                raise JitError("request.not_found", f"there is no request `{request_id}`")
            if rec.review_state != REVIEW_OWED:
                what = "already reviewed" if rec.review_state else "not a break-glass grant"
                raise JitError("review.not_owed", f"`{request_id}` owes no review ({what})")
            if actor == rec.user:
                raise JitError("review.self", "you cannot review your own break-glass access")
            reviewers = list(rec.decision.approval.review) if rec.decision.approval else []
            if not ps.is_eligible(reviewers, actor, rec.user, rec.resource):
                raise JitError("review.not_eligible",
                               f"only {approvers_text(reviewers)} may review `{request_id}`")
            rec.review_state = FLAGGED if flag else REVIEWED
            rec.review_by, rec.review_comment = actor, comment
            if rec.message == review_owed_text(reviewers):  # not a revocation's reason, which stays
                rec.message = f"break-glass: {'flagged' if flag else 'reviewed'} by {actor}"
            w.tx.update_request(rec)
            w.commit([("grant.flagged" if flag else "grant.reviewed", actor, rec.id, {"comment": comment}, now)],
                     request=rec)
        return rec


__all__ = ["ApprovalService", "activate", "apply_extension", "review_owed_text", "waiting_text"]
