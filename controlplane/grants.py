"""Grants after activation: extend, revoke early, and the sweep that ends them at their deadline.

Expiry is enforced twice (DESIGN.md): `sweep` moves overdue grants to EXPIRED
here, and each broker cuts its sessions from its own timer.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from controlplane.approvals import apply_extension
from controlplane.errors import JitError
from controlplane.history import Ask, HistoryService
from controlplane.ledger import SYSTEM, AuditEntry, Ledger, end_grants, fmt_td
from controlplane.model import (
    ACTIVE,
    EXPIRED,
    EXT_APPROVED,
    EXT_PENDING,
    REVOKED,
    UNCLAIMED,
    ExtensionRecord,
    RequestRecord,
)
from controlplane.prepared import PreparedExpiries
from policy import PolicyRequest, PolicySet
from policy.approvals import approved_at_once
from policy.request import Risk

# Grants (and pending requests) ended per sweep transaction: a mass expiry commits in steps, so
# its first events reach watchers (and other planes) while the rest are still being ended.
SWEEP_CHUNK = 2000


class GrantService:
    """Extensions, revocation and expiry of grants."""

    def __init__(self, ledger: Ledger, history: HistoryService) -> None:
        self.ledger = ledger
        self.history = history
        # Expired records built ahead of a deadline (controlplane/prepared.py; the sweeper fills it).
        self.prepared = PreparedExpiries(ledger.store)

    def extend(self, actor: str, request_id: str, duration: timedelta, justification: str) -> RequestRecord:
        """Ask for more time on an active grant; the policies decide again with `extension = n`."""
        ps = self.ledger.policy.current
        now = self.ledger.clock()
        with self.ledger.store.read() as tx:
            rec = tx.get_request(request_id)
        if rec is None:
            raise JitError("request.not_found", f"there is no request `{request_id}`")
        if actor != rec.user:
            raise JitError("permission.denied", f"only `{rec.user}` may extend `{request_id}`")
        justification = (justification or "").strip()
        if not justification:
            raise JitError("invalid.argument", "an extension needs a justification")
        if duration is None or duration <= timedelta(0):
            raise JitError("invalid.argument", "the extension must be longer than 0s")
        if rec.state != ACTIVE or rec.expires_at is None or rec.expires_at <= now:
            raise JitError("grant.not_active", f"grant `{request_id}` is {rec.state}, not active")
        if rec.end_reason == UNCLAIMED:  # its clock has not started: there is nothing to extend yet
            raise JitError("grant.unclaimed", f"grant `{request_id}` starts at its first session; extend it after")
        if rec.pending_extension is not None:
            raise JitError("extension.pending", f"extension `{rec.pending_extension.id}` is still waiting for approval")
        number = rec.extensions_used + 1
        limit = rec.decision.max_extensions
        if number > limit:
            self.ledger.refuse(actor, request_id, "extension.refused", "extension.limit",
                               f"grant `{request_id}` may be extended at most {limit} time(s)",
                               {"extension": number})
        decision = ps.decide(PolicyRequest(
            user=actor, resource=rec.resource, duration=duration, time=now, login=rec.login, role=rec.role,
            reason=rec.reason, ticket=rec.ticket, emergency=rec.emergency, extension=number,
            history=self.history.history(actor, rec.resource, now), risk=self._risk(ps, rec, duration, now)))
        if not decision.allowed:
            code = "extension.denied"
            if decision.max_duration is not None and duration > decision.max_duration:
                code = "duration.over_max"
            elif number > decision.max_extensions and decision.rules:
                code = "extension.limit"
            self.ledger.refuse(actor, request_id, "extension.refused", code, decision.message,
                               {"extension": number, "rules": list(decision.rules),
                                "policy_version": decision.policy_version,
                                **({"risk": decision.risk} if decision.risk is not None else {})})
        ext = ExtensionRecord(id=f"{rec.id}.{number}", request_id=rec.id, number=number, duration=duration,
                              justification=justification, state=EXT_PENDING, decision=decision,
                              created_at=now)
        with self.ledger.write() as w:
            fresh = w.tx.get_request(request_id)  # re-read under the write lock
            assert fresh is not None
            rec = fresh
            if rec.state != ACTIVE or rec.expires_at is None or rec.expires_at <= now:
                raise JitError("grant.not_active", f"grant `{request_id}` is {rec.state}, not active")
            if rec.pending_extension is not None or rec.extensions_used + 1 != number:
                raise JitError("extension.pending", f"grant `{request_id}` changed meanwhile; try again")
            events: list[AuditEntry] = [
                ("extension.requested", actor, ext.id,
                 {"extension": number, "duration": fmt_td(duration), "justification": justification,
                  "decision": decision.to_json()}, now)]
            if approved_at_once(decision):
                events.append(apply_extension(rec, ext, now))
            w.tx.insert_extension(ext)
            w.tx.update_request(rec)
            rec.extensions.append(ext)
            w.commit(events, request=rec)
        return rec

    def _risk(self, ps: PolicySet, rec: RequestRecord, duration: timedelta, now: datetime) -> Risk:
        """The extension's risk, scored as the whole grant it would make: the length granted so far
        plus `duration`, asked now (an extension far above the usual length of this work stands out
        as a long request does)."""
        res = ps.resources.get(rec.resource)
        if res is None:
            return Risk(known=False, reasons=(f"resource `{rec.resource}` is no longer in the policies",))
        granted = rec.duration + sum((e.duration for e in rec.extensions if e.state == EXT_APPROVED), timedelta(0))
        ask = Ask(rec.user, res, rec.login, rec.role, rec.reason, rec.ticket, rec.emergency)
        return self.history.risk(ask, granted + duration, now, None,
                                 lambda: self.history.past_rows(rec.user, rec.resource, now))

    def revoke(self, actor: str, request_id: str, reason: str = "") -> RequestRecord:
        """End an active grant early (an admin or the requester); its certificates become revoked."""
        now = self.ledger.clock()
        with self.ledger.write() as w:
            rec = w.tx.get_request(request_id)
            if rec is None:
                raise JitError("request.not_found", f"there is no request `{request_id}`")
            if actor != rec.user and not self.ledger.is_admin(actor):
                raise JitError("permission.denied", f"only an admin or `{rec.user}` may revoke `{request_id}`")
            if rec.state != ACTIVE:
                raise JitError("grant.not_active", f"grant `{request_id}` is {rec.state}, not active")
            end_grants(w, [rec], REVOKED, f"revoked by {actor}" + (f": {reason}" if reason else ""), now)
            serials = w.tx.revoke_certificates([rec.id], now)
            w.tx.delete_tokens([rec.id])
            w.commit([("grant.revoked", actor, rec.id, {"reason": reason, "revoked_serials": serials}, now)],
                     request=rec)
        return rec

    def release(self, actor: str, request_id: str) -> RequestRecord:
        """The requester gives an active grant back before its end: it ends now (EXPIRED, "released";
        not REVOKED, which the policies' `history.revoked_90d` counts against the requester)."""
        now = self.ledger.clock()
        with self.ledger.write() as w:
            rec = w.tx.get_request(request_id)
            if rec is None:
                raise JitError("request.not_found", f"there is no request `{request_id}`")
            if actor != rec.user:
                raise JitError("permission.denied", f"only `{rec.user}` may release `{request_id}`")
            if rec.state != ACTIVE:
                raise JitError("grant.not_active", f"grant `{request_id}` is {rec.state}, not active")
            end_grants(w, [rec], EXPIRED, f"released by {actor}", now)
            serials = w.tx.revoke_certificates([rec.id], now)
            w.tx.delete_tokens([rec.id])
            w.commit([("grant.released", actor, rec.id, {"revoked_serials": serials}, now)], request=rec)
        return rec

    def sweep(self) -> datetime | None:
        """End every overdue grant (EXPIRED) and stale pending request (TIMED_OUT), SWEEP_CHUNK
        of each per transaction; returns the next deadline (None when nothing is waiting)."""
        now = self.ledger.clock()
        with self.ledger.store.read() as tx:
            nxt = tx.next_deadline()
        if nxt is None or nxt > now:
            return nxt
        while True:
            more, nxt = self._end_due(now)
            if not more:
                return nxt

    def _end_due(self, now: datetime) -> tuple[bool, datetime | None]:
        """One transaction of the sweep: (more may be due, the next deadline)."""
        with self.ledger.write() as w:
            ended = w.tx.end_due(now, SWEEP_CHUNK)
            if ended.expired:
                w.tx.delete_tokens(ended.expired)  # certificates lapse by themselves: valid_before <= expiry
            if ended.claim_expired:  # their certificates outlive the claim deadline (`latest_end`): revoke them
                w.tx.delete_tokens(list(ended.claim_expired))
                w.tx.revoke_certificates(list(ended.claim_expired), now)
            events: list[AuditEntry] = []
            events += [("grant.expired", SYSTEM, rid, {}, now) for rid in ended.expired]
            events += [("request.timed_out", SYSTEM, rid, {}, now) for rid in ended.timed_out]
            events += [("grant.claim_expired", SYSTEM, rid, {}, now) for rid in ended.claim_expired]
            events += [("extension.cancelled", SYSTEM, xid, {"reason": "the grant ended"}, now)
                       for xid in ended.cancelled]
            # Listeners get the ended records as this transaction stored them (built after the commit,
            # or ahead of the deadline: controlplane/prepared.py).
            w.commit(events, requests=lambda: self.prepared.records(ended.stored))
            nxt = None if ended.more else w.tx.next_deadline()
        return ended.more, nxt

    def next_deadline(self) -> datetime | None:
        """The earliest deadline still to come or past (a grant's end or a pending request's timeout)."""
        with self.ledger.store.read() as tx:
            return tx.next_deadline()


__all__ = ["GrantService"]
