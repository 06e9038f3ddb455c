"""Locks: an admin's kill switch on a user, a resource, a login (or role), or everything.

    core.locks.lock(admin, "user", "alice", reason="laptop stolen", until=None)
    core.locks.unlock(admin, lock_id, reason="laptop recovered")
    refuse_if_locked(tx, now, user, resource, login)   # the check every gate calls

While a lock is in force nothing under it starts: no request is created, no vote
is counted, no credential is issued and no session is opened (`lock.active`).
Placing a lock commits the lock and `lock.created` first, then ends every ACTIVE
grant under it as REVOKED in a second transaction (with their audit events; a
crash in between is reconciled by the sweeper's pass, `end_locked_grants`, and
meanwhile every gate refuses under the lock). Brokers hear `lock.created` first,
with the lock in the event, and cut every matching session from that one event
(`broker.monitor.MonitorHub.apply_lock`: hundreds of sessions in one pass, not one
stream message each); the grant.revoked events that follow, and the re-sync when
the stream is broken (a revoked grant is missing from the snapshot and
`GetRequest` says REVOKED), are the authoritative path. So a lock reaches every
live session within the revocation bound and survives any restart (both the
lock and the ended grants are stored).
Lifting a lock lets new requests through; the grants it ended stay ended
(a kill switch does not hand access back by itself).
"""
from __future__ import annotations

import secrets
from datetime import datetime

from controlplane.errors import JitError
from controlplane.ledger import SYSTEM, Ledger, Write, end_grants, iso
from controlplane.model import ACTIVE, REVOKED, RequestRecord
from controlplane.store import Tx
from controlplane.store.locks import LOCK_TARGETS, LockRecord

GRANTS_PAGE = 1_000  # active grants read per page when a lock ends those under it
MAX_ACTIVE_LOCKS = 1000  # locks in force at once: every gate reads them all


def lock_message(lock: LockRecord) -> str:
    until = f" until {iso(lock.until)}" if lock.until else ""
    return f"{lock.describe()} is locked{until} by {lock.created_by}: {lock.reason} (lock `{lock.id}`)"


def matching_lock(tx: Tx, now: datetime, user: str, resource: str, login: str) -> LockRecord | None:
    """The first lock in force at `now` that covers (`user`, `resource`, `login`/role), if any."""
    for lock in tx.query_locks(now=now, limit=MAX_ACTIVE_LOCKS):
        if lock.matches(user, resource, login):
            return lock
    return None


def refuse_if_locked(tx: Tx, now: datetime, user: str, resource: str, login: str) -> None:
    """Raise `lock.active` when a lock in force covers this user, resource and login or role."""
    lock = matching_lock(tx, now, user, resource, login)
    if lock is not None:
        raise JitError("lock.active", lock_message(lock))


def refuse_if_grant_locked(tx: Tx, now: datetime, rec: RequestRecord) -> None:
    refuse_if_locked(tx, now, rec.user, rec.resource, rec.login or rec.role)


def _under(tx: Tx, lock: LockRecord) -> list[RequestRecord]:
    """Every ACTIVE grant under `lock`."""
    # Read in pages (bounded memory per read), never refused: a kill switch that fails because
    # it would end too much would fail open.
    under: list[RequestRecord] = []
    before: int | None = None
    while True:
        rows = tx.query_requests(user=lock.value if lock.target == "user" else None,
                                 resource=lock.value if lock.target == "resource" else None,
                                 states=[ACTIVE], before_num=before, limit=GRANTS_PAGE)
        under += [rec for _num, rec in rows if lock.matches(rec.user, rec.resource, rec.login or rec.role)]
        if len(rows) < GRANTS_PAGE:
            break
        before = rows[-1][0]
    return under


