"""The audit log as people and tools read it, and what goes in and out in bulk: events,
the chain check, events for things done outside a request (policy reloads,
identities, CA rotation), imported history, and exports of past requests (for
`policy diff`) and of history (for training the duration model).

The hash chain itself is audit.py; every service appends through `Ledger.write`.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from controlplane.audit import ChainVerifier
from controlplane.errors import JitError
from controlplane.ledger import SYSTEM, Ledger, iso
from controlplane.model import ACTIVE, AuditRecord
from controlplane.requests import walk_requests
from policy import PolicyRequest

if TYPE_CHECKING:  # recommend imports LightGBM: rows arrive already built
    from recommend import HistoryRow

MAX_EVENTS = 10_000  # events per audit_events call: one page of a SIEM export
MAX_RELOAD_ERRORS = 50  # errors of a refused policy kept in its audit event


class AuditLog:
    """Reading the audit log, recording outside events, importing and exporting history."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def audit_events(self, after_seq: int = 0, type: str = "", subject: str = "",
                     limit: int = 100, since: datetime | None = None) -> list[AuditRecord]:
        """Events after `after_seq` in order; `type` may end with `*` for a prefix."""
        limit = max(1, min(int(limit or 100), MAX_EVENTS))
        with self.ledger.store.read() as tx:
            return tx.audit_events(after_seq=after_seq, type_=type, subject=subject, limit=limit, since=since)

    def verify_audit(self) -> tuple[bool, int, list[str]]:
        """Walk the whole chain: (ok, events checked, problems)."""
        v = ChainVerifier()
        with self.ledger.store.read() as tx:
            v.feed(tx.iter_audit())
            head_seq, head_hash = tx.audit_head()
        return v.finish(head_seq, head_hash)

    def record_policy_reload(self, version: str, ok: bool, errors: Sequence[str] = ()) -> None:
        """Audit a policy reload (or a refused candidate)."""
        self.ledger.record("policy.reloaded" if ok else "policy.refused", SYSTEM, version,
                           {"version": version, "errors": list(errors)[:MAX_RELOAD_ERRORS]})

    def record_identity_issued(self, actor: str, name: str) -> None:
        """Audit that an admin issued a client identity."""
        self.ledger.record("identity.issued", actor, name, {"name": name})

    def record_ca_rotated(self, actor: str, ca_name: str, new_key: str, still_trusted: Sequence[str]) -> None:
        """Audit an SSH CA rotation: the new signing key and every key still trusted (public lines only)."""
        self.ledger.record("ca.rotated", actor, ca_name,
                           {"ca": ca_name, "new_key": new_key, "trusted": list(still_trusted)})

    def import_history(self, actor: str, rows: Sequence[HistoryRow], source: str, sha256: str) -> int:
        """Store past grants from a history file for the duration recommender only, with one
        `history.imported` audit event (row count, file hash) in the same transaction.

        They never become requests or grants, so they count in no policy history. A file
        (by `sha256`) is imported once. Local use only: no gRPC method calls this, the
        actor is whoever runs the import.
        """
        if not rows:
            raise JitError("invalid.argument", f"`{source}` holds no history rows")
        fields = [dict(user=r.user, resource=r.resource, kind=r.kind, labels=dict(r.labels), login=r.login,
                       role=r.role, reason=r.reason, ticket=r.ticket, requested_at=r.requested_at,
                       asked_minutes=r.asked_minutes, used_minutes=r.used_minutes, extensions=r.extensions)
                  for r in rows]
        now = self.ledger.clock()
        with self.ledger.write() as w:
            if w.tx.imported_batch_exists(sha256):
                raise JitError("history.already_imported",
                               f"`{source}` (sha256 {sha256[:12]}...) was imported before")
            count = w.tx.insert_imported_history(fields, sha256, now)
            w.commit([("history.imported", actor, source, {"rows": count, "sha256": sha256, "file": source}, now)])
        return count

    def export_imported_history(self, days: float | None = None) -> Iterator[dict[str, Any]]:
        """Imported history rows (requested in the last `days`, None: all) in the history
        JSON shape of `export_history`, in import order."""
        since = self.ledger.clock() - timedelta(days=days) if days is not None else None
        with self.ledger.store.read() as tx:
            found = list(tx.iter_imported_history(since))
        for r in found:
            row: dict[str, Any] = {"user": r["user"], "resource": r["resource"], "kind": r["kind"],
                                   "labels": r["labels"]}
            if r["login"] is not None:
                row["login"] = r["login"]
            else:
                row["role"] = r["role"]
            row.update(reason=r["reason"], ticket=r["ticket"], requested_at=iso(r["requested_at"]),
                       asked_minutes=r["asked_minutes"], used_minutes=r["used_minutes"],
                       extensions=r["extensions"])
            yield row

    def export_requests(self, days: float) -> Iterator[dict[str, Any]]:
        """POLICY.md request mappings (with `time` and `history`), requests and extensions, oldest first."""
        for rec in walk_requests(self.ledger, since=self.ledger.clock() - timedelta(days=days)):
            asked = PolicyRequest(id=rec.id, user=rec.user, resource=rec.resource, duration=rec.duration,
                                  time=rec.created_at, login=rec.login, role=rec.role, reason=rec.reason,
                                  ticket=rec.ticket, emergency=rec.emergency,
                                  history={k: v for k, v in rec.history.items() if v})
            yield asked.to_mapping()
            for ext in rec.extensions:
                yield replace(asked, id=ext.id, duration=ext.duration, time=ext.created_at or rec.created_at,
                              extension=ext.number).to_mapping()

    def export_history(self, days: float, labels: Mapping[str, Mapping[str, str]] | None = None
                       ) -> Iterator[dict[str, Any]]:
        """Recommender history rows: ended grants that had at least one session, oldest first.
        A grant's labels come from `labels` (resource -> labels) when given, else from the
        policies in force."""
        since = self.ledger.clock() - timedelta(days=days)
        grants = [r for r in walk_requests(self.ledger, since=since)
                  if r.activated_at is not None and r.state != ACTIVE]
        with self.ledger.store.read() as tx:
            used = tx.used_minutes([r.id for r in grants]) if grants else {}
        if labels is None:
            labels = {name: res.labels for name, res in self.ledger.policy.current.resources.items()}
        for rec in grants:
            if rec.id not in used:
                continue
            row: dict[str, Any] = {"user": rec.user, "resource": rec.resource, "kind": rec.kind,
                                   "labels": dict(labels.get(rec.resource) or {})}
            if rec.kind == "ssh":
                row["login"] = rec.login
            else:
                row["role"] = rec.role
            row.update(reason=rec.reason, ticket=rec.ticket, requested_at=iso(rec.created_at),
                       asked_minutes=round(rec.duration.total_seconds() / 60, 3),
                       used_minutes=round(used[rec.id], 3), extensions=rec.extensions_used)
            if rec.emergency:
                row["emergency"] = True  # break-glass: the risk model learns its pattern
            yield row


__all__ = ["AuditLog"]
