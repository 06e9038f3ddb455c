"""The control plane's core: the request/approval/grant life cycle over the store.

Thread-safe: gRPC server threads call it at once. Every state change and its
audit events commit in one store transaction (writers are serialized, so two
approvers racing cannot both activate a request); listeners hear about a change
only after its commit. Refusals raise `JitError`; refusals at the session gate
are written to the audit log before they are raised.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import statistics
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from controlplane.audit import ChainVerifier
from controlplane.errors import JitError
from controlplane.model import (
    ACTIVE, CANCELLED, DENIED, EXT_APPROVED, EXT_CANCELLED, EXT_DENIED, EXT_PENDING, FLAGGED,
    PENDING, REQUEST_STATES, REVIEW_OWED, REVIEWED, REVOKED,
    ApprovalRecord, AuditRecord, Change, Dashboard, ExtensionRecord, Recommendation,
    RequestRecord, SessionRecord,
)
from controlplane.store import SqlStore, Tx

log = logging.getLogger("jitgate.core")

SYSTEM = "system"
CERT_SKEW = timedelta(seconds=60)           # valid_after = now - skew: clocks drift
UPSTREAM_CERT_LIFETIME = timedelta(minutes=5)  # the broker logs in once; OpenSSH checks only at login
HISTORY_WINDOW = timedelta(days=90)
IMPORTED_CACHE_SIZE = 512  # users + resources whose parsed imported history is kept
DASHBOARD_WINDOW = timedelta(days=30)
MAX_PAGE = 1000
# A broker's channel -> the session option that allows it ("" = connection-level check only).
CHANNEL_OPTION = {"shell": "pty", "pty": "pty", "exec": "exec", "sftp": "sftp",
                  "port_forwarding": "port_forwarding", "pg": "", "": ""}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class PolicyHolder(Protocol):
    """Whatever holds the policy set in force (the API swaps `.current` on reload)."""

    @property
    def current(self) -> Any: ...


class StaticPolicy:
    """A PolicyHolder that holds one policy set (tests, tools)."""

    def __init__(self, policy_set: Any) -> None:
        self.current = policy_set


class Recommender(Protocol):
    """The duration model as the core calls it: `recommend.Recommender`'s signature."""

    def recommend(self, req: Any, max_duration: timedelta | None, step: timedelta,
                  history: Sequence[Any]) -> Any: ...

    def risk(self, ask: Any, history: Sequence[Any]) -> Any: ...


def _fmt_td(td: timedelta) -> str:
    from policy import format_duration
    return format_duration(td)


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if dt else None


def _review_owed_text(reviewers: Sequence[str]) -> str:
    """A break-glass grant's message until its review is done."""
    return f"break-glass: a review by {_approvers_text(reviewers)} is owed"


def _approvers_text(words: Sequence[str]) -> str:
    return " or ".join(words) or "nobody"


@dataclass(frozen=True)
class _Target:
    """What a new request asks for, validated (the parts of a PolicyRequest that do not vary)."""

    user: str
    res: Any  # policy.Resource
    login: str
    role: str
    reason: str
    ticket: str
    emergency: bool

    def policy_request(self, duration: timedelta, now: datetime, history: dict[str, int | float],
                       risk: Any = None) -> Any:
        from policy import PolicyRequest
        return PolicyRequest(user=self.user, resource=self.res.name, duration=duration, time=now, login=self.login,
                             role=self.role, reason=self.reason, ticket=self.ticket, emergency=self.emergency,
                             extension=0, history=history, risk=risk)


