"""The control plane's services, wired over one ledger.

Thread-safe: gRPC server threads call the services at once. Each concern is one
module over `ledger.Ledger` (store, clock, roles, shared checks, and the one
write path that commits a change with its audit events and then tells the
listeners):

    requests.py     ask, see, list, cancel             core.requests
    approvals.py    approve, deny, break-glass review  core.approvals
    grants.py       extend, revoke, expiry sweep       core.grants
    credentials.py  SSH certificates, database tokens  core.credentials
    sessions.py     the session gate (token and certificate check), session records
                                                       core.sessions
    history.py      policy history, duration model     core.history
    dashboard.py    figures for one person             core.dashboards
    auditlog.py     audit events, chain check, imports and exports
                                                       core.audit
    locks.py        locks on a user, resource, login or all   core.locks

`AccessCore` only builds them (no method of its own): a caller names the
service it means, `core.grants.extend(...)`, so a reader finds the code in one hop.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from controlplane.approvals import ApprovalService
from controlplane.auditlog import AuditLog
from controlplane.credentials import CredentialService
from controlplane.dashboard import DashboardService
from controlplane.grants import GrantService
from controlplane.history import HistoryService, Recommender
from controlplane.ledger import Ledger, PolicyHolder, StaticPolicy, utcnow
from controlplane.locks import LockService
from controlplane.requests import RequestService
from controlplane.sessions import SessionService
from controlplane.store import SqlStore

if TYPE_CHECKING:
    from ca.ssh import SSHCertificateAuthority


class AccessCore:
    """Requests, approvals, grants, credentials, sessions, history, dashboard and the audit log."""

    def __init__(self, store: SqlStore, policy: PolicyHolder,
                 clock: Callable[[], datetime] = utcnow, recommender: Recommender | None = None,
                 *, admins: frozenset[str] | set[str] = frozenset(),
                 brokers: frozenset[str] | set[str] = frozenset(),
                 ssh_user_ca: SSHCertificateAuthority | None = None,
                 ssh_upstream_ca: SSHCertificateAuthority | None = None) -> None:
        self.ledger = Ledger(store, policy, clock, admins=admins, brokers=brokers)
        self.history = HistoryService(self.ledger, recommender)
        self.approvals = ApprovalService(self.ledger)
        self.requests = RequestService(self.ledger, self.history, self.approvals)
        self.grants = GrantService(self.ledger, self.history)
        self.credentials = CredentialService(self.ledger, ssh_user_ca, ssh_upstream_ca)
        self.sessions = SessionService(self.ledger)
        self.dashboards = DashboardService(self.ledger)
        self.audit = AuditLog(self.ledger)
        self.locks = LockService(self.ledger)


__all__ = ["AccessCore", "PolicyHolder", "Recommender", "StaticPolicy", "utcnow"]
