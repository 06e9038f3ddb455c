"""Credentials issued on grants: `certificates` (every SSH certificate serial jitgate signed,
for the user or for the upstream hop, and its revocation) and `db_tokens` (the hashes of
database tokens, never the tokens)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, insert, select, update

from controlplane.store.base import TxBase, chunks, to_us
from controlplane.store.tables import certificates, db_tokens

_c, _t = certificates.c, db_tokens.c


@dataclass(frozen=True)
class IssuedCertificate:
    """One issued serial as stored (times in microseconds since the epoch, as the columns)."""

    serial: int
    grant_id: str
    purpose: str  # "user" or "upstream"
    session_id: str  # the session an upstream certificate was issued for ("" for user certificates)
    principals: tuple[str, ...]
    issued_us: int
    valid_before_us: int
    revoked_us: int | None


class CredentialTx(TxBase):
    """Certificate serials and database tokens inside one transaction."""

    # -- certificates ---------------------------------------------------------------

    def insert_certificate(self, serial: int, grant_id: str, purpose: str, principals: list[str],
                           issued: datetime, valid_before: datetime, session_id: str = "") -> bool:
        """Record an issued serial; False if the serial is already taken."""
        if self.conn.execute(select(_c.serial).where(_c.serial == serial)).first() is not None:
            return False
        self.conn.execute(insert(certificates).values(
            serial=serial, grant_id=grant_id, purpose=purpose, session_id=session_id,
            principals=json.dumps(principals), issued_us=to_us(issued), valid_before_us=to_us(valid_before)))
        return True

    def get_certificate(self, serial: int) -> IssuedCertificate | None:
        row = self.conn.execute(select(certificates).where(_c.serial == serial)).first()
        return _certificate(row) if row is not None else None

    def revoke_certificates(self, grant_ids: Sequence[str], at: datetime) -> list[int]:
        """Mark the certificates of grants revoked; returns their serials."""
        serials: list[int] = []
        for part in chunks(list(grant_ids)):
            cond = and_(_c.grant_id.in_(part), _c.revoked_us.is_(None))
            serials += [int(r.serial) for r in self.conn.execute(select(_c.serial).where(cond))]
            self.conn.execute(update(certificates).where(cond).values(revoked_us=to_us(at)))
        return serials

    def revoked_serials(self, now: datetime) -> list[int]:
        """Revoked user certificates still inside their window (later ones expire by themselves)."""
        q = select(_c.serial).where(and_(_c.revoked_us.is_not(None), _c.valid_before_us > to_us(now)))
        return [int(r.serial) for r in self.conn.execute(q.order_by(_c.serial))]

    # -- database tokens ------------------------------------------------------------

    def insert_token(self, token_hash: str, grant_id: str, issued: datetime) -> None:
        self.conn.execute(insert(db_tokens).values(token_hash=token_hash, grant_id=grant_id,
                                                   issued_us=to_us(issued)))

    def token_grant(self, token_hash: str) -> str | None:
        """The grant a token (by its hash) was issued on, or None."""
        found: str | None = self.conn.execute(select(_t.grant_id).where(_t.token_hash == token_hash)).scalar()
        return found

    def delete_tokens(self, grant_ids: Sequence[str]) -> None:
        self._delete_in(db_tokens, "grant_id", grant_ids)


def _certificate(row: Row[Any]) -> IssuedCertificate:
    return IssuedCertificate(
        serial=int(row.serial), grant_id=row.grant_id, purpose=row.purpose, session_id=row.session_id,
        principals=tuple(json.loads(row.principals)), issued_us=int(row.issued_us),
        valid_before_us=int(row.valid_before_us),
        revoked_us=None if row.revoked_us is None else int(row.revoked_us))
