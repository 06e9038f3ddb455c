"""The notification worker: sends the outbox's due rows, retries with backoff, settles them.

Off the request path: requests only write rows (in their own transaction, `planner.py`) and
set an event; this thread claims due rows per channel (never more than that channel's free
senders, so a slow channel holds only its own rows), hands them to the channel's own small
thread pool, and records each outcome. A delivery attempt is bounded by
`notify.timeout_seconds`; a failure is retried after `retry_base * 2^(n-1)` seconds
(capped, with jitter) until `max_attempts` or `max_age`, then the row is `dead` (kept, logged).

Guarantee: at-least-once. A row is claimed (its lease moved ahead, in a write transaction)
before it is sent and marked sent after; a crash in between sends it again once the lease
ends, with the same idempotency key (webhook `Idempotency-Key`, email `Message-ID`), so a
receiver that remembers keys sees each notification once.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controlplane.core import AccessCore
from controlplane.history import Ask
from controlplane.ledger import utcnow
from controlplane.model import ACTIVE, EXT_PENDING, PENDING, REVIEW_OWED, Change, ExtensionRecord, RequestRecord
from controlplane.notify.channels import Channel, DeliveryError, NothingToSend, make_channel, scrub
from controlplane.notify.config import NotifyConfig
from controlplane.notify.directory import email_of as policy_email_of
from controlplane.notify.messages import render
from controlplane.notify.planner import APPROVERS, REVIEWERS, Planner
from controlplane.store import from_us, to_us
from controlplane.store.outbox import DEAD, SENT, SKIPPED, OutboxRow, claim, counts, next_due, purge, settle_many
from controlplane.store.outbox import PENDING as ROW_PENDING
from policy import PolicySet

log = logging.getLogger("jitgate.notify")

BACKLOG_WARN = 10_000      # pending rows past which the worker warns (once per BACKLOG_CHECK)
BACKLOG_CHECK = 60.0       # seconds between backlog counts and purges of settled rows
SETTLE_BATCH = 500         # outcomes recorded per write transaction
ROUND_GAP = 0.05           # seconds between two rounds of claims (a burst is claimed in batches)
QUEUE_DEPTH = 8            # rows claimed per sender of a channel (queued in its pool; each checks its lease)
LEASE_MARGIN = 0.2         # seconds of a claim's lease kept free after the last possible send ends
WAKE_TYPES = frozenset({"request.created", "approval.granted", "extension.requested", "grant.activated",
                        "grant.extended", "request.denied", "extension.denied", "grant.revoked",
                        "request.timed_out"})

EmailLookup = Callable[[PolicySet, str], "str | None"]


@dataclass(frozen=True)
class Outcome:
    row: OutboxRow
    state: str
    error: str = ""
    next_us: int | None = None


Send = Callable[[OutboxRow, float], None]  # hand a claimed row (and when it was claimed) to a sender


class Notifier:
    """Installs the planner on the ledger and runs the dispatching thread: it claims due rows,
    hands them to a sender (a `Deliverer` in this process, or the sender process), and records
    the outcomes the sender reports (`report`). Only this thread writes the outbox."""

    def __init__(self, core: AccessCore, config: NotifyConfig, *, email_of: EmailLookup = policy_email_of,
                 clock: Callable[[], datetime] = utcnow, send: Send | None = None) -> None:
        self.core = core
        self.config = config
        self.clock = clock
        self.planner = Planner(config, core.ledger.policy)
        self.deliverer: Deliverer | None = None
        if send is None:
            self.deliverer = Deliverer(core, config, email_of=email_of, clock=clock)
            deliverer = self.deliverer
            send = lambda row, claimed_at: deliverer.submit(row, claimed_at, self.report)  # noqa: E731
        self._send = send
        self.channels = tuple(config.channels)
        self._inflight = dict.fromkeys(config.channels, 0)
        self._results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._last_check = 0.0
        self._due: int | None = None  # when the next pending row is due, as of the last round
        self._looked_us = 0  # when due rows were last looked for

    def install(self) -> None:
        """From now on every write transaction writes the notifications it owes."""
        self.core.ledger.add_tx_hook(self.planner.hook)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._unsubscribe = self.core.ledger.subscribe(self._on_change)
        self._thread = threading.Thread(target=self._run, name="jitgate-notify", daemon=True)
        self._thread.start()

    def stop_claiming(self) -> None:
        """End the dispatching thread (no new claims); outcomes still arrive through `report`."""
        self._stopping.set()
        self._wake.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._thread.join(self.config.timeout_seconds + 5)
            self._thread = None

    def stop(self) -> None:
        """Stop claiming; let sends in flight finish (each bounded by the timeout) and record them."""
        self.stop_claiming()
        if self.deliverer is not None:
            self.deliverer.close()  # waits for the sends in flight (each bounded by the timeout)
        self._settle_all()

    def report(self, outcome: Outcome) -> None:
        """A sender's outcome of one row (any thread); recorded by the next round."""
        self._results.put(outcome)
        self._wake.set()

    def wake(self) -> None:
        """Look for due rows now (a commit may have written some)."""
        self._wake.set()

    def _on_change(self, change: Change) -> None:
        if change.type in WAKE_TYPES:
            self._wake.set()

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        last = 0.0
        while not self._stopping.is_set():
            # At most one round per ROUND_GAP: under a burst of requests the sender's store
            # writes (claims, outcomes) stay a few per second instead of one per request.
            gap = ROUND_GAP - (time.monotonic() - last)
            if gap > 0 and self._stopping.wait(gap):
                break
            last = time.monotonic()
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                due = self._round(woken)
                self._housekeeping()
                timeout = self._idle_timeout(due)
            except Exception:  # the store busy or away: try again shortly, never die
                log.exception("notification worker: a round failed; retrying")
                timeout = self.config.poll_seconds
            if timeout > 0:
                self._wake.wait(timeout)

    def _idle_timeout(self, due: int | None) -> float:
        if due is None:
            return self.config.poll_seconds
        wait = (due - (to_us(self.clock()) or 0)) / 1e6
        free = any(self._inflight[n] < self.config.concurrency * QUEUE_DEPTH for n in self.channels)
        if wait <= 0 and not free:
            return self.config.poll_seconds  # all busy: a finished send wakes us
        return max(0.0, min(self.config.poll_seconds, wait))

    def _round(self, woken: bool) -> int | None:
        """Record the outcomes that came back and claim what is due, in ONE write transaction
        (every write waits for the others: one per round keeps the sender's share small);
        skipped when there is nothing to record and nothing can be due. Returns when the next
        row is due (None: none pending)."""
        outcomes = self._drain(SETTLE_BATCH)
        now_us = to_us(self.clock()) or 0
        depth = self.config.concurrency * QUEUE_DEPTH
        free = {n: depth - self._inflight[n] for n in self.channels}
        look = woken or now_us - self._looked_us >= self.config.poll_seconds * 1e6 or \
            (self._due is not None and self._due <= now_us)
        claim_now = look and any(k > 0 for k in free.values())
        if not outcomes and not claim_now:
            return self._due
        lease_us = int(self.config.lease_seconds * 1e6)
        try:
            with self.core.ledger.store.write() as tx:
                if outcomes:
                    settle_many(tx, [(o.row, o.state, o.error, o.next_us) for o in outcomes], now_us)
                claimed = [row for n, k in free.items() if k > 0 and claim_now
                           for row in claim(tx, n, now_us, lease_us, k)]
                self._due = next_due(tx, self.channels)
        except BaseException:
            for o in outcomes:  # recorded by a later round (the store was busy or away)
                self._results.put(o)
            raise
        if claim_now:
            self._looked_us = now_us
        for o in outcomes:
            self._inflight[o.row.channel] = max(0, self._inflight[o.row.channel] - 1)
        claimed_at = time.monotonic()
        for row in claimed:
            self._inflight[row.channel] += 1
            self._send(row, claimed_at)
        if outcomes and not self._results.empty():
            self._wake.set()  # more outcomes than one batch: another round at once
        return self._due

    def _drain(self, limit: int) -> list[Outcome]:
        outcomes: list[Outcome] = []
        while len(outcomes) < limit:
            try:
                outcomes.append(self._results.get_nowait())
            except queue.Empty:
                break
        return outcomes

    def _settle_all(self) -> None:
        """Record every outcome that came back (at stop)."""
        outcomes = self._drain(10**9)
        for i in range(0, len(outcomes), SETTLE_BATCH):
            part = outcomes[i:i + SETTLE_BATCH]
            now_us = to_us(self.clock()) or 0
            with self.core.ledger.store.write() as tx:
                settle_many(tx, [(o.row, o.state, o.error, o.next_us) for o in part], now_us)
            for o in part:
                self._inflight[o.row.channel] = max(0, self._inflight[o.row.channel] - 1)

    def _housekeeping(self) -> None:
        now = self.clock()
        if now.timestamp() - self._last_check < BACKLOG_CHECK:
            return
        self._last_check = now.timestamp()
        with self.core.ledger.store.write() as tx:
            purged = purge(tx, to_us(now - self.config.keep_sent) or 0)
            by_state = counts(tx)
        backlog = by_state.get(ROW_PENDING, 0)
        if backlog > BACKLOG_WARN:
            log.warning("notification backlog: %d messages pending (dead: %d); a channel may be down",
                        backlog, by_state.get(DEAD, 0))
        if purged:
            log.info("notification outbox: removed %d settled messages older than %s", purged, self.config.keep_sent)



