"""The ledger every control-plane service writes through: store, clock, roles, shared checks.

Every state change and its audit events commit in one store transaction
(writers are serialized, so two approvers racing cannot both activate a
request), and listeners hear about a change only after its commit:

    with ledger.write() as w:
        rec = w.tx.get_request(rid)
        ...                                   # change rec through w.tx
        w.commit([("grant.revoked", actor, rec.id, data, now)], request=rec)
    # committed; listeners got one Change per audit event

The services over it (one module per concern): requests.py, approvals.py,
grants.py, credentials.py, sessions.py, history.py, dashboard.py, auditlog.py;
core.py wires them together.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, Protocol

from controlplane.errors import JitError
from controlplane.model import (
    ACTIVE,
    EXT_CANCELLED,
    EXT_PENDING,
    AuditRecord,
    Change,
    ExtensionRecord,
    RequestRecord,
    SessionRecord,
)
from controlplane.store import SqlStore, Tx
from policy import PolicySet, format_duration

log = logging.getLogger("jitgate.core")

SYSTEM = "system"  # the actor of what the control plane does by itself (expiry, activation)
MAX_PAGE = 1000  # rows per listed page: one page stays one quick read
APPROVER_CACHE_SIZE = 10_000  # (policy version, name) answers kept before the cache starts over

# One audit event as the store appends it: (type, actor, subject, data, at).
AuditEntry = tuple[str, str, str, dict[str, Any], datetime]
# Called inside a write transaction with the audit records it just appended and the request
# (if the caller gave one), to write more rows in the same transaction (the notification outbox).
TxHook = Callable[[Tx, Sequence[AuditRecord], "RequestRecord | None"], None]
# Builds, after the commit, each event's request by request id (see `Write.commit`).
RequestsAfter = Callable[[], Mapping[str, RequestRecord]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class PolicyHolder(Protocol):
    """Whatever holds the policy set in force (the API swaps `.current` on reload)."""

    @property
    def current(self) -> PolicySet: ...


class StaticPolicy:
    """A PolicyHolder that holds one policy set (tests, tools)."""

    def __init__(self, policy_set: PolicySet) -> None:
        self.current = policy_set


def iso(dt: datetime | None) -> str | None:
    """RFC 3339 UTC with `Z`, as audit event data writes times."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt else None


def fmt_td(td: timedelta) -> str:
    """A duration as POLICY.md writes it (`1h30m`)."""
    return format_duration(td)


def page_start(page_size: int, page_token: str) -> tuple[int, int | None]:
    """A list call's page size (1..MAX_PAGE, 50 when unset) and the row number it starts before."""
    size = max(1, min(int(page_size or 50), MAX_PAGE))
    try:
        return size, (int(page_token) if page_token else None)
    except ValueError:
        raise JitError("invalid.argument", f"bad page token `{page_token}`") from None


def active_grant(rec: RequestRecord | None, grant_id: str, now: datetime) -> RequestRecord:
    """`rec` if it is an ACTIVE grant before its deadline at `now`; else the refusal."""
    if rec is None:
        raise JitError("request.not_found", f"there is no grant `{grant_id}`")
    if rec.state != ACTIVE:
        raise JitError("grant.not_active", f"grant `{grant_id}` is {rec.state}, not active")
    if rec.expires_at is None or rec.expires_at <= now:
        raise JitError("grant.not_active", f"grant `{grant_id}` expired at {iso(rec.expires_at)}")
    if rec.activated_at is not None and rec.activated_at > now:  # a scheduled window not begun yet
        raise JitError("grant.not_started", f"grant `{grant_id}` starts at {iso(rec.activated_at)}")
    return rec


def load_target(tx: Tx, target_id: str) -> tuple[RequestRecord, ExtensionRecord | None]:
    """The request `target_id`, or the extension `target_id` with its request."""
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


def live_session(tx: Tx, broker: str, session_id: str) -> SessionRecord:
    """Session `session_id`, if `broker` opened it (ended or not)."""
    sess = tx.get_session(session_id)
    if sess is None:
        raise JitError("session.not_found", f"there is no session `{session_id}`")
    if sess.broker != broker:
        raise JitError("permission.denied", f"session `{session_id}` belongs to broker `{sess.broker}`")
    return sess


class Write:
    """One write transaction: change the store through `tx`, then `commit` its audit events."""

    def __init__(self, tx: Tx, hooks: Sequence[TxHook] = ()) -> None:
        self.tx = tx
        self.hooks = hooks
        self.changes: list[Change] = []
        # Events whose requests are built after the commit, by their builder.
        self.later: list[tuple[list[AuditRecord], RequestsAfter]] = []

    def commit(self, events: Sequence[AuditEntry], *, request: RequestRecord | None = None,
               session: SessionRecord | None = None, requests: RequestsAfter | None = None,
               lock: Any = None) -> list[AuditRecord]:
        """Append `events` to the audit chain in this transaction; once it commits, listeners get
        one Change per event carrying `request` / `session` - or, with `requests`, the request
        of the event's subject from `requests()`, called after the commit (the sweep's thousands
        of records are built without holding the write lock, from rows read in the transaction)."""
        recs = self.tx.append_audit_many(events)
        for hook in self.hooks:  # an error here rolls the whole change back: nothing owed is lost
            hook(self.tx, recs, request)
        if requests is not None:
            self.later.append((recs, requests))
        else:
            self.changes.extend(Change(r.seq, r.type, r.at, request=request, session=session, lock=lock)
                                for r in recs)
        return recs


