"""A requester's history (POLICY.md's `history`) and the duration recommendation.

The policies see counters over the last 90 days of this store; the duration
model also sees imported history (rows brought in from a file, kept apart from
requests: auditlog.py imports them). The model is advice: a broken model never
blocks a request.
"""
from __future__ import annotations

import logging
import statistics
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from controlplane.errors import JitError
from controlplane.ledger import Ledger
from controlplane.model import Recommendation
from controlplane.store import Tx
from policy import PolicyRequest, PolicySet, Resource
from policy.request import Risk

if TYPE_CHECKING:  # recommend imports LightGBM (about a second): only when a model is asked
    from recommend import HistoryRow, RecommendRequest
    from recommend import Recommendation as ModelAnswer
    from recommend.risk import RiskAsk, RiskScore

log = logging.getLogger("jitgate.core")

HISTORY_WINDOW = timedelta(days=90)
IMPORTED_CACHE_SIZE = 512  # users + resources whose parsed imported history is kept
PROBE_DURATION = timedelta(minutes=1)  # the duration a "what is the maximum?" policy probe asks for

History = dict[str, int | float]


class Recommender(Protocol):
    """The duration model as the control plane calls it: `recommend.Recommender`'s signature."""

    def recommend(self, req: RecommendRequest, max_duration: timedelta | None, step: timedelta,
                  history: Sequence[HistoryRow]) -> ModelAnswer | None: ...

    def risk(self, ask: RiskAsk, mine: Sequence[HistoryRow], on_resource: Sequence[HistoryRow]) -> RiskScore: ...


@dataclass(frozen=True)
class Past:
    """What the store knows of one ask's past (recommend.HistoryRows): every row once, oldest finished
    first, for the duration model; and for the risk score the requester's rows and anyone's on the
    resource apart (a row of the requester's on the resource is in both), sorted as the rows are built
    so that the score does not pass over the rows again."""

    rows: list[HistoryRow]
    mine: list[HistoryRow]
    on_resource: list[HistoryRow]


# The requester's past for the model and the risk score, read at most once per request.
PastRows = Callable[[], Past]


@dataclass(frozen=True)
class Ask:
    """What a request asks for, validated (the parts of a PolicyRequest that do not vary)."""

    user: str
    res: Resource
    login: str
    role: str
    reason: str
    ticket: str
    emergency: bool = False

    def policy_request(self, duration: timedelta, now: datetime, history: History,
                       risk: Risk | None = None) -> PolicyRequest:
        return PolicyRequest(user=self.user, resource=self.res.name, duration=duration, time=now, login=self.login,
                             role=self.role, reason=self.reason, ticket=self.ticket, emergency=self.emergency,
                             extension=0, history=history, risk=risk)


def check_target(res: Resource, login: str, role: str) -> None:
    """A login offered on an ssh host, or a role offered on a database (the other one empty)."""
    if res.kind == "ssh":
        what, noun, other_noun, asked, other, offered = "an ssh host", "login", "role", login, role, res.logins
    else:
        what, noun, other_noun, asked, other, offered = "a database", "role", "login", role, login, res.roles
    if other:
        raise JitError("invalid.argument", f"`{res.name}` is {what}: ask for a {noun}, not a {other_noun}")
    if asked not in offered:
        names = ", ".join(offered)
        if not asked:
            raise JitError("invalid.argument", f"`{res.name}` needs a {noun} (one of {names})")
        raise JitError("invalid.argument", f"{noun} `{asked}` is not offered on `{res.name}` (one of {names})")


