"""Requests: ask (decided by the policies with the requester's history), see, list, cancel."""
from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from controlplane.approvals import ApprovalService, activate, review_owed_text, waiting_text
from controlplane.errors import JitError
from controlplane.history import PROBE_DURATION, Ask, History, HistoryService, check_target
from controlplane.ledger import SYSTEM, AuditEntry, Ledger, fmt_td, iso, load_target, page_start
from controlplane.locks import lock_message, matching_lock, refuse_if_locked
from controlplane.model import (
    ACTIVE,
    CANCELLED,
    DENIED,
    EXT_CANCELLED,
    EXT_PENDING,
    PENDING,
    REQUEST_STATES,
    REVIEW_OWED,
    Recommendation,
    RequestRecord,
)
from controlplane.signin import stepup
from policy import PolicySet
from policy.approvals import approved_at_once
from policy.model import Resource
from policy.request import Risk

LIST_BATCH = 1000  # rows read per transaction when walking many requests

START_SKEW = timedelta(seconds=60)  # a window's start this far in the past is taken as now (clock skew)


def walk_requests(ledger: Ledger, states: Sequence[str] = (), since: datetime | None = None,
                  keep: Callable[[RequestRecord], bool] | None = None) -> list[RequestRecord]:
    """Every request in `states` (all when empty) created since `since` that `keep` keeps,
    oldest first, read a batch per transaction."""
    out: list[RequestRecord] = []
    before = None
    while True:
        with ledger.store.read() as tx:
            batch = tx.query_requests(states=states, since=since, before_num=before, limit=LIST_BATCH)
        out.extend(rec for _n, rec in batch if keep is None or keep(rec))
        if len(batch) < LIST_BATCH:
            return list(reversed(out))
        before = batch[-1][0]