def end_grants(w: Write, recs: Sequence[RequestRecord], state: str, reason: str, now: datetime) -> None:
    """End active grants now as `state` (REVOKED, or EXPIRED when released), their pending
    extensions cancelled, in `w`'s transaction; their credentials and audit events are the caller's."""
    for rec in recs:
        rec.state, rec.ended_at = state, now
        rec.end_reason = rec.message = reason
        for ext in rec.extensions:
            if ext.state == EXT_PENDING:
                ext.state, ext.decided_at = EXT_CANCELLED, now
                w.tx.update_extension(ext)
    w.tx.end_requests(recs)


class Ledger:
    """Store, policy, clock and identities shared by the control plane's services."""

    def __init__(self, store: SqlStore, policy: PolicyHolder, clock: Callable[[], datetime] = utcnow,
                 *, admins: frozenset[str] | set[str] = frozenset(),
                 brokers: frozenset[str] | set[str] = frozenset()) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.admins = frozenset(admins)
        self.brokers = frozenset(brokers)
        self._listeners: list[Callable[[Change], None]] = []
        self._listeners_lock = threading.Lock()
        self._approver_cache: dict[tuple[str, str], bool] = {}
        self._tx_hooks: tuple[TxHook, ...] = ()

    # -- transactions and listeners -------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Write]:
        """A write transaction; what it `commit`s is published after the store commits."""
        with self.store.write() as tx:
            w = Write(tx, self._tx_hooks)
            yield w
        self.publish(w.changes)
        for recs, requests in w.later:
            by_id = requests()
            self.publish([Change(r.seq, r.type, r.at, request=by_id.get(r.subject.split(".", 1)[0]))
                          for r in recs])

    def record(self, etype: str, actor: str, subject: str, data: dict[str, Any]) -> None:
        """Append one audit event that changes no state, in its own transaction."""
        now = self.clock()
        with self.write() as w:
            w.commit([(etype, actor, subject, data, now)])

    def refuse(self, actor: str, subject: str, etype: str, code: str, message: str,
               data: dict[str, Any]) -> NoReturn:
        """Write a refusal to the audit log in its own transaction, then raise it."""
        self.record(etype, actor, subject, {"code": code, "message": message, **data})
        raise JitError(code, message)

    def add_tx_hook(self, hook: TxHook) -> None:
        """Call `hook` in every write transaction that commits audit events (before it commits)."""
        self._tx_hooks = (*self._tx_hooks, hook)

    def subscribe(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        """Call `listener(change)` after every commit; returns the unsubscribe function."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def publish(self, changes: Sequence[Change]) -> None:
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
        if self.is_admin(name):
            roles.add("admin")
        if self.is_broker(name):
            roles.add("broker")
        return frozenset(roles)

    def is_admin(self, name: str) -> bool:
        return name in self.admins or "admins" in self.policy.current.groups_of(name)

    def is_broker(self, name: str) -> bool:
        return name in self.brokers

    def _is_approver(self, ps: PolicySet, name: str) -> bool:
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
        if len(self._approver_cache) > APPROVER_CACHE_SIZE:
            self._approver_cache.clear()
        self._approver_cache[key] = found
        return found

    def require_user(self, actor: str) -> PolicySet:
        """The policy set in force, if `actor` is a user in its directory."""
        ps = self.policy.current
        if actor not in ps.users:
            raise JitError("permission.denied", f"`{actor}` is not a user in the policy directory")
        return ps

    def require_broker(self, actor: str) -> None:
        if not self.is_broker(actor):
            raise JitError("permission.denied", f"`{actor}` is not a broker")

    def visible(self, actor: str, rec: RequestRecord) -> bool:
        """Whether `actor` may see `rec`: its requester, an admin or broker, who voted on it,
        or anyone the policy names as an approver or reviewer of it or its extensions."""
        if actor == rec.user or self.is_admin(actor) or self.is_broker(actor):
            return True
        ps = self.policy.current
        if any(a.approver == actor for a in rec.approvals):
            return True
        for decision in [rec.decision] + [e.decision for e in rec.extensions]:
            approval = decision.approval
            if approval is None:
                continue
            words = [w for lv in approval.levels for w in lv.approvers] + list(approval.review)
            if words and ps.is_eligible(words, actor, rec.user, rec.resource):
                return True
        return False


__all__ = ["SYSTEM", "AuditEntry", "Ledger", "PolicyHolder", "RequestsAfter", "StaticPolicy", "TxHook", "Write",
           "active_grant", "fmt_td", "iso", "live_session", "load_target", "page_start", "utcnow"]
