"""Sessions through a broker: the token and certificate check that opens one, its progress
and end, refusals the brokers report, and who may list them.

`authorize_session` is the session gate: the credential a client presented
(an SSH certificate's serial and key id, or a database token) must belong to an
ACTIVE grant for this resource, login/role and channel. Its refusals are
written to the audit log before they are raised.
"""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from controlplane.approvals import claim
from controlplane.credentials import token_hash
from controlplane.errors import JitError
from controlplane.ledger import SYSTEM, AuditEntry, Ledger, Write, active_grant, iso, live_session, page_start
from controlplane.locks import refuse_if_grant_locked
from controlplane.model import ACTIVE, EXPIRED, RequestRecord, SessionRecord
from controlplane.store import Tx
from policy import Resource

# A broker's channel -> the session option that allows it ("" = connection-level check only).
CHANNEL_OPTION = {"shell": "pty", "pty": "pty", "exec": "exec", "sftp": "sftp",
                  "port_forwarding": "port_forwarding", "pg": "", "": ""}


class SessionService:
    """The session gate and the sessions' records."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def authorize_session(self, broker: str, kind: str, resource: str, login: str = "", role: str = "",
                          ssh_key_id: str = "", ssh_serial: int = 0, db_token: str = "",
                          client_address: str = "", channel: str = "", audit_refusal: bool = True
                          ) -> tuple[SessionRecord, RequestRecord, Resource]:
        """Check a presented credential against its grant and open a session; refusals are audited
        (unless `audit_refusal` is False: the broker counts them in its per-source aggregate)."""
        try:
            return self._authorize(broker, kind, resource, login, role, ssh_key_id, ssh_serial, db_token,
                                   client_address, channel)
        except JitError as e:
            if not audit_refusal:
                raise
            who = ssh_key_id or ("token" if db_token else "")
            self._audit_refusal(broker, kind, who, resource, e.code, e.message, client_address,
                                {"login": login, "role": role, "channel": channel,
                                 "serial": ssh_serial or None})
            raise

    def _grant_of(self, tx: Tx, kind: str, key_id: str, serial: int, db_token: str) -> str:
        """The grant id a presented credential was issued for (the token check and the
        certificate check), or the refusal."""
        if kind == "ssh":
            row = tx.get_certificate(int(serial or 0)) if serial else None
            if row is None or row.purpose != "user":
                raise JitError("credential.invalid", f"certificate serial {serial} was not issued by jitgate")
            if row.grant_id != key_id:
                raise JitError("credential.invalid",
                               f"certificate serial {serial} was issued for another grant than `{key_id}`")
            if row.revoked_us is not None:
                raise JitError("credential.revoked", f"certificate serial {serial} is revoked")
            return key_id
        if kind == "postgres":
            grant_id: str | None = tx.token_grant(token_hash(db_token)) if db_token else None
            if not grant_id:
                raise JitError("credential.invalid", "the database token is not valid")
            return grant_id
        raise JitError("invalid.argument", f"unknown kind `{kind}`")

    def _authorize(self, broker: str, kind: str, resource: str, login: str, role: str, key_id: str,
                   serial: int, db_token: str, client_address: str, channel: str
                   ) -> tuple[SessionRecord, RequestRecord, Resource]:
        self.ledger.require_broker(broker)
        if channel not in CHANNEL_OPTION:
            raise JitError("invalid.argument", f"unknown channel `{channel}`")
        ps = self.ledger.policy.current
        now = self.ledger.clock()
        with self.ledger.write() as w:
            grant_id = self._grant_of(w.tx, kind, key_id, serial, db_token)
            found = w.tx.get_request(grant_id)
            if found is not None:  # a lock's refusal says why, before the grant it ended does
                refuse_if_grant_locked(w.tx, now, found)
            rec = active_grant(found, grant_id, now)
            if rec.kind != kind or rec.resource != resource:
                raise JitError("session.target_mismatch",
                               f"grant `{rec.id}` is for `{rec.resource}`, not `{resource}`")
            if kind == "ssh" and login != rec.login:
                raise JitError("session.login_mismatch", f"grant `{rec.id}` is for login `{rec.login}`, not `{login}`")
            if kind == "postgres" and role and role != rec.role:
                raise JitError("session.role_mismatch", f"grant `{rec.id}` is for role `{rec.role}`, not `{role}`")
            option = CHANNEL_OPTION[channel]
            if channel == "pg" and kind != "postgres":
                raise JitError("session.channel_not_allowed", "a `pg` channel needs a database grant")
            if option and not getattr(rec.decision.session, option, False):
                raise JitError("session.channel_not_allowed",
                               f"`{channel}` is not allowed by the policy for grant `{rec.id}`")
            res = ps.resources.get(rec.resource)
            if res is None:
                raise JitError("resource.not_found", f"resource `{rec.resource}` is no longer in the policy")
            limit = rec.decision.max_sessions
            if limit is not None and len(w.tx.query_sessions(grant_id=rec.id, limit=limit)) >= limit:
                raise JitError("session.limit", f"grant `{rec.id}` allows {limit} session(s) and all were used"
                               + (" (single use)" if limit == 1 else ""))
            events: list[AuditEntry] = []
            claimed = claim(rec, now)  # on first use: this session starts the clock
            if claimed is not None:
                w.tx.update_request(rec)
                events.append(claimed)
            sess = SessionRecord(id=secrets.token_hex(8), grant_id=rec.id, user=rec.user, resource=rec.resource,
                                 kind=rec.kind, login=rec.login, role=rec.role, broker=broker,
                                 client_address=client_address, started_at=now, last_activity_at=now,
                                 channel=channel)
            w.tx.insert_session(sess)
            w.commit([*events, ("session.started", broker, sess.id,
                       {"grant_id": rec.id, "user": rec.user, "resource": rec.resource,
                        "login": rec.login, "role": rec.role, "channel": channel,
                        "client_address": client_address,
                        "serial": int(serial) if kind == "ssh" else None}, now)], request=rec, session=sess)
        return sess, rec, res

    def _audit_refusal(self, broker: str, kind: str, user: str, resource: str, code: str, message: str,
                       client_address: str, extra: dict[str, Any] | None = None) -> None:
        data = {"kind": kind, "user": user, "resource": resource, "code": code, "message": message,
                "client_address": client_address, **(extra or {})}
        self.ledger.record("session.refused", broker, resource or user, data)

    def record_refusal(self, broker: str, kind: str, user: str, resource: str, code: str, message: str,
                       client_address: str = "", aggregate: dict[str, Any] | None = None) -> None:
        """Audit a refusal the broker made itself (bad certificate, malformed name), or one source's
        refusals over a window (`aggregate`: count, first_at, last_at, codes, samples)."""
        self.ledger.require_broker(broker)
        self._audit_refusal(broker, kind, user, resource, code, message, client_address, aggregate)

    def end_session(self, broker: str, session_id: str, reason: str, bytes_in: int = 0, bytes_out: int = 0,
                    recording_ref: str = "", recording_hash: str = "", ended_at: datetime | None = None,
                    last_activity_at: datetime | None = None) -> SessionRecord:
        """Record a session's end (idempotent: a second report returns the first)."""
        self.ledger.require_broker(broker)
        now = self.ledger.clock()
        with self.ledger.write() as w:
            sess = live_session(w.tx, broker, session_id)
            if sess.ended_at is not None:
                return sess
            sess.ended_at = ended_at or now
            sess.end_reason = reason or "client_exit"
            sess.bytes_in, sess.bytes_out = max(sess.bytes_in, bytes_in), max(sess.bytes_out, bytes_out)
            sess.recording_ref, sess.recording_hash = recording_ref, recording_hash
            if last_activity_at is not None:
                sess.last_activity_at = last_activity_at
            w.tx.update_session(sess)
            w.commit([("session.ended", broker, sess.id,
                       {"grant_id": sess.grant_id, "reason": sess.end_reason,
                        "bytes_in": sess.bytes_in, "bytes_out": sess.bytes_out,
                        "recording_ref": recording_ref, "recording_hash": recording_hash,
                        "ended_at": iso(sess.ended_at)}, now)], session=sess)
            self._end_if_used_up(w, sess.grant_id, now)
        return sess

    @staticmethod
    def _end_if_used_up(w: Write, grant_id: str, now: datetime) -> None:
        """`max_sessions`: the grant ends (EXPIRED, "used") when its last allowed session ended."""
        rec = w.tx.get_request(grant_id)
        if rec is None or rec.state != ACTIVE or rec.decision.max_sessions is None:
            return
        limit = rec.decision.max_sessions
        rows = w.tx.query_sessions(grant_id=grant_id, limit=limit + 1)
        if len(rows) < limit or any(s.ended_at is None for _n, s in rows):
            return
        rec.state, rec.ended_at = EXPIRED, now
        rec.end_reason = rec.message = f"used: its last allowed session ({limit}) ended"
        w.tx.update_request(rec)
        w.tx.revoke_certificates([rec.id], now)
        w.tx.delete_tokens([rec.id])
        w.commit([("grant.expired", SYSTEM, rec.id, {"reason": "used", "max_sessions": limit}, now)], request=rec)

    def report_activity(self, broker: str, session_id: str, last_activity_at: datetime | None,
                        bytes_in: int = 0, bytes_out: int = 0) -> None:
        """Progress of a live session (not an audit event: it changes no state)."""
        self.ledger.require_broker(broker)
        with self.ledger.store.write() as tx:
            sess = live_session(tx, broker, session_id)
            if sess.ended_at is not None:
                return
            sess.last_activity_at = last_activity_at or self.ledger.clock()
            sess.bytes_in, sess.bytes_out = max(sess.bytes_in, bytes_in), max(sess.bytes_out, bytes_out)
            tx.update_session(sess)

    def list_sessions(self, actor: str, grant_id: str | None = None, user: str | None = None,
                      resource: str | None = None, live_only: bool = False, page_size: int = 50,
                      page_token: str = "") -> tuple[list[SessionRecord], str]:
        """Sessions newest first: all for admins and brokers, one's own for everybody else."""
        page_size, before = page_start(page_size, page_token)
        if not self._sees_all(actor):
            if user and user != actor:
                raise JitError("permission.denied", f"you may only list your own sessions, not `{user}`'s")
            user = actor
        with self.ledger.store.read() as tx:
            rows = tx.query_sessions(grant_id=grant_id, user=user, resource=resource, live_only=live_only,
                                     before_num=before, limit=page_size + 1)
        page = rows[:page_size]
        token = str(page[-1][0]) if len(rows) > page_size else ""
        return [s for _n, s in page], token

    def get_session(self, actor: str, session_id: str) -> SessionRecord:
        with self.ledger.store.read() as tx:
            sess = tx.get_session(session_id)
        if sess is None:
            raise JitError("session.not_found", f"there is no session `{session_id}`")
        if sess.user != actor and not self._sees_all(actor):
            raise JitError("permission.denied", f"you may not see session `{session_id}`")
        return sess

    def _sees_all(self, actor: str) -> bool:
        return self.ledger.is_admin(actor) or self.ledger.is_broker(actor)


__all__ = ["CHANNEL_OPTION", "SessionService"]
