"""Which notifications a committed change owes: audit events in, outbox rows out (no I/O).

`Planner.hook` runs inside the write transaction of the change (the ledger's tx hook), so
the rows commit with the change or not at all. It only decides *that* someone is owed a
message, on which channel and when; who exactly and what it says are worked out by the
worker at send time, from the request as it is then (a reminder names the level that
waits when it is sent; a message about something already decided is skipped).

| event                                   | kind            | audience   | when                       |
| --------------------------------------- | --------------- | ---------- | -------------------------- |
| request.created (PENDING)               | waiting         | approvers  | now (level 1)              |
|                                         | reminder        | approvers  | timeout - min(reminder_before, wait/2) |
| approval.granted (still pending)        | level           | approvers  | now (the next level)       |
| extension.requested (pending)           | waiting         | approvers  | now                        |
| grant.activated (break-glass)           | break_glass     | reviewers  | now                        |
| grant.activated (after approval levels) | approved        | requester  | now                        |
| grant.activated / grant.extended        | expiry_warning  | requester  | expiry - grace period      |
| request.denied / extension.denied       | denied          | requester  | now (by an approver only)  |
| grant.revoked (by someone else)         | revoked         | requester  | now                        |
| request.timed_out                       | timed_out       | requester  | now                        |
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from controlplane.ledger import SYSTEM, PolicyHolder
from controlplane.model import ACTIVE, EXT_PENDING, PENDING, AuditRecord, RequestRecord
from controlplane.notify.config import NotifyConfig
from controlplane.store import Tx, to_us
from controlplane.store.outbox import OutboxRow, add_rows

log = logging.getLogger("jitgate.notify")

APPROVERS = ("waiting", "level", "reminder")  # kinds told to a level's approvers
REVIEWERS = ("break_glass",)
REQUESTER = ("approved", "denied", "expiry_warning", "revoked", "timed_out")
KINDS = APPROVERS + REVIEWERS + REQUESTER


@dataclass(frozen=True)
class Owed:
    """One message owed, before it is split per channel."""

    kind: str
    subject: str
    level: int
    due: datetime
    data: dict[str, object]


class Planner:
    """Turns a transaction's audit events into outbox rows, one per channel."""

    def __init__(self, config: NotifyConfig, policy: PolicyHolder) -> None:
        self.config = config
        self.policy = policy
        self._warned: set[tuple[str, str]] = set()  # (rule, channel) named but not configured: logged once
        self._routes: tuple[str, dict[str, tuple[str, ...]]] = ("", {})  # (policy version, rule -> its notify)

    def hook(self, tx: Tx, events: Sequence[AuditRecord], request: RequestRecord | None) -> None:
        """The ledger's tx hook: write the rows this change owes, in its transaction."""
        rows = self.rows(events, request)
        if rows:
            add_rows(tx, rows)

    def rows(self, events: Sequence[AuditRecord], request: RequestRecord | None) -> list[OutboxRow]:
        out: list[OutboxRow] = []
        for ev in events:
            for owed in self.owed(ev, request):
                request_id = owed.subject.split(".", 1)[0]
                for channel in self.channels_for(owed.kind, request, owed.subject):
                    out.append(OutboxRow(
                        key=f"jg-{ev.seq}-{owed.kind}-{channel}", channel=channel, kind=owed.kind,
                        request_id=request_id, subject=owed.subject, level=owed.level,
                        data={**owed.data, "due_us": to_us(owed.due)},
                        created_us=to_us(ev.at) or 0, next_us=to_us(owed.due) or 0))
        return out

    def owed(self, ev: AuditRecord, rec: RequestRecord | None) -> list[Owed]:
        """What one event owes (see the table above)."""
        t, now = ev.type, ev.at
        if t == "request.timed_out":
            return [Owed("timed_out", ev.subject, -1, now, {})]
        if rec is None:
            return []
        if t == "request.created" and rec.state == PENDING:
            owed = [Owed("waiting", rec.id, 0, now, {})]
            if rec.pending_deadline is not None:
                # reminder_before, but at most half the wait: a short timeout still gets its reminder
                before = min(self.config.reminder_before, (rec.pending_deadline - now) / 2)
                at = rec.pending_deadline - before
                if at > now:
                    owed.append(Owed("reminder", rec.id, -1, at, {}))
            return owed
        if t == "extension.requested":
            ext = next((e for e in rec.extensions if e.id == ev.subject), None)
            if ext is not None and ext.state == EXT_PENDING:
                return [Owed("waiting", ext.id, 0, now, {"extension": ext.number})]
            return []
        if t == "approval.granted":
            if ev.subject == rec.id:
                if rec.state == PENDING:
                    return [Owed("level", rec.id, rec.current_level, now, {"by": ev.actor})]
                return []
            ext = next((e for e in rec.extensions if e.id == ev.subject), None)
            if ext is not None and ext.state == EXT_PENDING:
                return [Owed("level", ext.id, ext.current_level, now, {"by": ev.actor, "extension": ext.number})]
            return []
        if t == "grant.activated":
            owed = self._expiry_warning(rec, now)
            mode = ev.data.get("mode")
            if mode == "break_glass":
                owed.append(Owed("break_glass", rec.id, -1, now, {}))
            elif mode == "levels":
                owed.append(Owed("approved", rec.id, -1, now, {}))
            return owed
        if t == "grant.extended":
            owed = self._expiry_warning(rec, now)
            number = ev.data.get("extension")
            ext = next((e for e in rec.extensions if e.number == number), None)
            if ext is not None and ext.approvals:  # approved by people, not at once by the policy
                owed.append(Owed("approved", ext.id, -1, now, {"extension": ext.number}))
            return owed
        if t in ("request.denied", "extension.denied") and ev.actor != SYSTEM:
            return [Owed("denied", ev.subject, -1, now, {"by": ev.actor, "comment": ev.data.get("comment", "")})]
        if t == "grant.revoked" and ev.actor != rec.user:
            return [Owed("revoked", rec.id, -1, now, {"by": ev.actor, "reason": ev.data.get("reason", "")})]
        return []

    def _expiry_warning(self, rec: RequestRecord, now: datetime) -> list[Owed]:
        if rec.state != ACTIVE or rec.expires_at is None:
            return []
        grace: timedelta = self.policy.current.settings.grace_period
        at = rec.expires_at - grace
        if at <= now:
            return []
        return [Owed("expiry_warning", rec.id, -1, at, {"expires_us": to_us(rec.expires_at)})]

    def _notify_of(self, rule: str) -> tuple[str, ...]:
        """A rule's `notify:` in the policy in force (the table is rebuilt once per policy version)."""
        ps = self.policy.current
        version, routes = self._routes
        if version != ps.version:
            routes = {r.name: r.notify for r in ps.rules if r.notify}
            self._routes = (ps.version, routes)
        return routes.get(rule, ())

    def channels_for(self, kind: str, rec: RequestRecord | None, subject: str) -> tuple[str, ...]:
        """Requester kinds: `notify.requester`. Approvers and reviewers: the channels the matched
        rules name in `notify:` (configured ones), else `notify.approvers`."""
        if kind in REQUESTER:
            return self.config.requester_channels
        named: list[str] = []
        if rec is not None:
            decision = rec.decision
            for ext in rec.extensions:
                if ext.id == subject:
                    decision = ext.decision
            for name in decision.rules:
                for ch in self._notify_of(name):
                    if ch in self.config.channels:
                        named.append(ch)
                    elif (name, ch) not in self._warned:
                        # Told on the defaults instead: a typo must not leave approvers untold.
                        self._warned.add((name, ch))
                        log.warning("rule `%s` names notify channel `%s`, which server.yaml does not configure; "
                                    "using the default channels", name, ch)
        return tuple(dict.fromkeys(named)) or self.config.approver_channels


__all__ = ["APPROVERS", "KINDS", "REQUESTER", "REVIEWERS", "Planner"]