class AccessCore:
    """Requests, approvals, grants, credentials, sessions and the audit log."""

    def __init__(self, store: SqlStore, policy: PolicyHolder,
                 clock: Callable[[], datetime] = utcnow, recommender: Recommender | None = None,
                 *, admins: frozenset[str] | set[str] = frozenset(),
                 brokers: frozenset[str] | set[str] = frozenset(),
                 ssh_user_ca: Any = None, ssh_upstream_ca: Any = None) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.recommender = recommender
        self.admins = frozenset(admins)
        self.brokers = frozenset(brokers)
        self.ssh_user_ca = ssh_user_ca
        self.ssh_upstream_ca = ssh_upstream_ca
        self._listeners: list[Callable[[Change], None]] = []
        self._listeners_lock = threading.Lock()
        self._approver_cache: dict[tuple[str, str], bool] = {}
        # Parsed imported history per ("user", name) / ("resource", name), valid for one import generation:
        # imported rows never change, and parsing ~500 rows costs milliseconds on every request.
        self._imported_cache: OrderedDict[tuple[str, str], tuple[int, list[tuple[int, Any]]]] = OrderedDict()
        self._imported_lock = threading.Lock()

    # -- listeners ------------------------------------------------------------------

    def subscribe(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        """Call `listener(change)` after every commit; returns the unsubscribe function."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def _publish(self, changes: Sequence[Change]) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for change in changes:
            for listener in listeners:
                try:
                    listener(change)
                except Exception:  # a bad listener must not undo or block a committed change
                    log.exception("change listener failed on %s", change.type)

    # -- identities -----------------------------------------------------------------

    def roles_of(self, name: str) -> frozenset[str]:
        """user / approver / admin / broker, from the policy directory and the server's config."""
        ps = self.policy.current
        roles: set[str] = set()
        if name in ps.users:
            roles.add("user")
            if self._is_approver(ps, name):
                roles.add("approver")
        if name in self.admins or "admins" in ps.groups_of(name):
            roles.add("admin")
        if name in self.brokers:
            roles.add("broker")
        return frozenset(roles)

    def _is_admin(self, name: str) -> bool:
        return name in self.admins or "admins" in self.policy.current.groups_of(name)

    def _is_broker(self, name: str) -> bool:
        return name in self.brokers

    def _is_approver(self, ps: Any, name: str) -> bool:
        """Whether the policy names `name` in any approval level or review (by user, group,
        as someone's manager or as a resource owner): a label for WhoAmI, not a permission."""
        key = (ps.version, name)
        hit = self._approver_cache.get(key)
        if hit is not None:
            return hit
        groups = ps.groups_of(name)
        words: set[str] = set()
        for rule in ps.rules:
            if rule.approval is not None:
                for level in rule.approval.levels:
                    words.update(level.approvers)
            words.update(rule.review)
        found = f"user:{name}" in words or any(f"group:{g}" in words for g in groups)
        if not found and "manager" in words:
            found = any(u.manager == name for u in ps.users.values())
        if not found and "owner" in words:
            mine = {name, f"user:{name}"} | {f"group:{g}" for g in groups}
            found = any(mine.intersection(res.owners) for res in ps.resources.values())
        if len(self._approver_cache) > 10_000:
            self._approver_cache.clear()
        self._approver_cache[key] = found
        return found

    def _require_user(self, actor: str) -> Any:
        ps = self.policy.current
        if actor not in ps.users:
            raise JitError("permission.denied", f"`{actor}` is not a user in the policy directory")
        return ps

    def _require_broker(self, actor: str) -> None:
        if not self._is_broker(actor):
            raise JitError("permission.denied", f"`{actor}` is not a broker")

    # -- requests -------------------------------------------------------------------

    def create_request(self, actor: str, resource: str, login: str = "", role: str = "",
                       duration: timedelta | None = None, reason: str = "", ticket: str = "",
                       emergency: bool = False, dry_run: bool = False
                       ) -> tuple[RequestRecord, Recommendation | None]:
        """Validate, decide with the requester's history, store. A policy deny is stored as DENIED.

        The history is read and the decision made inside the write transaction that stores
        the request, so the counters a decision saw are the ones in force when it commits.
        """
        ps = self._require_user(actor)
        res = ps.resources.get(resource)
        if res is None:
            raise JitError("resource.not_found", f"there is no resource `{resource}`")
        login, role, reason, ticket = (login or "").strip(), (role or "").strip(), (reason or "").strip(), (ticket or "").strip()
        self._check_target(res, login, role)
        if not reason:
            raise JitError("invalid.argument", "a reason is required: say what you will do")
        now = self.clock()
        target = _Target(actor, res, login, role, reason, ticket, emergency)

        # The model is asked only when its answer is used: no duration given (it becomes the
        # duration) or a dry run (which shows it). It used to run on every request (~25% of the
        # server's time under load) for an answer nobody read.
        recommendation: Recommendation | None = None
        past = functools.cache(lambda: self._past_rows(actor, resource, now))  # read once for model and risk
        if self.recommender is not None and (duration is None or dry_run):
            history = self._history(actor, resource, now)
            probe = ps.decide(target.policy_request(timedelta(minutes=1), now, history))
            recommendation = self._recommend(actor, res, login, role, reason, ticket, now,
                                             probe.max_duration if probe.allowed else None, past)
        if duration is None:
            if recommendation is None:
                raise JitError("invalid.argument", "give a duration (no recommendation is available)")
            duration = recommendation.duration
        if duration <= timedelta(0):
            raise JitError("invalid.argument", "the duration must be longer than 0s")
        risk = self._risk(target, duration, now, recommendation, past)
        if dry_run:
            with self.store.read() as tx:
                history = self._history_in(tx, actor, resource, now)
            rec, _code = self._decided(ps, target, duration, now, history, "", risk)
            return rec, recommendation

        with self.store.write() as tx:
            history = self._history_in(tx, actor, resource, now)
            rec, code = self._decided(ps, target, duration, now, history, secrets.token_hex(8), risk)
            tx.insert_request(rec)
            decision = rec.decision
            data = {"resource": resource, "kind": res.kind, "login": login, "role": role,
                    "duration": _fmt_td(duration), "reason": reason, "ticket": ticket,
                    "emergency": emergency, "history": history, "decision": decision.to_json(),
                    "state": rec.state}
            events = [("request.created", actor, rec.id, data, now)]
            if rec.state == DENIED:
                events.append(("request.denied", SYSTEM, rec.id,
                               {"message": rec.message, "code": code or "policy.denied",
                                "rules": list(decision.rules), "policy_version": decision.policy_version}, now))
            elif rec.state == ACTIVE:
                events.append(("grant.activated", SYSTEM, rec.id,
                               {"mode": decision.approval.mode, "expires_at": _iso(rec.expires_at),
                                "review_owed": rec.review_state == REVIEW_OWED}, now))
            recs = tx.append_audit_many(events)
        self._publish([Change(r.seq, r.type, r.at, request=rec) for r in recs])
        return rec, recommendation

    def _decided(self, ps: Any, target: "_Target", duration: timedelta, now: datetime,
                 history: dict[str, int | float], request_id: str, risk: Any = None) -> tuple[RequestRecord, str]:
        """The new request as the policy decides it (one decision); and the deny code, if any."""
        decision = ps.decide(target.policy_request(duration, now, history, risk))
        res = target.res
        rec = RequestRecord(
            id=request_id, user=target.user, resource=res.name, kind=res.kind, login=target.login,
            role=target.role, duration=duration, reason=target.reason, ticket=target.ticket,
            emergency=target.emergency, state=PENDING, decision=decision, created_at=now, history=dict(history))
        code = ""
        if not decision.allowed:
            rec.state, rec.ended_at, rec.message, rec.end_reason = DENIED, now, decision.message, "denied by policy"
            if decision.max_duration is not None and duration > decision.max_duration:
                code = "duration.over_max"
        elif decision.approval.mode in ("auto", "break_glass") or not decision.approval.levels:
            self._activate(rec, now)
            if decision.approval.mode == "break_glass":
                rec.review_state = REVIEW_OWED
                rec.message = _review_owed_text(decision.approval.review)
        else:
            rec.pending_deadline = now + ps.settings.pending_timeout
            rec.message = self._waiting_text(decision, 0)
        return rec, code

    def _check_target(self, res: Any, login: str, role: str) -> None:
        if res.kind == "ssh":
            if role:
                raise JitError("invalid.argument", f"`{res.name}` is an ssh host: ask for a login, not a role")
            if login not in res.logins:
                offered = ", ".join(res.logins)
                if not login:
                    raise JitError("invalid.argument", f"`{res.name}` needs a login (one of {offered})")
                raise JitError("invalid.argument", f"login `{login}` is not offered on `{res.name}` (one of {offered})")
        else:
            if login:
                raise JitError("invalid.argument", f"`{res.name}` is a database: ask for a role, not a login")
            if role not in res.roles:
                offered = ", ".join(res.roles)
                if not role:
                    raise JitError("invalid.argument", f"`{res.name}` needs a role (one of {offered})")
                raise JitError("invalid.argument", f"role `{role}` is not offered on `{res.name}` (one of {offered})")

    @staticmethod
    def _activate(rec: RequestRecord, now: datetime) -> None:
        rec.state = ACTIVE
        rec.activated_at = now
        rec.expires_at = now + rec.duration  # the clock starts at activation
        rec.pending_deadline = None
        rec.message = ""

    @staticmethod
    def _waiting_text(decision: Any, level: int) -> str:
        levels = decision.approval.levels
        lv = levels[level]
        return (f"waiting for level {level + 1} of {len(levels)}: "
                f"{lv.min} approval(s) from {_approvers_text(lv.approvers)}")

    def get_request(self, actor: str, request_id: str) -> RequestRecord:
        """A request the actor may see (own, approvable, or any for admins and brokers)."""
        with self.store.read() as tx:
            rec = tx.get_request(request_id)
        if rec is None:
            raise JitError("request.not_found", f"there is no request `{request_id}`")
        if not self._visible(actor, rec):
            raise JitError("permission.denied", f"you may not see request `{request_id}`")
        return rec

    def _visible(self, actor: str, rec: RequestRecord) -> bool:
        if actor == rec.user or self._is_admin(actor) or self._is_broker(actor):
            return True
        ps = self.policy.current
        if any(a.approver == actor for a in rec.approvals):
            return True
        for decision in [rec.decision] + [e.decision for e in rec.extensions]:
            approval = getattr(decision, "approval", None)
            if approval is None:
                continue
            words = [w for lv in approval.levels for w in lv.approvers] + list(approval.review)
            if words and ps.is_eligible(words, actor, rec.user, rec.resource):
                return True
        return False

    def can_approve_now(self, actor: str, rec: RequestRecord) -> bool:
        """Whether `actor` could approve the request (or its pending extension) right now."""
        ps = self.policy.current
        if actor == rec.user:
            return False
        if rec.state == PENDING:
            decision, level, approvals = rec.decision, rec.current_level, rec.approvals
        else:
            ext = rec.pending_extension
            if rec.state != ACTIVE or ext is None:
                return False
            decision, level, approvals = ext.decision, ext.current_level, ext.approvals
        levels = decision.approval.levels if decision.approval else []
        if level >= len(levels) or any(a.approver == actor for a in approvals):
            return False
        return ps.is_eligible(list(levels[level].approvers), actor, rec.user, rec.resource)

    def list_requests(self, actor: str, user: str | None = None, resource: str | None = None,
                      states: Sequence[str] = (), to_approve: bool = False, mine: bool = False,
                      since: datetime | None = None, page_size: int = 50, page_token: str = ""
                      ) -> tuple[list[RequestRecord], str]:
        """Requests newest first that the actor may see, filtered; returns (page, next_page_token)."""
        page_size = max(1, min(int(page_size or 50), MAX_PAGE))
        bad = [s for s in states if s not in REQUEST_STATES]
        if bad:
            raise JitError("invalid.argument", f"unknown state `{bad[0]}`")
        try:
            before = int(page_token) if page_token else None
        except ValueError:
            raise JitError("invalid.argument", f"bad page token `{page_token}`") from None
        if mine:
            user = actor
        if to_approve:
            states = [PENDING, ACTIVE]
        kept: list[tuple[int, RequestRecord]] = []
        limit = max(50, page_size * 2)
        while len(kept) <= page_size:
            with self.store.read() as tx:
                batch = tx.query_requests(user=user, resource=resource, states=states, since=since,
                                          before_num=before, limit=limit)
            for num, rec in batch:
                if self.can_approve_now(actor, rec) if to_approve else self._visible(actor, rec):
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
        """Every PENDING and ACTIVE request (the watch snapshot)."""
        out: list[RequestRecord] = []
        before = None
        while True:
            with self.store.read() as tx:
                batch = tx.query_requests(states=[PENDING, ACTIVE], before_num=before, limit=1000)
            out.extend(rec for _n, rec in batch)
            if len(batch) < 1000:
                return list(reversed(out))
            before = batch[-1][0]

    # -- approvals ------------------------------------------------------------------

    def _load_target(self, tx: Tx, target_id: str) -> tuple[RequestRecord, ExtensionRecord | None]:
        rec = tx.get_request(target_id)
        if rec is not None:
            return rec, None
        request_id = tx.find_extension(target_id)
        if request_id is not None:
            rec = tx.get_request(request_id)
            if rec is not None:
                ext = next(e for e in rec.extensions if e.id == target_id)
                return rec, ext
        raise JitError("request.not_found", f"there is no request or extension `{target_id}`")

    def approve(self, actor: str, target_id: str, comment: str = "") -> RequestRecord:
        """Approve the current level of a request or extension (`target_id`)."""
        ps = self.policy.current
        now = self.clock()
        with self.store.write() as tx:
            rec, ext = self._load_target(tx, target_id)
            decision, level, approvals = self._pending_target(rec, ext, now)
            if actor == rec.user:
                raise JitError("approval.self", "you cannot approve your own request")
            levels = decision.approval.levels
            mine = [a for a in approvals if a.approver == actor]
            if mine:
                if any(a.level == level for a in mine):
                    raise JitError("approval.duplicate", f"you already approved level {level + 1} of `{target_id}`")
                raise JitError("approval.two_levels",
                               f"you already approved level {mine[0].level + 1} of `{target_id}`; "
                               "nobody counts for two levels of one request")
            if not ps.is_eligible(list(levels[level].approvers), actor, rec.user, rec.resource):
                later = [j for j in range(level + 1, len(levels))
                         if ps.is_eligible(list(levels[j].approvers), actor, rec.user, rec.resource)]
                if later:
                    raise JitError("approval.level_order",
                                   f"level {level + 1} ({_approvers_text(levels[level].approvers)}) must "
                                   f"approve first; you may approve level {later[0] + 1} after it")
                raise JitError("approval.not_eligible",
                               f"you are not among the approvers of level {level + 1} "
                               f"({_approvers_text(levels[level].approvers)}) for `{target_id}`")
            vote = ApprovalRecord(approver=actor, level=level, approved=True, comment=comment, at=now)
            tx.add_approval(rec.id, ext.id if ext else "", vote)
            approvals.append(vote)
            count = sum(1 for a in approvals if a.level == level and a.approved)
            events: list[tuple[str, str, str, dict[str, Any], datetime]] = [
                ("approval.granted", actor, target_id, {"level": level + 1, "comment": comment}, now)]
            if count >= levels[level].min:
                level += 1
            done = level >= len(levels)
            if ext is None:
                rec.current_level = level
                if done:
                    self._activate(rec, now)
                    events.append(("grant.activated", SYSTEM, rec.id,
                                   {"mode": "levels", "expires_at": _iso(rec.expires_at)}, now))
                else:
                    rec.message = self._waiting_text(decision, level)
            else:
                ext.current_level = level
                if done:
                    self._apply_extension(rec, ext, now)
                    events.append(("grant.extended", SYSTEM, rec.id,
                                   {"extension": ext.number, "duration": _fmt_td(ext.duration),
                                    "expires_at": _iso(rec.expires_at)}, now))
                tx.update_extension(ext)
            tx.update_request(rec)
            recs = tx.append_audit_many(events)
        self._publish([Change(r.seq, r.type, r.at, request=rec) for r in recs])
        return rec

    @staticmethod
    def _pending_target(rec: RequestRecord, ext: ExtensionRecord | None, now: datetime
                        ) -> tuple[Any, int, list[ApprovalRecord]]:
        if ext is None:
            if rec.state != PENDING:
                raise JitError("approval.not_pending", f"request `{rec.id}` is {rec.state}, not waiting for approval")
            return rec.decision, rec.current_level, rec.approvals
        if ext.state != EXT_PENDING:
            raise JitError("approval.not_pending", f"extension `{ext.id}` is {ext.state}, not waiting for approval")
        if rec.state != ACTIVE or rec.expires_at is None or rec.expires_at <= now:
            raise JitError("grant.not_active", f"grant `{rec.id}` is no longer active")
        return ext.decision, ext.current_level, ext.approvals

    @staticmethod
    def _apply_extension(rec: RequestRecord, ext: ExtensionRecord, now: datetime) -> None:
        ext.state = EXT_APPROVED
        ext.decided_at = now
        rec.extensions_used = ext.number
        assert rec.expires_at is not None
        rec.expires_at = rec.expires_at + ext.duration

    def deny(self, actor: str, target_id: str, comment: str = "") -> RequestRecord:
        """Any eligible approver's deny ends a pending request or extension."""
        ps = self.policy.current
        now = self.clock()
        with self.store.write() as tx:
            rec, ext = self._load_target(tx, target_id)
            decision, _level, _approvals = self._pending_target(rec, ext, now)
            if actor == rec.user:
                raise JitError("approval.self", "you cannot decide on your own request; cancel it instead")
            words = [w for lv in decision.approval.levels for w in lv.approvers]
            if not ps.is_eligible(words, actor, rec.user, rec.resource):
                raise JitError("approval.not_eligible", f"you are not among the approvers of `{target_id}`")
            vote = ApprovalRecord(approver=actor, level=_level, approved=False, comment=comment, at=now)
            tx.add_approval(rec.id, ext.id if ext else "", vote)
            message = f"denied by {actor}" + (f": {comment}" if comment else "")
            if ext is None:
                rec.approvals.append(vote)
                rec.state, rec.ended_at, rec.end_reason, rec.message = DENIED, now, "denied", message
                rec.pending_deadline = None
                etype = "request.denied"
            else:
                ext.approvals.append(vote)
                ext.state, ext.decided_at = EXT_DENIED, now
                tx.update_extension(ext)
                etype = "extension.denied"
            tx.update_request(rec)
            recs = tx.append_audit_many([(etype, actor, target_id, {"comment": comment}, now)])
        self._publish([Change(r.seq, r.type, r.at, request=rec) for r in recs])
        return rec

    def cancel(self, actor: str, target_id: str) -> RequestRecord:
        """The requester withdraws a pending request or extension."""
        now = self.clock()
        with self.store.write() as tx:
            rec, ext = self._load_target(tx, target_id)
            if actor != rec.user:
                raise JitError("permission.denied", f"only `{rec.user}` may cancel `{target_id}`")
            if ext is None:
                if rec.state != PENDING:
                    raise JitError("request.not_pending", f"request `{rec.id}` is {rec.state}; only a pending request can be cancelled")
                rec.state, rec.ended_at, rec.end_reason, rec.message = CANCELLED, now, "cancelled", f"cancelled by {actor}"
                rec.pending_deadline = None
                etype = "request.cancelled"
            else:
                if ext.state != EXT_PENDING:
                    raise JitError("request.not_pending", f"extension `{ext.id}` is {ext.state}; only a pending extension can be cancelled")
                ext.state, ext.decided_at = EXT_CANCELLED, now
                tx.update_extension(ext)
                etype = "extension.cancelled"
            tx.update_request(rec)
            recs = tx.append_audit_many([(etype, actor, target_id, {}, now)])
        self._publish([Change(r.seq, r.type, r.at, request=rec) for r in recs])
        return rec

    # -- extensions, revocation, review ---------------------------------------------

    def extend(self, actor: str, request_id: str, duration: timedelta, justification: str) -> RequestRecord:
        """Ask for more time on an active grant; the policies decide again with `extension = n`."""
        from policy import PolicyRequest
        ps = self.policy.current
        now = self.clock()
        with self.store.read() as tx:
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
        if rec.pending_extension is not None:
            raise JitError("extension.pending", f"extension `{rec.pending_extension.id}` is still waiting for approval")
        number = rec.extensions_used + 1
        limit = rec.decision.max_extensions
        if number > limit:
            self._refuse(actor, request_id, "extension.refused", "extension.limit",
                         f"grant `{request_id}` may be extended at most {limit} time(s)", {"extension": number})
        history = self._history(actor, rec.resource, now)
        decision = ps.decide(PolicyRequest(
            user=actor, resource=rec.resource, duration=duration, time=now, login=rec.login, role=rec.role,
            reason=rec.reason, ticket=rec.ticket, emergency=rec.emergency, extension=number, history=history))
        if not decision.allowed:
            code = "extension.denied"
            if decision.max_duration is not None and duration > decision.max_duration:
                code = "duration.over_max"
            elif number > decision.max_extensions and decision.rules:
                code = "extension.limit"
            self._refuse(actor, request_id, "extension.refused", code, decision.message,
                         {"extension": number, "rules": list(decision.rules),
                          "policy_version": decision.policy_version})
        ext = ExtensionRecord(id=f"{rec.id}.{number}", request_id=rec.id, number=number, duration=duration,
                              justification=justification, state=EXT_PENDING, decision=decision,
                              created_at=now)
        with self.store.write() as tx:
            rec = tx.get_request(request_id)  # re-read under the write lock
            assert rec is not None
            if rec.state != ACTIVE or rec.expires_at is None or rec.expires_at <= now:
                raise JitError("grant.not_active", f"grant `{request_id}` is {rec.state}, not active")
            if rec.pending_extension is not None or rec.extensions_used + 1 != number:
                raise JitError("extension.pending", f"grant `{request_id}` changed meanwhile; try again")
            events: list[tuple[str, str, str, dict[str, Any], datetime]] = [
                ("extension.requested", actor, ext.id,
                 {"extension": number, "duration": _fmt_td(duration), "justification": justification,
                  "decision": decision.to_json()}, now)]
            if decision.approval.mode in ("auto", "break_glass") or not decision.approval.levels:
                self._apply_extension(rec, ext, now)
                events.append(("grant.extended", SYSTEM, rec.id,
                               {"extension": number, "duration": _fmt_td(duration),
                                "expires_at": _iso(rec.expires_at)}, now))
            tx.insert_extension(ext)
            tx.update_request(rec)
            rec.extensions.append(ext)
            recs = tx.append_audit_many(events)
        self._publish([Change(r.seq, r.type, r.at, request=rec) for r in recs])
        return rec

    def _refuse(self, actor: str, subject: str, etype: str, code: str, message: str,
                data: dict[str, Any]) -> None:
        """Write a refusal to the audit log in its own transaction, then raise it."""
        now = self.clock()
        with self.store.write() as tx:
            recs = tx.append_audit_many([(etype, actor, subject, {"code": code, "message": message, **data}, now)])
        self._publish([Change(r.seq, r.type, r.at) for r in recs])
        raise JitError(code, message)

    def revoke(self, actor: str, request_id: str, reason: str = "") -> RequestRecord:
        """End an active grant early (an admin or the requester); its certificates become revoked."""
        now = self.clock()
        with self.store.write() as tx:
            rec = tx.get_request(request_id)
            if rec is None:
                raise JitError("request.not_found", f"there is no request `{request_id}`")
            if actor != rec.user and not self._is_admin(actor):
                raise JitError("permission.denied", f"only an admin or `{rec.user}` may revoke `{request_id}`")
            if rec.state != ACTIVE:
                raise JitError("grant.not_active", f"grant `{request_id}` is {rec.state}, not active")
            rec.state, rec.ended_at = REVOKED, now
            rec.end_reason = f"revoked by {actor}" + (f": {reason}" if reason else "")
            rec.message = rec.end_reason
            for ext in rec.extensions:
                if ext.state == EXT_PENDING:
                    ext.state, ext.decided_at = EXT_CANCELLED, now
                    tx.update_extension(ext)
            tx.update_request(rec)
            serials = tx.revoke_certificates([rec.id], now)
            tx.delete_tokens([rec.id])
            recs = tx.append_audit_many([("grant.revoked", actor, rec.id,
                                          {"reason": reason, "revoked_serials": serials}, now)])
        self._publish([Change(r.seq, r.type, r.at, request=rec) for r in recs])
        return rec

    def review(self, actor: str, request_id: str, flag: bool, comment: str = "") -> RequestRecord:
        """A break-glass reviewer closes the owed review: REVIEWED, or FLAGGED when `flag`."""
        ps = self.policy.current
        now = self.clock()
        with self.store.write() as tx:
            rec = tx.get_request(request_id)
            if rec is None:
                raise JitError("request.not_found", f"there is no request `{request_id}`")
            if rec.review_state != REVIEW_OWED:
                what = "already reviewed" if rec.review_state else "not a break-glass grant"
                raise JitError("review.not_owed", f"`{request_id}` owes no review ({what})")
            if actor == rec.user:
                raise JitError("review.self", "you cannot review your own break-glass access")
            reviewers = list(rec.decision.approval.review)
            if not ps.is_eligible(reviewers, actor, rec.user, rec.resource):
                raise JitError("review.not_eligible",
                               f"only {_approvers_text(reviewers)} may review `{request_id}`")
            rec.review_state = FLAGGED if flag else REVIEWED
            rec.review_by, rec.review_comment = actor, comment
            if rec.message == _review_owed_text(reviewers):  # not a revocation's reason, which stays
                rec.message = f"break-glass: {'flagged' if flag else 'reviewed'} by {actor}"
            tx.update_request(rec)
            recs = tx.append_audit_many([("grant.flagged" if flag else "grant.reviewed", actor, rec.id,
                                          {"comment": comment}, now)])
        self._publish([Change(r.seq, r.type, r.at, request=rec) for r in recs])
        return rec

    # -- history and recommendations ------------------------------------------------

    def _history(self, user: str, resource: str, now: datetime) -> dict[str, int | float]:
        """POLICY.md's `history` for a requester from the store (last 90 days)."""
        with self.store.read() as tx:
            return self._history_in(tx, user, resource, now)

    @staticmethod
    def _history_in(tx: Tx, user: str, resource: str, now: datetime) -> dict[str, int | float]:
        """`_history` inside a transaction the caller holds."""
        counts: dict[str, int | float] = dict(tx.history_counts(user, now - HISTORY_WINDOW))
        minutes = tx.used_minutes_of(user, resource, now - HISTORY_WINDOW)
        counts["median_minutes"] = round(float(statistics.median(minutes)), 3) if minutes else 0.0
        return counts

    def _recommend(self, user: str, res: Any, login: str, role: str, reason: str, ticket: str,
                   now: datetime, max_duration: timedelta | None,
                   past: Callable[[], list[Any]] | None = None) -> Recommendation | None:
        if self.recommender is None:
            return None
        try:
            from recommend import HistoryRow, RecommendRequest
            ask = RecommendRequest(user=user, resource=res.name, kind=res.kind, labels=dict(res.labels),
                                   login=login if res.kind == "ssh" else None,
                                   role=role if res.kind != "ssh" else None,
                                   reason=reason, ticket=ticket, requested_at=now)
            rows = past() if past is not None else self._past_rows(user, res.name, now)
            got = self.recommender.recommend(ask, max_duration, self.policy.current.settings.duration_step, rows)
        except Exception:  # the model is advice: a broken model never blocks a request
            log.exception("duration recommendation failed")
            return None
        if got is None:
            return None
        return Recommendation(duration=got.duration, minutes=int(got.minutes), explanation=got.explanation,
                              fallback=bool(got.fallback), model_version=got.model_version or "",
                              max_duration=max_duration)

    def _past_rows(self, user: str, resource: str, now: datetime) -> list[Any]:
        """recommend.HistoryRows of `user`'s finished grants and the imported rows of `user` and `resource`."""
        from recommend import HistoryRow
        with self.store.read() as tx:
            past = tx.finished_grants(user, resource, now - HISTORY_WINDOW)
            used = tx.used_minutes([r.id for r in past]) if past else {}
            # Imported history: no time window (it is the past someone chose to bring in).
            rows = self._imported_rows(tx, user, resource, HistoryRow)
        resources = self.policy.current.resources
        for r in reversed(past):  # oldest first
            if r.id not in used:
                continue
            labels = dict(resources[r.resource].labels) if r.resource in resources else {}
            rows.append(HistoryRow(user=r.user, resource=r.resource, kind=r.kind, requested_at=r.created_at,
                                   asked_minutes=r.duration.total_seconds() / 60, used_minutes=used[r.id],
                                   labels=labels, login=r.login if r.kind == "ssh" else None,
                                   role=r.role if r.kind != "ssh" else None, reason=r.reason,
                                   ticket=r.ticket, extensions=r.extensions_used, emergency=r.emergency))
        return rows

    def _risk(self, target: "_Target", duration: timedelta, now: datetime,
              recommendation: "Recommendation | None", past: Callable[[], list[Any]]) -> Any:
        """POLICY.md's `risk` of a new request, scored by recommend/ (unknown, and why, without it)."""
        from policy.request import Risk
        if self.recommender is None:
            return Risk(known=False, reasons=("risk scoring is off (the server runs without a model)",))
        try:
            from recommend.risk import RiskAsk
            res = target.res
            ask = RiskAsk(user=target.user, resource=res.name, kind=res.kind,
                          access=f"login:{target.login}" if res.kind == "ssh" else f"role:{target.role}", at=now,
                          asked_minutes=duration.total_seconds() / 60, reason=target.reason, ticket=target.ticket,
                          emergency=target.emergency,
                          recommended_minutes=recommendation.minutes if recommendation is not None else None)
            got = self.recommender.risk(ask, past())
            return Risk(known=bool(got.known), score=float(got.score), reasons=tuple(got.reasons))
        except Exception as exc:  # advice only: a broken scorer leaves the score unknown and says why
            log.exception("risk scoring failed")
            return Risk(known=False, reasons=(f"risk scoring failed ({type(exc).__name__})",))

    def _imported_rows(self, tx: Tx, user: str, resource: str, row_type: Any) -> list[Any]:
        """`user`'s imported rows and anyone's on `resource` (newest 250 of each), oldest finished first."""
        generation = tx.imported_generation()
        if generation == 0:
            return []
        merged: dict[int, Any] = {}
        for key in (("user", user), ("resource", resource)):
            with self._imported_lock:
                hit = self._imported_cache.get(key)
                if hit is not None and hit[0] == generation:
                    self._imported_cache.move_to_end(key)
            if hit is None or hit[0] != generation:
                found = tx.imported_by_user(user) if key[0] == "user" else tx.imported_on_resource(resource)
                hit = (generation, [(num, row_type(**fields)) for num, fields in found])
                with self._imported_lock:
                    self._imported_cache[key] = hit
                    self._imported_cache.move_to_end(key)
                    while len(self._imported_cache) > IMPORTED_CACHE_SIZE:
                        self._imported_cache.popitem(last=False)
            merged.update(hit[1])
        return [row for _num, row in sorted(merged.items(), key=lambda item: (item[1].finished_at, item[0]))]

    def recommend(self, actor: str, resource: str, login: str = "", role: str = "",
                  reason: str = "", ticket: str = "") -> Recommendation:
        """A recommended duration for a request the actor could make."""
        from policy import PolicyRequest
        ps = self._require_user(actor)
        res = ps.resources.get(resource)
        if res is None:
            raise JitError("resource.not_found", f"there is no resource `{resource}`")
        self._check_target(res, login, role)
        if self.recommender is None:
            raise JitError("recommend.unavailable", "no duration model is configured")
        now = self.clock()
        probe = ps.decide(PolicyRequest(user=actor, resource=resource, duration=timedelta(minutes=1), time=now,
                                        login=login, role=role, reason=reason, ticket=ticket,
                                        history=self._history(actor, resource, now)))
        rec = self._recommend(actor, res, login, role, reason, ticket, now,
                              probe.max_duration if probe.allowed else None)
        if rec is None:
            raise JitError("recommend.unavailable", "the duration model has no recommendation for this request")
        return rec

    # -- dashboard ------------------------------------------------------------------

    def dashboard(self, actor: str) -> Dashboard:
        """Active grants, pending requests and figures over what the actor may see."""
        now = self.clock()
        window = now - DASHBOARD_WINDOW
        seen: list[RequestRecord] = []
        before = None
        while True:
            with self.store.read() as tx:
                batch = tx.query_requests(since=window, before_num=before, limit=1000)
            seen.extend(rec for _n, rec in batch if self._visible(actor, rec))
            if len(batch) < 1000:
                break
            before = batch[-1][0]
        live = [r for r in self.live_requests() if self._visible(actor, r)]
        granted = [r for r in seen if r.activated_at is not None]
        with self.store.read() as tx:
            used = tx.used_minutes([r.id for r in granted]) if granted else {}
        decided = [r for r in seen if r.activated_at is not None or r.state == DENIED]
        granted_minutes = [((r.ended_at or r.expires_at or now) - r.activated_at).total_seconds() / 60  # type: ignore[operator]
                           for r in granted]
        with self.store.read() as tx:
            owed = [r for r in tx.owed_reviews() if self._visible(actor, r)]
        return Dashboard(
            active=[r for r in live if r.state == ACTIVE],
            pending=[r for r in live if r.state == PENDING or r.pending_extension is not None],
            expired_24h=sum(1 for r in seen if r.state == "EXPIRED" and r.ended_at and r.ended_at >= now - timedelta(hours=24)),
            avg_granted_minutes=statistics.fmean(granted_minutes) if granted_minutes else 0.0,
            avg_used_minutes=statistics.fmean(used.values()) if used else 0.0,
            approval_rate=sum(1 for r in decided if r.activated_at is not None) / len(decided) if decided else 0.0,
            reviews_owed=owed,
        )

    # -- credentials ----------------------------------------------------------------

    def _active_grant(self, rec: RequestRecord | None, grant_id: str, now: datetime) -> RequestRecord:
        if rec is None:
            raise JitError("request.not_found", f"there is no grant `{grant_id}`")
        if rec.state != ACTIVE:
            raise JitError("grant.not_active", f"grant `{grant_id}` is {rec.state}, not active")
        if rec.expires_at is None or rec.expires_at <= now:
            raise JitError("grant.not_active", f"grant `{grant_id}` expired at {_iso(rec.expires_at)}")
        return rec

    def issue_ssh_certificate(self, actor: str, grant_id: str, public_key: str
                              ) -> tuple[str, int, datetime, list[str]]:
        """Sign the owner's public key for an active ssh grant; returns (line, serial, valid_before, principals)."""
        if self.ssh_user_ca is None:
            raise JitError("ca.unavailable", "no SSH user CA is configured")
        now = self.clock()
        with self.store.read() as tx:
            rec = tx.get_request(grant_id)
        if rec is not None and rec.user != actor:
            raise JitError("permission.denied", f"grant `{grant_id}` belongs to `{rec.user}`")
        rec = self._active_grant(rec, grant_id, now)
        if rec.kind != "ssh":
            raise JitError("invalid.argument", f"grant `{grant_id}` is for a {rec.kind} resource, not ssh")
        principals = [f"{rec.login}@{rec.resource}"]
        options = rec.decision.session
        assert rec.expires_at is not None
        for _attempt in range(5):
            serial = _new_serial()
            try:
                line = self.ssh_user_ca.sign_user_certificate(
                    public_key=public_key, key_id=rec.id, principals=principals,
                    valid_after=now - CERT_SKEW, valid_before=rec.expires_at, serial=serial,
                    permit_pty=bool(options.pty), permit_port_forwarding=bool(options.port_forwarding),
                    permit_agent_forwarding=False)
            except Exception as e:  # ca.IssueError: a bad public key
                raise JitError("invalid.argument", f"cannot sign this public key: {e}") from None
            with self.store.write() as tx:
                fresh = self._active_grant(tx.get_request(grant_id), grant_id, self.clock())
                if not tx.insert_certificate(serial, rec.id, "user", principals, now, rec.expires_at):
                    continue  # serial taken (1 in 2^63): the certificate is thrown away, sign again
                recs = tx.append_audit_many([("credential.ssh_issued", actor, rec.id,
                                              {"serial": serial, "principals": principals,
                                               "valid_before": _iso(rec.expires_at),
                                               "permit_pty": bool(options.pty),
                                               "permit_port_forwarding": bool(options.port_forwarding)}, now)])
            self._publish([Change(r.seq, r.type, r.at, request=fresh) for r in recs])
            return line, serial, rec.expires_at, principals
        raise JitError("internal", "could not find a free certificate serial")

    def issue_database_token(self, actor: str, grant_id: str) -> tuple[str, datetime]:
        """A random token for an active database grant, valid until the grant ends (stored hashed)."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        digest = _token_hash(token)
        with self.store.write() as tx:
            rec = tx.get_request(grant_id)
            if rec is not None and rec.user != actor:
                raise JitError("permission.denied", f"grant `{grant_id}` belongs to `{rec.user}`")
            rec = self._active_grant(rec, grant_id, now)
            if rec.kind != "postgres":
                raise JitError("invalid.argument", f"grant `{grant_id}` is for a {rec.kind} resource, not a database")
            tx.insert_token(digest, rec.id, now)
            recs = tx.append_audit_many([("credential.db_token_issued", actor, rec.id,
                                          {"token_id": digest[:12], "expires_at": _iso(rec.expires_at)}, now)])
        self._publish([Change(r.seq, r.type, r.at, request=rec) for r in recs])
        assert rec.expires_at is not None
        return token, rec.expires_at

    def revoked_serials(self) -> list[int]:
        """Serials of revoked user certificates still inside their window."""
        with self.store.read() as tx:
            return tx.revoked_serials(self.clock())

    # -- sessions -------------------------------------------------------------------

    def authorize_session(self, broker: str, kind: str, resource: str, login: str = "", role: str = "",
                          ssh_key_id: str = "", ssh_serial: int = 0, db_token: str = "",
                          client_address: str = "", channel: str = "", audit_refusal: bool = True
                          ) -> tuple[SessionRecord, RequestRecord, Any]:
        """Check a presented credential against its grant and open a session; refusals are audited
        (unless `audit_refusal` is False: the broker counts them in its per-source aggregate)."""
        try:
            return self._authorize(broker, kind, resource, login, role, ssh_key_id, ssh_serial, db_token,
                                   client_address, channel)
        except JitError as e:
            if not audit_refusal:
                raise
            who = ssh_key_id or ("token" if db_token else "")
            self._refuse_quietly(broker, kind, who, resource, e.code, e.message, client_address,
                                 {"login": login, "role": role, "channel": channel,
                                  "serial": ssh_serial or None})
            raise

    def _authorize(self, broker: str, kind: str, resource: str, login: str, role: str, key_id: str,
                   serial: int, db_token: str, client_address: str, channel: str
                   ) -> tuple[SessionRecord, RequestRecord, Any]:
        self._require_broker(broker)
        if channel not in CHANNEL_OPTION:
            raise JitError("invalid.argument", f"unknown channel `{channel}`")
        ps = self.policy.current
        now = self.clock()
        with self.store.write() as tx:
            if kind == "ssh":
                row = tx.get_certificate(int(serial or 0)) if serial else None
                if row is None or row.purpose != "user":
                    raise JitError("credential.invalid", f"certificate serial {serial} was not issued by jitgate")
                if row.grant_id != key_id:
                    raise JitError("credential.invalid",
                                   f"certificate serial {serial} was issued for another grant than `{key_id}`")
                if row.revoked_us is not None:
                    raise JitError("credential.revoked", f"certificate serial {serial} is revoked")
                grant_id = key_id
            elif kind == "postgres":
                grant_id = tx.token_grant(_token_hash(db_token)) if db_token else None  # type: ignore[assignment]
                if not grant_id:
                    raise JitError("credential.invalid", "the database token is not valid")
            else:
                raise JitError("invalid.argument", f"unknown kind `{kind}`")
            rec = self._active_grant(tx.get_request(grant_id), grant_id, now)
            if rec.kind != kind or rec.resource != resource:
                raise JitError("session.target_mismatch",
                               f"grant `{rec.id}` is for `{rec.resource}`, not `{resource}`")
            if kind == "ssh" and login != rec.login:
                raise JitError("session.login_mismatch", f"grant `{rec.id}` is for login `{rec.login}`, not `{login}`")
            if kind == "postgres" and role and role != rec.role:
                raise JitError("session.role_mismatch", f"grant `{rec.id}` is for role `{rec.role}`, not `{role}`")
            option = CHANNEL_OPTION[channel]
            if channel == "pg" and kind != "postgres":
                raise JitError("session.channel_not_allowed", "a `pg` channel needs a database grant")
            if option and not getattr(rec.decision.session, option, False):
                raise JitError("session.channel_not_allowed",
                               f"`{channel}` is not allowed by the policy for grant `{rec.id}`")
            res = ps.resources.get(rec.resource)
            if res is None:
                raise JitError("resource.not_found", f"resource `{rec.resource}` is no longer in the policy")
            sess = SessionRecord(id=secrets.token_hex(8), grant_id=rec.id, user=rec.user, resource=rec.resource,
                                 kind=rec.kind, login=rec.login, role=rec.role, broker=broker,
                                 client_address=client_address, started_at=now, last_activity_at=now,
                                 channel=channel)
            tx.insert_session(sess)
            recs = tx.append_audit_many([("session.started", broker, sess.id,
                                          {"grant_id": rec.id, "user": rec.user, "resource": rec.resource,
                                           "login": rec.login, "role": rec.role, "channel": channel,
                                           "client_address": client_address,
                                           "serial": int(serial) if kind == "ssh" else None}, now)])
        self._publish([Change(r.seq, r.type, r.at, request=rec, session=sess) for r in recs])
        return sess, rec, res

    def _refuse_quietly(self, broker: str, kind: str, user: str, resource: str, code: str, message: str,
                        client_address: str, extra: dict[str, Any] | None = None) -> None:
        data = {"kind": kind, "user": user, "resource": resource, "code": code, "message": message,
                "client_address": client_address, **(extra or {})}
        now = self.clock()
        with self.store.write() as tx:
            recs = tx.append_audit_many([("session.refused", broker, resource or user, data, now)])
        self._publish([Change(r.seq, r.type, r.at) for r in recs])

    def record_refusal(self, broker: str, kind: str, user: str, resource: str, code: str, message: str,
                       client_address: str = "", aggregate: dict[str, Any] | None = None) -> None:
        """Audit a refusal the broker made itself (bad certificate, malformed name), or one source's
        refusals over a window (`aggregate`: count, first_at, last_at, codes, samples)."""
        self._require_broker(broker)
        self._refuse_quietly(broker, kind, user, resource, code, message, client_address, aggregate)

    def _live_session(self, tx: Tx, broker: str, session_id: str) -> SessionRecord:
        sess = tx.get_session(session_id)
        if sess is None:
            raise JitError("session.not_found", f"there is no session `{session_id}`")
        if sess.broker != broker:
            raise JitError("permission.denied", f"session `{session_id}` belongs to broker `{sess.broker}`")
        return sess

    def issue_upstream_certificate(self, broker: str, session_id: str, public_key: str) -> tuple[str, datetime]:
        """The broker's short certificate towards the target (principal = the approved login)."""
        self._require_broker(broker)
        if self.ssh_upstream_ca is None:
            raise JitError("ca.unavailable", "no SSH upstream CA is configured")
        now = self.clock()
        with self.store.read() as tx:
            sess = self._live_session(tx, broker, session_id)
            rec = tx.get_request(sess.grant_id)
        if sess.ended_at is not None:
            raise JitError("session.ended", f"session `{session_id}` has ended")
        rec = self._active_grant(rec, sess.grant_id, now)
        if rec.kind != "ssh":
            raise JitError("invalid.argument", f"session `{session_id}` is not an ssh session")
        assert rec.expires_at is not None
        valid_before = min(rec.expires_at, now + UPSTREAM_CERT_LIFETIME)
        for _attempt in range(5):
            serial = _new_serial()
            try:
                line = self.ssh_upstream_ca.sign_user_certificate(
                    public_key=public_key, key_id=f"{rec.id}/{session_id}", principals=[rec.login],
                    valid_after=now - CERT_SKEW, valid_before=valid_before, serial=serial,
                    permit_pty=True, permit_port_forwarding=bool(rec.decision.session.port_forwarding),
                    permit_agent_forwarding=False)
            except Exception as e:
                raise JitError("invalid.argument", f"cannot sign this public key: {e}") from None
            with self.store.write() as tx:
                self._active_grant(tx.get_request(rec.id), rec.id, self.clock())
                if not tx.insert_certificate(serial, rec.id, "upstream", [rec.login], now, valid_before,
                                             session_id=session_id):
                    continue
                recs = tx.append_audit_many([("credential.upstream_issued", broker, session_id,
                                              {"grant_id": rec.id, "serial": serial, "principals": [rec.login],
                                               "valid_before": _iso(valid_before)}, now)])
            self._publish([Change(r.seq, r.type, r.at, request=rec, session=sess) for r in recs])
            return line, valid_before
        raise JitError("internal", "could not find a free certificate serial")

    def end_session(self, broker: str, session_id: str, reason: str, bytes_in: int = 0, bytes_out: int = 0,
                    recording_ref: str = "", recording_hash: str = "", ended_at: datetime | None = None,
                    last_activity_at: datetime | None = None) -> SessionRecord:
        """Record a session's end (idempotent: a second report returns the first)."""
        self._require_broker(broker)
        now = self.clock()
        with self.store.write() as tx:
            sess = self._live_session(tx, broker, session_id)
            if sess.ended_at is not None:
                return sess
            sess.ended_at = ended_at or now
            sess.end_reason = reason or "client_exit"
            sess.bytes_in, sess.bytes_out = max(sess.bytes_in, bytes_in), max(sess.bytes_out, bytes_out)
            sess.recording_ref, sess.recording_hash = recording_ref, recording_hash
            if last_activity_at is not None:
                sess.last_activity_at = last_activity_at
            tx.update_session(sess)
            recs = tx.append_audit_many([("session.ended", broker, sess.id,
                                          {"grant_id": sess.grant_id, "reason": sess.end_reason,
                                           "bytes_in": sess.bytes_in, "bytes_out": sess.bytes_out,
                                           "recording_ref": recording_ref, "recording_hash": recording_hash,
                                           "ended_at": _iso(sess.ended_at)}, now)])
        self._publish([Change(r.seq, r.type, r.at, session=sess) for r in recs])
        return sess

    def report_activity(self, broker: str, session_id: str, last_activity_at: datetime | None,
                        bytes_in: int = 0, bytes_out: int = 0) -> None:
        """Progress of a live session (not an audit event: it changes no state)."""
        self._require_broker(broker)
        with self.store.write() as tx:
            sess = self._live_session(tx, broker, session_id)
            if sess.ended_at is not None:
                return
            sess.last_activity_at = last_activity_at or self.clock()
            sess.bytes_in, sess.bytes_out = max(sess.bytes_in, bytes_in), max(sess.bytes_out, bytes_out)
            tx.update_session(sess)

    def list_sessions(self, actor: str, grant_id: str | None = None, user: str | None = None,
                      resource: str | None = None, live_only: bool = False, page_size: int = 50,
                      page_token: str = "") -> tuple[list[SessionRecord], str]:
        """Sessions newest first: all for admins and brokers, one's own for everybody else."""
        page_size = max(1, min(int(page_size or 50), MAX_PAGE))
        try:
            before = int(page_token) if page_token else None
        except ValueError:
            raise JitError("invalid.argument", f"bad page token `{page_token}`") from None
        if not (self._is_admin(actor) or self._is_broker(actor)):
            if user and user != actor:
                raise JitError("permission.denied", f"you may only list your own sessions, not `{user}`'s")
            user = actor
        with self.store.read() as tx:
            rows = tx.query_sessions(grant_id=grant_id, user=user, resource=resource, live_only=live_only,
                                     before_num=before, limit=page_size + 1)
        page = rows[:page_size]
        token = str(page[-1][0]) if len(rows) > page_size else ""
        return [s for _n, s in page], token

    def get_session(self, actor: str, session_id: str) -> SessionRecord:
        with self.store.read() as tx:
            sess = tx.get_session(session_id)
        if sess is None:
            raise JitError("session.not_found", f"there is no session `{session_id}`")
        if sess.user != actor and not (self._is_admin(actor) or self._is_broker(actor)):
            raise JitError("permission.denied", f"you may not see session `{session_id}`")
        return sess

    # -- deadlines ------------------------------------------------------------------

    def sweep(self) -> datetime | None:
        """End every overdue grant (EXPIRED) and stale pending request (TIMED_OUT) in one
        transaction; returns the next deadline (None when nothing is waiting)."""
        now = self.clock()
        with self.store.read() as tx:
            nxt = tx.next_deadline()
        if nxt is None or nxt > now:
            return nxt
        with self.store.write() as tx:
            expired, timed_out, cancelled = tx.end_due(now)
            if expired:
                tx.delete_tokens(expired)  # certificates lapse by themselves: valid_before <= expiry
            events: list[tuple[str, str, str, dict[str, Any], datetime]] = []
            events += [("grant.expired", SYSTEM, rid, {}, now) for rid in expired]
            events += [("request.timed_out", SYSTEM, rid, {}, now) for rid in timed_out]
            events += [("extension.cancelled", SYSTEM, xid, {"reason": "the grant ended"}, now) for xid in cancelled]
            recs = tx.append_audit_many(events)
            nxt = tx.next_deadline()
        # Listeners get the ended records, loaded after the commit (the states are already final).
        self._publish_loaded(recs)
        return nxt

    def _publish_loaded(self, recs: Sequence[AuditRecord], chunk: int = 500) -> None:
        """Publish changes with their records loaded after the commit, a chunk at a time
        (the first watchers hear of a mass expiry without waiting for all of it)."""
        with self._listeners_lock:
            if not self._listeners:
                return
        for i in range(0, len(recs), chunk):
            part = recs[i:i + chunk]
            ids = list(dict.fromkeys(r.subject.split(".", 1)[0] for r in part))
            with self.store.read() as tx:
                by_id = {r.id: r for r in tx.get_requests(ids)}
            self._publish([Change(r.seq, r.type, r.at, request=by_id.get(r.subject.split(".", 1)[0]))
                           for r in part])

    # -- audit ----------------------------------------------------------------------

    def audit_events(self, after_seq: int = 0, type: str = "", subject: str = "",  # noqa: A002
                     limit: int = 100, since: datetime | None = None) -> list[AuditRecord]:
        """Events after `after_seq` in order; `type` may end with `*` for a prefix."""
        limit = max(1, min(int(limit or 100), 10_000))
        with self.store.read() as tx:
            return tx.audit_events(after_seq=after_seq, type_=type, subject=subject, limit=limit, since=since)

    def verify_audit(self) -> tuple[bool, int, list[str]]:
        """Walk the whole chain: (ok, events checked, problems)."""
        v = ChainVerifier()
        with self.store.read() as tx:
            v.feed(tx.iter_audit())
            head_seq, head_hash = tx.audit_head()
        return v.finish(head_seq, head_hash)

    def record_policy_reload(self, version: str, ok: bool, errors: Sequence[str] = ()) -> None:
        """Audit a policy reload (or a refused candidate)."""
        now = self.clock()
        with self.store.write() as tx:
            recs = tx.append_audit_many([("policy.reloaded" if ok else "policy.refused", SYSTEM, version,
                                          {"version": version, "errors": list(errors)[:50]}, now)])
        self._publish([Change(r.seq, r.type, r.at) for r in recs])

    def record_identity_issued(self, actor: str, name: str) -> None:
        """Audit that an admin issued a client identity."""
        now = self.clock()
        with self.store.write() as tx:
            recs = tx.append_audit_many([("identity.issued", actor, name, {"name": name}, now)])
        self._publish([Change(r.seq, r.type, r.at) for r in recs])

    def record_ca_rotated(self, actor: str, ca_name: str, new_key: str, still_trusted: Sequence[str]) -> None:
        """Audit an SSH CA rotation: the new signing key and every key still trusted (public lines only)."""
        now = self.clock()
        with self.store.write() as tx:
            recs = tx.append_audit_many([("ca.rotated", actor, ca_name,
                                          {"ca": ca_name, "new_key": new_key, "trusted": list(still_trusted)}, now)])
        self._publish([Change(r.seq, r.type, r.at) for r in recs])

    def import_history(self, actor: str, rows: Sequence[Any], source: str, sha256: str) -> int:
        """Store past grants from a history file for the duration recommender only, with one
        `history.imported` audit event (row count, file hash) in the same transaction.

        `rows` are `recommend.HistoryRow`s. They never become requests or grants, so they
        count in no policy history. A file (by `sha256`) is imported once. Local use only:
        no gRPC method calls this, the actor is whoever runs the import.
        """
        if not rows:
            raise JitError("invalid.argument", f"`{source}` holds no history rows")
        fields = [dict(user=r.user, resource=r.resource, kind=r.kind, labels=dict(r.labels), login=r.login,
                       role=r.role, reason=r.reason, ticket=r.ticket, requested_at=r.requested_at,
                       asked_minutes=r.asked_minutes, used_minutes=r.used_minutes, extensions=r.extensions)
                  for r in rows]
        now = self.clock()
        with self.store.write() as tx:
            if tx.imported_batch_exists(sha256):
                raise JitError("history.already_imported",
                               f"`{source}` (sha256 {sha256[:12]}...) was imported before")
            count = tx.insert_imported_history(fields, sha256, now)
            recs = tx.append_audit_many([("history.imported", actor, source,
                                          {"rows": count, "sha256": sha256, "file": source}, now)])
        self._publish([Change(r.seq, r.type, r.at) for r in recs])
        return count

    def export_imported_history(self, days: float | None = None) -> Iterator[dict[str, Any]]:
        """Imported history rows (requested in the last `days`, None: all) in the history
        JSON shape of `export_history`, in import order."""
        since = self.clock() - timedelta(days=days) if days is not None else None
        with self.store.read() as tx:
            found = list(tx.iter_imported_history(since))
        for r in found:
            row: dict[str, Any] = {"user": r["user"], "resource": r["resource"], "kind": r["kind"],
                                   "labels": r["labels"]}
            if r["login"] is not None:
                row["login"] = r["login"]
            else:
                row["role"] = r["role"]
            row.update(reason=r["reason"], ticket=r["ticket"], requested_at=_iso(r["requested_at"]),
                       asked_minutes=r["asked_minutes"], used_minutes=r["used_minutes"],
                       extensions=r["extensions"])
            yield row

    # -- exports --------------------------------------------------------------------

    def _recent(self, days: float) -> list[RequestRecord]:
        since = self.clock() - timedelta(days=days)
        out: list[RequestRecord] = []
        before = None
        while True:
            with self.store.read() as tx:
                batch = tx.query_requests(since=since, before_num=before, limit=1000)
            out.extend(rec for _n, rec in batch)
            if len(batch) < 1000:
                return list(reversed(out))  # oldest first
            before = batch[-1][0]

    def export_requests(self, days: float) -> Iterator[dict[str, Any]]:
        """POLICY.md request mappings (with `time` and `history`), requests and extensions, oldest first."""
        from policy import PolicyRequest
        for rec in self._recent(days):
            base = dict(user=rec.user, resource=rec.resource, login=rec.login, role=rec.role,
                        reason=rec.reason, ticket=rec.ticket, emergency=rec.emergency,
                        history={k: v for k, v in rec.history.items() if v})
            yield PolicyRequest(id=rec.id, duration=rec.duration, time=rec.created_at, **base).to_mapping()
            for ext in rec.extensions:
                yield PolicyRequest(id=ext.id, duration=ext.duration, time=ext.created_at or rec.created_at,
                                    extension=ext.number, **base).to_mapping()

    def export_history(self, days: float) -> Iterator[dict[str, Any]]:
        """Recommender history rows: ended grants that had at least one session, oldest first."""
        grants = [r for r in self._recent(days) if r.activated_at is not None and r.state not in (ACTIVE,)]
        with self.store.read() as tx:
            used = tx.used_minutes([r.id for r in grants]) if grants else {}
        resources = self.policy.current.resources
        for rec in grants:
            if rec.id not in used:
                continue
            res = resources.get(rec.resource)
            row: dict[str, Any] = {"user": rec.user, "resource": rec.resource, "kind": rec.kind,
                                   "labels": dict(res.labels) if res is not None else {}}
            if rec.kind == "ssh":
                row["login"] = rec.login
            else:
                row["role"] = rec.role
            row.update(reason=rec.reason, ticket=rec.ticket, requested_at=_iso(rec.created_at),
                       asked_minutes=round(rec.duration.total_seconds() / 60, 3),
                       used_minutes=round(used[rec.id], 3), extensions=rec.extensions_used)
            if rec.emergency:
                row["emergency"] = True  # break-glass: the risk model learns its pattern
            yield row


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_serial() -> int:
    """A random non-zero 63-bit serial (OpenSSH KRLs cannot revoke serial 0)."""
    while True:
        serial = secrets.randbits(63)
        if serial:
            return serial


__all__ = ["AccessCore", "PolicyHolder", "Recommender", "StaticPolicy", "utcnow"]
