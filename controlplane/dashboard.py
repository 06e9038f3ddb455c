"""The dashboard: active grants, pending requests and figures over what one person may see."""
from __future__ import annotations

import statistics
from datetime import timedelta

from controlplane.ledger import Ledger
from controlplane.model import ACTIVE, DENIED, EXPIRED, PENDING, Dashboard, RequestRecord
from controlplane.requests import walk_requests

DASHBOARD_WINDOW = timedelta(days=30)  # the figures cover requests of the last 30 days


class DashboardService:
    """Builds a Dashboard for an actor."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def dashboard(self, actor: str) -> Dashboard:
        """Active grants, pending requests and figures over what the actor may see."""
        now = self.ledger.clock()

        def mine(rec: RequestRecord) -> bool:
            return self.ledger.visible(actor, rec)

        seen = walk_requests(self.ledger, since=now - DASHBOARD_WINDOW, keep=mine)
        live = walk_requests(self.ledger, states=[PENDING, ACTIVE], keep=mine)
        granted = [r for r in seen if r.activated_at is not None]
        with self.ledger.store.read() as tx:
            used = tx.used_minutes([r.id for r in granted]) if granted else {}
        decided = [r for r in seen if r.activated_at is not None or r.state == DENIED]
        granted_minutes = [((r.ended_at or r.expires_at or now) - r.activated_at).total_seconds() / 60
                           for r in granted if r.activated_at is not None]
        with self.ledger.store.read() as tx:
            owed = [r for r in tx.owed_reviews() if self.ledger.visible(actor, r)]
        return Dashboard(
            active=[r for r in live if r.state == ACTIVE],
            pending=[r for r in live if r.state == PENDING or r.pending_extension is not None],
            expired_24h=sum(1 for r in seen if r.state == EXPIRED and r.ended_at
                            and r.ended_at >= now - timedelta(hours=24)),
            avg_granted_minutes=statistics.fmean(granted_minutes) if granted_minutes else 0.0,
            avg_used_minutes=statistics.fmean(used.values()) if used else 0.0,
            approval_rate=sum(1 for r in decided if r.activated_at is not None) / len(decided) if decided else 0.0,
            reviews_owed=owed,
        )


__all__ = ["DASHBOARD_WINDOW", "DashboardService"]