class LockService:
    """Place, lift and list locks (admins)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _admin(self, actor: str, what: str) -> None:
        if not self.ledger.is_admin(actor):
            raise JitError("permission.denied", f"only an admin may {what}")

    def lock(self, actor: str, target: str, value: str, reason: str,
             until: datetime | None = None) -> tuple[LockRecord, list[str]]:
        """Place a lock and end every active grant under it; returns the lock and the ended grant ids."""
        self._admin(actor, "place a lock")
        target, value, reason = (target or "").strip(), (value or "").strip(), (reason or "").strip()
        if target not in LOCK_TARGETS:
            raise JitError("invalid.argument", f"a lock is on a user, resource, login or all, not `{target}`")
        if target == "all":
            value = ""
        elif not value:
            raise JitError("invalid.argument", f"name the {target} to lock")
        if not reason:
            raise JitError("invalid.argument", "a lock needs a reason: say why")
        now = self.ledger.clock()
        if until is not None and until <= now:
            raise JitError("invalid.argument", f"the lock's end {iso(until)} is not in the future")
        lock = LockRecord(id=secrets.token_hex(8), target=target, value=value, reason=reason, created_by=actor,
                          created_at=now, until=until)
        with self.ledger.write() as w:
            if len(w.tx.query_locks(now=now, limit=MAX_ACTIVE_LOCKS)) >= MAX_ACTIVE_LOCKS:
                raise JitError("lock.too_many", f"{MAX_ACTIVE_LOCKS} locks are in force; lift some first")
            w.tx.insert_lock(lock)
            # Committed and published on its own, with the lock: brokers cut its sessions from
            # this one event at once, instead of after the revocation of every grant under it
            # (measured, 500 grants: the event reached the broker ~100 ms later when both shared
            # one transaction). Still fail closed between the two transactions: every gate
            # (request, vote, credential, session) refuses under a lock in force, and a crash
            # before the second commits is reconciled by the sweeper (`end_locked_grants`).
            w.commit([("lock.created", actor, lock.id,
                       {"target": target, "value": value, "reason": reason, "until": iso(until)}, now)], lock=lock)
        with self.ledger.write() as w:
            ended = self._end_grants(w, lock, now)
        return lock, ended

    def end_locked_grants(self) -> list[str]:
        """End every ACTIVE grant under a lock in force (the sweeper's pass): grants a lock did not
        end because the plane stopped between placing it and ending them. Returns their ids."""
        now = self.ledger.clock()
        with self.ledger.store.read() as tx:
            locks = tx.query_locks(now=now, limit=MAX_ACTIVE_LOCKS)
        ended: list[str] = []
        for lock in locks:
            with self.ledger.store.read() as tx:
                if not _under(tx, lock):
                    continue  # the usual case: a write transaction per lock per sweep would be waste
            with self.ledger.write() as w:
                ended += self._end_grants(w, lock, now)
        return ended

    def _end_grants(self, w: Write, lock: LockRecord, now: datetime) -> list[str]:
        """Revoke every ACTIVE grant under `lock` in the transaction of `w`."""
        under = _under(w.tx, lock)
        # Certificates and tokens of them all in two statements (a lock may end hundreds of grants
        # at once).
        ids = [rec.id for rec in under]
        serials = w.tx.revoke_certificates(ids, now) if ids else []
        if ids:
            w.tx.delete_tokens(ids)
        reason = f"locked by {lock.created_by}: {lock.reason}"
        end_grants(w, under, REVOKED, reason, now)
        for rec in under:
            w.commit([("grant.revoked", lock.created_by, rec.id, {"reason": reason, "lock_id": lock.id}, now)],
                     request=rec)
        if serials:
            w.commit([("lock.certificates_revoked", SYSTEM, lock.id, {"revoked_serials": serials}, now)])
        return ids

    def unlock(self, actor: str, lock_id: str, reason: str = "") -> LockRecord:
        """Lift a lock (it stays listed with `--all`)."""
        self._admin(actor, "lift a lock")
        now = self.ledger.clock()
        with self.ledger.write() as w:
            lock = w.tx.get_lock(lock_id)
            if lock is None:
                raise JitError("lock.not_found", f"there is no lock `{lock_id}`")
            if not lock.active_at(now):
                raise JitError("lock.not_active", f"lock `{lock_id}` is no longer in force")
            lock.lifted_at, lock.lifted_by = now, actor
            w.tx.update_lock(lock)
            w.commit([("lock.lifted", actor, lock.id, {"reason": (reason or "").strip()}, now)])
        return lock

    def list_locks(self, actor: str, include_inactive: bool = False, limit: int = MAX_ACTIVE_LOCKS
                   ) -> list[LockRecord]:
        """Locks in force (or all, newest first): admins and brokers."""
        if not (self.ledger.is_admin(actor) or self.ledger.is_broker(actor)):
            raise JitError("permission.denied", "only admins and brokers may list locks")
        with self.ledger.store.read() as tx:
            return tx.query_locks(now=self.ledger.clock(), include_inactive=include_inactive, limit=limit)


__all__ = ["LockService", "lock_message", "matching_lock", "refuse_if_grant_locked", "refuse_if_locked"]
