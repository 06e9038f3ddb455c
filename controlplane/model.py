"""Plain data of the control plane: requests, approvals, extensions, sessions, audit events.

Times are aware UTC datetimes. `decision` fields hold `policy.Decision` objects.
Grant id = request id: a request that became ACTIVE is the grant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from policy.decision import Decision

# Request states (DESIGN.md "Life of a request").
PENDING = "PENDING"
ACTIVE = "ACTIVE"
DENIED = "DENIED"
CANCELLED = "CANCELLED"
TIMED_OUT = "TIMED_OUT"
EXPIRED = "EXPIRED"
REVOKED = "REVOKED"
CLAIM_EXPIRED = "CLAIM_EXPIRED"  # on first use (POLICY.md Additions), and never used in its claim window
REQUEST_STATES = (PENDING, ACTIVE, DENIED, CANCELLED, TIMED_OUT, EXPIRED, REVOKED, CLAIM_EXPIRED)
# `end_reason` of an ACTIVE on-first-use grant nobody used yet: its `expires_at` is then the claim
# deadline, and the first session through a broker starts the clock (`claim` in approvals.py).
UNCLAIMED = "unclaimed"

# Review states of break-glass grants ("" = no review owed).
REVIEW_NONE = ""
REVIEW_OWED = "OWED"
REVIEWED = "REVIEWED"
FLAGGED = "FLAGGED"

# Extension states.
EXT_PENDING = "PENDING"
EXT_APPROVED = "APPROVED"
EXT_DENIED = "DENIED"
EXT_CANCELLED = "CANCELLED"


@dataclass
class ApprovalRecord:
    """One approver's vote on one level (0-based) of a request or extension; approved=False is a deny."""

    approver: str
    level: int
    approved: bool
    comment: str
    at: datetime


@dataclass
class ExtensionRecord:
    """The n-th extension asked on a grant (id = `<request id>.<n>`)."""

    id: str
    request_id: str
    number: int
    duration: timedelta
    justification: str
    state: str
    decision: Decision
    approvals: list[ApprovalRecord] = field(default_factory=list)
    created_at: datetime | None = None
    decided_at: datetime | None = None
    current_level: int = 0


@dataclass
class RequestRecord:
    """A request and, once ACTIVE, its grant."""

    id: str
    user: str
    resource: str
    kind: str
    login: str
    role: str
    duration: timedelta
    reason: str
    ticket: str
    emergency: bool
    state: str
    decision: Decision
    created_at: datetime
    activated_at: datetime | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    extensions_used: int = 0
    approvals: list[ApprovalRecord] = field(default_factory=list)
    current_level: int = 0
    review_state: str = REVIEW_NONE
    end_reason: str = ""
    message: str = ""
    extensions: list[ExtensionRecord] = field(default_factory=list)
    pending_deadline: datetime | None = None
    history: dict[str, int | float] = field(default_factory=dict)  # POLICY.md's `history` counters
    review_by: str = ""
    review_comment: str = ""
    start: datetime | None = None  # a scheduled window's start (None: the clock starts at approval)

    @property
    def pending_extension(self) -> ExtensionRecord | None:
        """The extension waiting for approval, if any."""
        for ext in self.extensions:
            if ext.state == EXT_PENDING:
                return ext
        return None


@dataclass
class SessionRecord:
    """One connection through a broker under a grant."""

    id: str
    grant_id: str
    user: str
    resource: str
    kind: str
    login: str
    role: str
    broker: str
    client_address: str
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    recording_ref: str = ""
    recording_hash: str = ""
    last_activity_at: datetime | None = None
    channel: str = ""


@dataclass(frozen=True)
class AuditRecord:
    """One event of the hash-chained audit log."""

    seq: int
    at: datetime
    type: str
    actor: str
    subject: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Change:
    """What listeners get after a commit: the audit seq and type, and the current state concerned."""

    seq: int
    type: str
    at: datetime
    request: RequestRecord | None = None
    session: SessionRecord | None = None
    lock: Any = None  # a store.locks.LockRecord, for `lock.created` (the brokers' fast path)


@dataclass
class Dashboard:
    """What `GetDashboard` shows, as visible to the caller."""

    active: list[RequestRecord]
    pending: list[RequestRecord]
    expired_24h: int
    avg_granted_minutes: float
    avg_used_minutes: float
    approval_rate: float
    reviews_owed: list[RequestRecord]


@dataclass(frozen=True)
class Recommendation:
    """A recommended duration for a request (the core's view of `recommend/`'s answer)."""

    duration: timedelta
    minutes: int
    explanation: str
    fallback: bool
    model_version: str = ""
    max_duration: timedelta | None = None