class RequestService:
    """Creating, reading, listing and cancelling requests."""

    def __init__(self, ledger: Ledger, history: HistoryService, approvals: ApprovalService) -> None:
        self.ledger = ledger
        self.history = history
        self.approvals = approvals
        # Seconds one policy decision took (controlplane/metrics.py when `--metrics` is on).
        self.decision_observer: Callable[[float], None] | None = None

    def create_request(self, actor: str, resource: str, login: str = "", role: str = "",
                       duration: timedelta | None = None, reason: str = "", ticket: str = "",
                       emergency: bool = False, dry_run: bool = False, start: datetime | None = None
                       ) -> tuple[RequestRecord, Recommendation | None]:
        """Validate, decide with the requester's history, store. A policy deny is stored as DENIED.

        The history is read and the decision made inside the write transaction that stores
        the request, so the counters a decision saw are the ones in force when it commits.
        """
        ps = self.ledger.require_user(actor)
        res = ps.resources.get(resource)
        if res is None:
            raise JitError("resource.not_found", f"there is no resource `{resource}`")
        login, role = (login or "").strip(), (role or "").strip()
        reason, ticket = (reason or "").strip(), (ticket or "").strip()
        check_target(res, login, role)
        if not reason:
            raise JitError("invalid.argument", "a reason is required: say what you will do")
        now = self.ledger.clock()
        if start is not None and start <= now:
            if now - start > START_SKEW:
                raise JitError("invalid.argument", f"the window's start {iso(start)} is in the past")
            start = None  # within the clock skew: it starts now
        target = Ask(actor, res, login, role, reason, ticket, emergency)

        # The model is asked only when its answer is used: no duration given (it becomes the
        # duration) or a dry run (which shows it). It used to run on every request (~25% of the
        # server's time under load) for an answer nobody read.
        recommendation: Recommendation | None = None
        past = functools.cache(lambda: self.history.past_rows(actor, resource, now))  # read once for model and risk
        if self.history.recommender is not None and (duration is None or dry_run):
            history = self.history.history(actor, resource, now)
            limit = self.history.max_duration(ps, target.policy_request(PROBE_DURATION, now, history))
            recommendation = self.history.recommendation(target, now, limit, past)
        if duration is None:
            if recommendation is None:
                raise JitError("invalid.argument", "give a duration (no recommendation is available)")
            duration = recommendation.duration
        if duration <= timedelta(0):
            raise JitError("invalid.argument", "the duration must be longer than 0s")
        risk = self.history.risk(target, duration, now, recommendation, past)
        if dry_run:
            with self.ledger.store.read() as tx:
                history = self.history.history_in(tx, actor, resource, now)
            rec, _code = self._decided(ps, target, duration, now, history, "", risk, start)
            return rec, recommendation

        with self.ledger.store.read() as tx:
            lock = matching_lock(tx, now, actor, resource, login or role)
        if lock is not None:  # audited, like a refused extension
            self.ledger.refuse(actor, resource, "request.refused", "lock.active", lock_message(lock),
                               {"lock_id": lock.id, "login": login, "role": role})
        try:
            return self._store_new(ps, actor, res, target, duration, now, risk, start), recommendation
        except stepup.StepUpRequired as e:  # audited once the request's transaction has rolled back
            stepup.audit(self.ledger, e, actor, resource, "activate", now)
            raise

    def _store_new(self, ps: PolicySet, actor: str, res: Resource, target: Ask, duration: timedelta,
                   now: datetime, risk: Risk, start: datetime | None) -> RequestRecord:
        """Decide inside the write transaction that stores the request (see create_request)."""
        resource, login, role = res.name, target.login, target.role
        reason, ticket, emergency = target.reason, target.ticket, target.emergency
        with self.ledger.write() as w:
            refuse_if_locked(w.tx, now, actor, resource, login or role)
            history = self.history.history_in(w.tx, actor, resource, now)
            rec, code = self._decided(ps, target, duration, now, history, secrets.token_hex(8), risk, start)
            if rec.state != DENIED:  # a rule may want a fresh sign-in to ask for this access
                stepup.check(self.ledger.store, stepup.need_of(self.ledger.policy.current, rec.decision.rules,
                                                               "activate"), actor, "activate", now)
            w.tx.insert_request(rec)
            decision = rec.decision
            data = {"resource": resource, "kind": res.kind, "login": login, "role": role,
                    "duration": fmt_td(duration), "reason": reason, "ticket": ticket,
                    "emergency": emergency, "history": history, "decision": decision.to_json(),
                    "state": rec.state}
            events: list[AuditEntry] = [("request.created", actor, rec.id, data, now)]
            if rec.state == DENIED:
                events.append(("request.denied", SYSTEM, rec.id,
                               {"message": rec.message, "code": code or "policy.denied",
                                "rules": list(decision.rules), "policy_version": decision.policy_version}, now))
            elif rec.state == ACTIVE:
                assert decision.approval is not None  # allowed decisions carry their approval plan
                events.append(("grant.activated", SYSTEM, rec.id,
                               {"mode": decision.approval.mode, "expires_at": iso(rec.expires_at),
                                "review_owed": rec.review_state == REVIEW_OWED}, now))
            w.commit(events, request=rec)
        return rec

    def _decided(self, ps: PolicySet, target: Ask, duration: timedelta, now: datetime,
                 history: History, request_id: str, risk: Risk | None = None, start: datetime | None = None
                 ) -> tuple[RequestRecord, str]:
        """The new request as the policy decides it (one decision); and the deny code, if any."""
        started = time.perf_counter()
        decision = ps.decide(dataclasses.replace(target.policy_request(duration, now, history, risk), start=start))
        if self.decision_observer is not None:
            self.decision_observer(time.perf_counter() - started)
        res = target.res
        rec = RequestRecord(
            id=request_id, user=target.user, resource=res.name, kind=res.kind, login=target.login,
            role=target.role, duration=duration, reason=target.reason, ticket=target.ticket,
            emergency=target.emergency, state=PENDING, decision=decision, created_at=now, history=dict(history),
            start=start)
        code = ""
        if not decision.allowed:
            rec.state, rec.ended_at, rec.message, rec.end_reason = DENIED, now, decision.message, "denied by policy"
            if decision.max_duration is not None and duration > decision.max_duration:
                code = "duration.over_max"
        elif approved_at_once(decision):
            activate(rec, now)
            if decision.approval is not None and decision.approval.mode == "break_glass":
                rec.review_state = REVIEW_OWED
                rec.message = review_owed_text(decision.approval.review)
        else:
            rec.pending_deadline = now + ps.settings.pending_timeout
            if start is not None:  # nobody decided before the window closed: it times out then
                rec.pending_deadline = min(rec.pending_deadline, start + duration)
            rec.message = waiting_text(decision, 0)
        return rec, code

    def get_request(self, actor: str, request_id: str) -> RequestRecord:
        """A request the actor may see (own, approvable, or any for admins and brokers)."""
        with self.ledger.store.read() as tx:
            rec = tx.get_request(request_id)
        if rec is None:
            raise JitError("request.not_found", f"there is no request `{request_id}`")
        if not self.ledger.visible(actor, rec):
            raise JitError("permission.denied", f"you may not see request `{request_id}`")
        return rec

    def list_requests(self, actor: str, user: str | None = None, resource: str | None = None,
                      states: Sequence[str] = (), to_approve: bool = False, mine: bool = False,
                      since: datetime | None = None, page_size: int = 50, page_token: str = ""
                      ) -> tuple[list[RequestRecord], str]:
        """Requests newest first that the actor may see, filtered; returns (page, next_page_token)."""
        bad = [s for s in states if s not in REQUEST_STATES]
        if bad:
            raise JitError("invalid.argument", f"unknown state `{bad[0]}`")
        page_size, before = page_start(page_size, page_token)
        if mine:
            user = actor
        if to_approve:
            states = [PENDING, ACTIVE]
        kept: list[tuple[int, RequestRecord]] = []
        limit = max(50, page_size * 2)
        while len(kept) <= page_size:
            with self.ledger.store.read() as tx:
                batch = tx.query_requests(user=user, resource=resource, states=states, since=since,
                                          before_num=before, limit=limit)
            for num, rec in batch:
                if self.approvals.can_approve_now(actor, rec) if to_approve else self.ledger.visible(actor, rec):
                    kept.append((num, rec))
                    if len(kept) > page_size:
                        break
            if len(batch) < limit:
                break
            before = batch[-1][0]
        page = kept[:page_size]
        token = str(page[-1][0]) if len(kept) > page_size else ""
        return [rec for _n, rec in page], token

    def live_requests(self) -> list[RequestRecord]:
        """Every PENDING and ACTIVE request (the watch snapshot), oldest first."""
        return walk_requests(self.ledger, states=[PENDING, ACTIVE])

    def cancel(self, actor: str, target_id: str) -> RequestRecord:
        """The requester withdraws a pending request or extension."""
        now = self.ledger.clock()
        with self.ledger.write() as w:
            rec, ext = load_target(w.tx, target_id)
            if actor != rec.user:
                raise JitError("permission.denied", f"only `{rec.user}` may cancel `{target_id}`")
            if ext is None:
                if rec.state != PENDING:
                    raise JitError("request.not_pending",
                                   f"request `{rec.id}` is {rec.state}; only a pending request can be cancelled")
                rec.state, rec.ended_at, rec.end_reason = CANCELLED, now, "cancelled"
                rec.message = f"cancelled by {actor}"
                rec.pending_deadline = None
                etype = "request.cancelled"
            else:
                if ext.state != EXT_PENDING:
                    raise JitError("request.not_pending",
                                   f"extension `{ext.id}` is {ext.state}; only a pending extension can be cancelled")
                ext.state, ext.decided_at = EXT_CANCELLED, now
                w.tx.update_extension(ext)
                etype = "extension.cancelled"
            w.tx.update_request(rec)
            w.commit([(etype, actor, target_id, {}, now)], request=rec)
        return rec


__all__ = ["RequestService", "walk_requests"]