class Deliverer:
    """One attempt per claimed row: read the request, decide who is told, render, send on the
    row's channel (each channel has its own small pool, so a slow one holds only its own rows).
    It only reads the store; its outcomes go back to the dispatcher through `done`."""

    def __init__(self, core: AccessCore, config: NotifyConfig, *, email_of: EmailLookup = policy_email_of,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.core = core
        self.config = config
        self.email_of = email_of  # the one replaceable lookup of a person's address
        self.clock = clock
        self.channels: dict[str, Channel] = {n: make_channel(c, config.timeout_seconds)
                                             for n, c in config.channels.items()}
        self._pools = {n: ThreadPoolExecutor(config.concurrency, thread_name_prefix=f"notify-{n}")
                       for n in config.channels}
        self._secrets = config.secrets()
        self.sent = 0  # counters for logs and tests
        self.failed_attempts = 0

    def submit(self, row: OutboxRow, claimed_at: float, done: Callable[[Outcome], None]) -> None:
        pool = self._pools.get(row.channel)
        if pool is None:
            done(Outcome(row, DEAD, f"channel `{row.channel}` is no longer configured"))
            return
        pool.submit(self._attempt, row, claimed_at, done)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        for ch in self.channels.values():
            ch.close()

    def _attempt(self, row: OutboxRow, claimed_at: float, done: Callable[[Outcome], None]) -> None:
        try:
            outcome = self._deliver(row, claimed_at)
        except Exception as e:  # a bug or a store error: retried like a failed delivery
            log.exception("notification %s: unexpected error", row.key)
            outcome = self._failed(row, f"internal error: {type(e).__name__}")
        done(outcome)

    def _deliver(self, row: OutboxRow, claimed_at: float) -> Outcome:
        with self.core.ledger.store.read() as tx:
            rec = tx.get_request(row.request_id)
        if rec is None:
            return Outcome(row, DEAD, "the request does not exist")
        ext = next((e for e in rec.extensions if e.id == row.subject), None) if row.subject != rec.id else None
        ps = self.core.ledger.policy.current
        why_not = self._stale(row, rec, ext)
        if why_not:
            log.info("notification %s on %s skipped: %s", row.key, row.channel, why_not)
            return Outcome(row, SKIPPED, why_not)
        level = row.level if row.level >= 0 else (ext.current_level if ext is not None else rec.current_level)
        recipients = self._recipients(row.kind, rec, ext, level, ps)
        channel = self.channels.get(row.channel)
        if channel is None:
            return Outcome(row, DEAD, f"channel `{row.channel}` is no longer configured")
        addresses: list[str] = []
        if channel.config.type == "email":
            addresses = [a for a in dict.fromkeys(self.email_of(ps, n) for n in recipients) if a]
        recommendation = self._recommendation(rec, ext, ps) if row.kind in APPROVERS else None
        message = render(row.kind, row.key, rec, ext, level, recipients, row.data,
                         recommendation=recommendation, web_url=self.config.web_url)
        # The claim's lease must outlast the send: past this point another sender (or this one,
        # on its next round) may claim the row, so the attempt is handed back unsent.
        if time.monotonic() - claimed_at > self.config.lease_seconds - self.config.timeout_seconds - LEASE_MARGIN:
            log.warning("notification %s on %s: its lease ran out before sending; handed back", row.key, row.channel)
            return Outcome(row, ROW_PENDING, "the lease ran out before sending", to_us(self.clock()) or 0)
        try:
            channel.send(message, addresses, from_us(row.created_us) or self.clock())
        except NothingToSend as e:
            log.warning("notification %s on %s not sent: %s", row.key, row.channel, e)
            return Outcome(row, SKIPPED, str(e))
        except DeliveryError as e:
            return self._failed(row, scrub(str(e), self._secrets))
        self.sent += 1
        log.info("notification %s (%s, request %s) sent on %s to %d person(s)", row.key, row.kind, rec.id,
                 row.channel, len(recipients))
        return Outcome(row, SENT)

    def _failed(self, row: OutboxRow, error: str) -> Outcome:
        self.failed_attempts += 1
        cfg = self.config
        attempts = row.attempts + 1  # claim counted this one
        now = self.clock()
        due = from_us(int(row.data.get("due_us", row.created_us))) or now
        if attempts >= cfg.max_attempts or now - due >= cfg.max_age:
            log.error("notification %s on %s given up after %d attempt(s): %s", row.key, row.channel, attempts, error)
            return Outcome(row, DEAD, error)
        delay = min(cfg.retry_max_seconds, cfg.retry_base_seconds * 2 ** (attempts - 1))
        delay *= random.uniform(0.8, 1.2)  # jitter: many rows failing together do not retry together
        log.warning("notification %s on %s failed (attempt %d): %s; retrying in %.1fs", row.key, row.channel,
                    attempts, error, delay)
        return Outcome(row, ROW_PENDING, error, (to_us(now) or 0) + int(delay * 1e6))

    @staticmethod
    def _stale(row: OutboxRow, rec: RequestRecord, ext: ExtensionRecord | None) -> str:
        """Why this message has nothing to say any more ('' when it still does)."""
        if row.kind in APPROVERS:
            if ext is not None:
                if ext.state != EXT_PENDING:
                    return f"extension {ext.id} is {ext.state}"
                current = ext.current_level
            else:
                if rec.state != PENDING:
                    return f"request {rec.id} is {rec.state}"
                current = rec.current_level
            if row.level >= 0 and current != row.level:
                return f"level {row.level + 1} was decided"
        if row.kind in REVIEWERS and rec.review_state != REVIEW_OWED:
            return f"the review is done ({rec.review_state})"
        if row.kind == "expiry_warning":
            if rec.state != ACTIVE:
                return f"grant {rec.id} is {rec.state}"
            if to_us(rec.expires_at) != row.data.get("expires_us"):
                return "the grant's expiry moved (a new warning is due)"
        return ""

    @staticmethod
    def _recipients(kind: str, rec: RequestRecord, ext: ExtensionRecord | None, level: int,
                    ps: PolicySet) -> list[str]:
        """The people a message is for, by name (sorted)."""
        if kind not in APPROVERS and kind not in REVIEWERS:
            return [rec.user]
        decision = ext.decision if ext is not None else rec.decision
        approval = decision.approval
        if approval is None:
            return []
        if kind in REVIEWERS:
            words = list(approval.review)
            voted: set[str] = set()
        else:
            if not 0 <= level < len(approval.levels):
                return []
            words = list(approval.levels[level].approvers)
            voted = {a.approver for a in (ext.approvals if ext is not None else rec.approvals)}
        return sorted(u for u in ps.users if u != rec.user and u not in voted
                      and ps.is_eligible(words, u, rec.user, rec.resource))

    def _recommendation(self, rec: RequestRecord, ext: ExtensionRecord | None, ps: PolicySet) -> Any:
        """The duration model's view of the request, for approvers (None when off or unknown)."""
        history = self.core.history
        if not self.config.recommendation or history.recommender is None or ext is not None:
            return None
        res = ps.resources.get(rec.resource)
        if res is None:
            return None
        ask = Ask(rec.user, res, rec.login, rec.role, rec.reason, rec.ticket, rec.emergency)
        return history.recommendation(ask, rec.created_at, rec.decision.max_duration)


def retry_delays(config: NotifyConfig) -> list[timedelta]:
    """The nominal waits between attempts (without jitter), for documentation and tests."""
    return [timedelta(seconds=min(config.retry_max_seconds, config.retry_base_seconds * 2 ** (n - 1)))
            for n in range(1, config.max_attempts)]


__all__ = ["BACKLOG_WARN", "Notifier", "Outcome", "retry_delays"]
