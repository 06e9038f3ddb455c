"""The typed policy model. Every node keeps its source location (`loc`), ignored by equality."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from policy.decision import ApprovalLevel
from policy.request import PolicyRequest
from policy.stepup import StepUp

RESOURCE_KINDS = ("ssh", "postgres")
EFFECTS = ("allow", "require", "deny")


@dataclass(frozen=True)
class Loc:
    """A position in a policy file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOWHERE = Loc("<none>", 0, 0)  # where a node built in code (not read from a file) is


@dataclass(frozen=True)
class Settings:
    """`settings:` of POLICY.md, with defaults."""

    grace_period: timedelta = timedelta(minutes=5)
    pending_timeout: timedelta = timedelta(hours=24)
    default_max_extensions: int = 2
    duration_step: timedelta = timedelta(minutes=15)
    max_schedule_ahead: timedelta = timedelta(days=7)  # how far ahead a request's `start` may be
    loc: Loc = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class User:
    """A person in the directory. `groups` are effective: own list plus `groups:` memberships."""

    name: str
    groups: tuple[str, ...] = ()
    manager: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    loc: Loc = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Resource:
    """One SSH host or database and what may be asked for on it."""

    name: str
    kind: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    logins: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    host_key: str | None = None
    host_ca: str | None = None
    database: str | None = None
    credentials: str | None = None
    description: str = ""
    loc: Loc = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class ApprovalSpec:
    """A rule's approval: mode `auto`, `levels` or `break_glass`."""

    mode: str
    levels: tuple[ApprovalLevel, ...] = ()
    loc: Loc = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Rule:
    """One rule; `position` is its index in file order across the whole set."""

    name: str
    when: str
    position: int
    effect: str = "allow"
    approval: ApprovalSpec | None = None
    review: tuple[str, ...] = ()
    max_duration: timedelta | None = None
    max_extensions: int | None = None
    session: dict[str, bool] = field(default_factory=dict)
    message: str = ""
    description: str = ""
    notify: tuple[str, ...] = ()  # server.yaml channel names its approvers are told on (empty: the defaults)
    activate: str = "on_approval"  # or "on_first_use": the clock starts at the first session
    claim_within: timedelta | None = None  # on_first_use: unused this long after approval -> CLAIM_EXPIRED
    max_sessions: int | None = None  # None: unlimited; 1: single use
    loc: Loc = field(default=NOWHERE, compare=False, repr=False)
    when_loc: Loc = field(default=NOWHERE, compare=False, repr=False)
    step_up: StepUp | None = None  # a fresh sign-in to approve or activate (policy/stepup.py)

    @property
    def break_glass(self) -> bool:
        return self.approval is not None and self.approval.mode == "break_glass"


@dataclass(frozen=True)
class PolicyTest:
    """A policy test: a request and the parts of the decision it expects (see testing.py)."""

    name: str
    request: PolicyRequest
    expect: dict[str, Any]
    loc: Loc = field(default=NOWHERE, compare=False, repr=False)
    expect_loc: Loc = field(default=NOWHERE, compare=False, repr=False)