class HistoryService:
    """Policy history counters and duration recommendations."""

    def __init__(self, ledger: Ledger, recommender: Recommender | None = None) -> None:
        self.ledger = ledger
        self.recommender = recommender
        # Parsed imported history per ("user", name) / ("resource", name), valid for one import generation:
        # imported rows never change, and parsing ~500 rows costs milliseconds on every request.
        self._imported_cache: OrderedDict[tuple[str, str], tuple[int, list[tuple[int, Any]]]] = OrderedDict()
        self._imported_lock = threading.Lock()

    def history(self, user: str, resource: str, now: datetime) -> History:
        """POLICY.md's `history` for a requester from the store (last 90 days)."""
        with self.ledger.store.read() as tx:
            return self.history_in(tx, user, resource, now)

    @staticmethod
    def history_in(tx: Tx, user: str, resource: str, now: datetime) -> History:
        """`history` inside a transaction the caller holds."""
        counts: History = dict(tx.history_counts(user, now - HISTORY_WINDOW))
        minutes = tx.used_minutes_of(user, resource, now - HISTORY_WINDOW)
        counts["median_minutes"] = round(float(statistics.median(minutes)), 3) if minutes else 0.0
        return counts

    def past_rows(self, user: str, resource: str, now: datetime) -> Past:
        """The imported rows of `user` and `resource`, then the finished grants of `user` anywhere and of
        anyone on `resource` (last 90 days), as recommend.HistoryRows."""
        from recommend import HistoryRow
        with self.ledger.store.read() as tx:
            past = tx.finished_grants(user, resource, now - HISTORY_WINDOW)
            used = tx.used_minutes([r.id for r in past]) if past else {}
            # Imported history: no time window (it is the past someone chose to bring in).
            rows: list[HistoryRow] = self._imported_rows(tx, user, resource, HistoryRow)
        mine = [r for r in rows if r.user == user]
        on_resource = [r for r in rows if r.resource == resource]
        resources = self.ledger.policy.current.resources
        for r in reversed(past):  # oldest first
            if r.id not in used:
                continue
            labels = dict(resources[r.resource].labels) if r.resource in resources else {}
            row = HistoryRow(user=r.user, resource=r.resource, kind=r.kind, requested_at=r.created_at,
                             asked_minutes=r.duration.total_seconds() / 60, used_minutes=used[r.id],
                             labels=labels, login=r.login if r.kind == "ssh" else None,
                             role=r.role if r.kind != "ssh" else None, reason=r.reason,
                             ticket=r.ticket, extensions=r.extensions_used, emergency=r.emergency)
            rows.append(row)
            if r.user == user:
                mine.append(row)
            if r.resource == resource:
                on_resource.append(row)
        return Past(rows, mine, on_resource)

    def recommendation(self, ask: Ask, now: datetime, max_duration: timedelta | None,
                       past: PastRows | None = None) -> Recommendation | None:
        """The model's answer for a request (None: no model, no answer, or the model failed)."""
        if self.recommender is None:
            return None
        res = ask.res
        try:
            from recommend import RecommendRequest
            question = RecommendRequest(user=ask.user, resource=res.name, kind=res.kind, labels=dict(res.labels),
                                        login=ask.login if res.kind == "ssh" else None,
                                        role=ask.role if res.kind != "ssh" else None,
                                        reason=ask.reason, ticket=ask.ticket, requested_at=now)
            rows = (past() if past is not None else self.past_rows(ask.user, res.name, now)).rows
            got = self.recommender.recommend(question, max_duration,
                                             self.ledger.policy.current.settings.duration_step, rows)
        except Exception:  # the model is advice: a broken model never blocks a request
            log.exception("duration recommendation failed")
            return None
        if got is None:
            return None
        return Recommendation(duration=got.duration, minutes=int(got.minutes), explanation=got.explanation,
                              fallback=bool(got.fallback), model_version=got.model_version or "",
                              max_duration=max_duration)

    def risk(self, ask: Ask, duration: timedelta, now: datetime, recommendation: Recommendation | None,
             past: PastRows) -> Risk:
        """POLICY.md's `risk` of a request (or of an extension, `duration` then being the grant's whole
        length with it), scored by recommend/ (unknown, and why, without it). Peers are the people who
        share a group with the requester in the policies (everyone when they are in no group)."""
        if self.recommender is None:
            return Risk(known=False, reasons=("risk scoring is off (the server runs without a model)",))
        try:
            from recommend.risk import RiskAsk
            res = ask.res
            question = RiskAsk(user=ask.user, resource=res.name, kind=res.kind,
                               access=f"login:{ask.login}" if res.kind == "ssh" else f"role:{ask.role}", at=now,
                               asked_minutes=duration.total_seconds() / 60, reason=ask.reason, ticket=ask.ticket,
                               emergency=ask.emergency,
                               recommended_minutes=recommendation.minutes if recommendation is not None else None,
                               peers=self.peers_of(ask.user))
            known = past()
            got = self.recommender.risk(question, known.mine, known.on_resource)
            return Risk(known=bool(got.known), score=float(got.score), reasons=tuple(got.reasons))
        except Exception as exc:  # advice only: a broken scorer leaves the score unknown and says why
            log.exception("risk scoring failed")
            return Risk(known=False, reasons=(f"risk scoring failed ({type(exc).__name__})",))

    def peers_of(self, user: str) -> frozenset[str] | None:
        """`user`'s peers in the current policies (PolicySet.peers_of; None: everyone)."""
        return self.ledger.policy.current.peers_of(user)

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

    def max_duration(self, ps: PolicySet, request: PolicyRequest) -> timedelta | None:
        """The policies' maximum for `request` (asked with PROBE_DURATION); None when they deny it."""
        probe = ps.decide(request)
        return probe.max_duration if probe.allowed else None

    def recommend(self, actor: str, resource: str, login: str = "", role: str = "",
                  reason: str = "", ticket: str = "") -> Recommendation:
        """A recommended duration for a request the actor could make."""
        ps = self.ledger.require_user(actor)
        res = ps.resources.get(resource)
        if res is None:
            raise JitError("resource.not_found", f"there is no resource `{resource}`")
        check_target(res, login, role)
        if self.recommender is None:
            raise JitError("recommend.unavailable", "no duration model is configured")
        now = self.ledger.clock()
        ask = Ask(actor, res, login, role, reason, ticket)
        limit = self.max_duration(ps, ask.policy_request(PROBE_DURATION, now, self.history(actor, resource, now)))
        rec = self.recommendation(ask, now, limit)
        if rec is None:
            raise JitError("recommend.unavailable", "the duration model has no recommendation for this request")
        return rec


__all__ = ["HISTORY_WINDOW", "PROBE_DURATION", "Ask", "History", "HistoryService", "Past", "PastRows", "Recommender",
           "check_target"]
