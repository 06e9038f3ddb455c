"""Records for the store's tests, written straight to a store (no policy, no core)."""
from __future__ import annotations

from datetime import timedelta

from controlplane.model import ACTIVE, EXT_PENDING, ExtensionRecord, RequestRecord
from tests.controlplane.core.helpers import START


def request(rid: str, *, user: str = "alice", state: str = ACTIVE, minutes: float = 60, **kw) -> RequestRecord:
    """A stored-shape request on web-dev-01 created at START (an ACTIVE one expires after `minutes`)."""
    duration = timedelta(minutes=minutes)
    if state == ACTIVE:
        kw.setdefault("activated_at", START)
        kw.setdefault("expires_at", START + duration)
    return RequestRecord(id=rid, user=user, resource="web-dev-01", kind="ssh", login="deploy", role="",
                         duration=duration, reason="deploy fix", ticket="", emergency=False, state=state,
                         decision=None, created_at=START, **kw)


def extension(rid: str, number: int = 1, state: str = EXT_PENDING) -> ExtensionRecord:
    return ExtensionRecord(id=f"{rid}.{number}", request_id=rid, number=number, duration=timedelta(minutes=15),
                           justification="more", state=state, decision=None, created_at=START)
