"""Credentials of an active grant: SSH user certificates, database tokens, the broker's
upstream certificates, and the revoked serials brokers check.

Every credential ends with its grant: a certificate's valid_before is the
grant's deadline, a token is deleted when the grant ends (grants.py).
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from controlplane.approvals import latest_end
from controlplane.errors import JitError
from controlplane.ledger import Ledger, active_grant, iso, live_session
from controlplane.locks import refuse_if_grant_locked
from controlplane.model import RequestRecord

if TYPE_CHECKING:
    from ca.ssh import SSHCertificateAuthority

CERT_SKEW = timedelta(seconds=60)           # valid_after = now - skew: clocks drift
UPSTREAM_CERT_LIFETIME = timedelta(minutes=5)  # the broker logs in once; OpenSSH checks only at login
SERIAL_ATTEMPTS = 5  # a taken serial (1 in 2^63) is signed again; five misses means something is wrong


def token_hash(token: str) -> str:
    """How a database token is stored and looked up: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_serial() -> int:
    """A random non-zero 63-bit serial (OpenSSH KRLs cannot revoke serial 0)."""
    while True:
        serial = secrets.randbits(63)
        if serial:
            return serial


def _sign(sign: Callable[[int], str], store: Callable[[int], bool]) -> tuple[str, int]:
    """Sign with a fresh serial until `store(serial)` takes it; (certificate line, serial)."""
    for _attempt in range(SERIAL_ATTEMPTS):
        serial = new_serial()
        try:
            line = sign(serial)
        except Exception as e:  # ca.IssueError: a bad public key
            raise JitError("invalid.argument", f"cannot sign this public key: {e}") from None
        if store(serial):
            return line, serial
        # serial taken: the certificate is thrown away, sign again
    raise JitError("internal", "could not find a free certificate serial")


class CredentialService:
    """Issues what a grant's owner (or a broker, upstream) presents."""

    def __init__(self, ledger: Ledger, ssh_user_ca: SSHCertificateAuthority | None = None,
                 ssh_upstream_ca: SSHCertificateAuthority | None = None) -> None:
        self.ledger = ledger
        self.ssh_user_ca = ssh_user_ca
        self.ssh_upstream_ca = ssh_upstream_ca

    def issue_ssh_certificate(self, actor: str, grant_id: str, public_key: str
                              ) -> tuple[str, int, datetime, list[str]]:
        """Sign the owner's public key for an active ssh grant; returns (line, serial, valid_before, principals)."""
        ca = self.ssh_user_ca
        if ca is None:
            raise JitError("ca.unavailable", "no SSH user CA is configured")
        now = self.ledger.clock()
        with self.ledger.store.read() as tx:
            found = tx.get_request(grant_id)
        if found is not None and found.user != actor:
            raise JitError("permission.denied", f"grant `{grant_id}` belongs to `{found.user}`")
        rec = active_grant(found, grant_id, now)
        if rec.kind != "ssh":
            raise JitError("invalid.argument", f"grant `{grant_id}` is for a {rec.kind} resource, not ssh")
        principals = [f"{rec.login}@{rec.resource}"]
        options = rec.decision.session
        expires_at = latest_end(rec)  # unclaimed on first use: the claim deadline plus the duration
        assert expires_at is not None

        def sign(serial: int) -> str:
            return ca.sign_user_certificate(
                public_key=public_key, key_id=rec.id, principals=principals,
                valid_after=now - CERT_SKEW, valid_before=expires_at, serial=serial,
                permit_pty=bool(options.pty), permit_port_forwarding=bool(options.port_forwarding),
                permit_agent_forwarding=False)

        def store(serial: int) -> bool:
            with self.ledger.write() as w:
                fresh = active_grant(w.tx.get_request(grant_id), grant_id, self.ledger.clock())
                refuse_if_grant_locked(w.tx, now, fresh)
                if not w.tx.insert_certificate(serial, rec.id, "user", principals, now, expires_at):
                    return False
                w.commit([("credential.ssh_issued", actor, rec.id,
                           {"serial": serial, "principals": principals, "valid_before": iso(expires_at),
                            "permit_pty": bool(options.pty),
                            "permit_port_forwarding": bool(options.port_forwarding)}, now)], request=fresh)
            return True

        line, serial = _sign(sign, store)
        return line, serial, expires_at, principals

    def issue_database_token(self, actor: str, grant_id: str) -> tuple[str, datetime]:
        """A random token for an active database grant, valid until the grant ends (stored hashed)."""
        now = self.ledger.clock()
        token = secrets.token_urlsafe(32)
        digest = token_hash(token)
        with self.ledger.write() as w:
            found = w.tx.get_request(grant_id)
            if found is not None and found.user != actor:
                raise JitError("permission.denied", f"grant `{grant_id}` belongs to `{found.user}`")
            rec = active_grant(found, grant_id, now)
            refuse_if_grant_locked(w.tx, now, rec)
            if rec.kind != "postgres":
                raise JitError("invalid.argument", f"grant `{grant_id}` is for a {rec.kind} resource, not a database")
            w.tx.insert_token(digest, rec.id, now)
            w.commit([("credential.db_token_issued", actor, rec.id,
                       {"token_id": digest[:12], "expires_at": iso(rec.expires_at)}, now)], request=rec)
        assert rec.expires_at is not None
        return token, rec.expires_at

    def issue_upstream_certificate(self, broker: str, session_id: str, public_key: str) -> tuple[str, datetime]:
        """The broker's short certificate towards the target (principal = the approved login)."""
        self.ledger.require_broker(broker)
        ca = self.ssh_upstream_ca
        if ca is None:
            raise JitError("ca.unavailable", "no SSH upstream CA is configured")
        now = self.ledger.clock()
        with self.ledger.store.read() as tx:
            sess = live_session(tx, broker, session_id)
            found = tx.get_request(sess.grant_id)
        if sess.ended_at is not None:
            raise JitError("session.ended", f"session `{session_id}` has ended")
        rec: RequestRecord = active_grant(found, sess.grant_id, now)
        if rec.kind != "ssh":
            raise JitError("invalid.argument", f"session `{session_id}` is not an ssh session")
        assert rec.expires_at is not None
        valid_before = min(rec.expires_at, now + UPSTREAM_CERT_LIFETIME)

        def sign(serial: int) -> str:
            return ca.sign_user_certificate(
                public_key=public_key, key_id=f"{rec.id}/{session_id}", principals=[rec.login],
                valid_after=now - CERT_SKEW, valid_before=valid_before, serial=serial,
                permit_pty=True, permit_port_forwarding=bool(rec.decision.session.port_forwarding),
                permit_agent_forwarding=False)

        def store(serial: int) -> bool:
            with self.ledger.write() as w:
                refuse_if_grant_locked(w.tx, now, active_grant(w.tx.get_request(rec.id), rec.id, self.ledger.clock()))
                if not w.tx.insert_certificate(serial, rec.id, "upstream", [rec.login], now, valid_before,
                                               session_id=session_id):
                    return False
                w.commit([("credential.upstream_issued", broker, session_id,
                           {"grant_id": rec.id, "serial": serial, "principals": [rec.login],
                            "valid_before": iso(valid_before)}, now)], request=rec, session=sess)
            return True

        line, _serial = _sign(sign, store)
        return line, valid_before

    def revoked_serials(self) -> list[int]:
        """Serials of revoked user certificates still inside their window."""
        with self.ledger.store.read() as tx:
            return tx.revoked_serials(self.ledger.clock())


__all__ = ["CERT_SKEW", "UPSTREAM_CERT_LIFETIME", "CredentialService", "new_serial", "token_hash"]
