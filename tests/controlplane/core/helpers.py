"""Helpers shared by the core tests (a movable clock, common requests)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controlplane.core import AccessCore

START = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """A clock tests move by hand (no sleeping)."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now = self.now + timedelta(**kw)
        return self.now



def dev(core: AccessCore, user: str = "alice", minutes: float = 60, **kw):
    """An auto-approved ssh grant on web-dev-01."""
    rec, _ = core.requests.create_request(user, "web-dev-01", login=kw.pop("login", "deploy"),
                                 duration=timedelta(minutes=minutes), reason=kw.pop("reason", "deploy fix"), **kw)
    return rec


def prod(core: AccessCore, user: str = "alice", minutes: float = 60, **kw):
    """A prod ssh request that needs manager/owner, then security."""
    rec, _ = core.requests.create_request(user, "web-prod-01", login="deploy", duration=timedelta(minutes=minutes),
                                 reason=kw.pop("reason", "incident follow-up"), **kw)
    return rec
