"""Certificate serials and database tokens (controlplane/store/credentials.py)."""
from __future__ import annotations

from datetime import timedelta

from controlplane.store import IssuedCertificate, SqlStore, to_us
from tests.controlplane.core.helpers import START


def test_a_serial_is_issued_once_and_revoked_until_it_expires(store: SqlStore) -> None:
    later = START + timedelta(hours=1)
    with store.write() as tx:
        assert tx.insert_certificate(7, "g-1", "user", ["deploy"], START, later)
        assert not tx.insert_certificate(7, "g-2", "user", ["root"], START, later)  # the serial is taken
        assert tx.get_certificate(7) == IssuedCertificate(
            serial=7, grant_id="g-1", purpose="user", session_id="", principals=("deploy",),
            issued_us=to_us(START), valid_before_us=to_us(later), revoked_us=None)
        assert tx.get_certificate(8) is None
        assert tx.revoke_certificates(["g-1", "g-3"], START) == [7]
        assert tx.revoke_certificates(["g-1"], START) == []  # once
    with store.read() as tx:
        cert = tx.get_certificate(7)
        assert cert is not None and cert.revoked_us == to_us(START)
        assert tx.revoked_serials(START) == [7]
        assert tx.revoked_serials(later) == []  # expired by itself: no longer listed


def test_a_token_names_its_grant_until_deleted(store: SqlStore) -> None:
    with store.write() as tx:
        tx.insert_token("h" * 64, "g-1", START)
        assert tx.token_grant("h" * 64) == "g-1" and tx.token_grant("x" * 64) is None
        tx.delete_tokens(["g-1"])
        assert tx.token_grant("h" * 64) is None
