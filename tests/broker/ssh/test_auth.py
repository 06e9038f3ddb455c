"""The broker's certificate checks and the pinned asyncssh hook, without a network."""
from __future__ import annotations

import base64
import datetime as dt
import inspect
from pathlib import Path

import asyncssh
import pytest

from broker.ssh.auth import Refusal, check_certificate, install_certificate_hook, parse_user_name
from ca import SSHCertificateAuthority, new_serial

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> SSHCertificateAuthority:
    return SSHCertificateAuthority.load_or_create(tmp_path_factory.mktemp("ca"), b"k" * 32, name="user-ca")


def user_key_line() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


def cert_blob(ca: SSHCertificateAuthority, principal: str = "root@web-01", key_id: str = "grant-1",
              after: dt.datetime = NOW - dt.timedelta(minutes=1), before: dt.datetime = NOW + dt.timedelta(hours=1),
              serial: int | None = None) -> bytes:
    line = ca.sign_user_certificate(public_key=user_key_line(), key_id=key_id, principals=[principal],
                                    valid_after=after, valid_before=before, serial=serial or new_serial(),
                                    permit_pty=True, permit_port_forwarding=False, permit_agent_forwarding=False)
    return base64.b64decode(line.split()[1])


def code_of(
    blob: bytes, ca: SSHCertificateAuthority, user: str = "root@web-01", revoked: frozenset[int] = frozenset()
) -> str:
    with pytest.raises(Refusal) as err:
        check_certificate(blob, user, [ca.public_key_line()], revoked)
    return err.value.code


def test_user_name_convention() -> None:
    assert parse_user_name("root@web-01").principal == "root@web-01"
    assert parse_user_name("deploy@db.prod-1").resource == "db.prod-1"
    for bad in ("root", "@web", "root@", "ro ot@web", "root@web@x y", "a\x00@b"):
        with pytest.raises(Refusal) as err:
            parse_user_name(bad)
        assert err.value.code == "user.malformed" and "LOGIN@RESOURCE" in err.value.message


def test_valid_certificate_yields_key_id_and_serial(ca: SSHCertificateAuthority) -> None:
    blob = cert_blob(ca, key_id="g-42", serial=12345)
    info = check_certificate(blob, "root@web-01", [ca.public_key_line()], frozenset())
    assert info.key_id == "g-42" and info.serial == 12345 and info.principals == ("root@web-01",)


def test_refusal_codes(ca: SSHCertificateAuthority, tmp_path: Path) -> None:
    assert (
        code_of(cert_blob(ca, before=NOW - dt.timedelta(seconds=1), after=NOW - dt.timedelta(hours=1)), ca)
        == "cert.expired"
    )
    assert code_of(cert_blob(ca), ca, user="root@web-02") == "cert.principal_mismatch"
    assert code_of(cert_blob(ca, serial=777), ca, revoked=frozenset({777})) == "cert.revoked"
    other = SSHCertificateAuthority.load_or_create(tmp_path, b"o" * 32, name="user-ca")
    assert code_of(cert_blob(other), ca) == "cert.untrusted_ca"
    tampered = bytearray(cert_blob(ca, key_id="grant-1"))
    i = tampered.find(b"grant-1")
    tampered[i + 6] ^= 0x01
    assert code_of(bytes(tampered), ca) == "cert.bad_signature"
    plain = base64.b64decode(user_key_line().split()[1])
    assert code_of(plain, ca) == "cert.required"
    with pytest.raises(Refusal) as err:
        check_certificate(cert_blob(ca), "root@web-01", [], frozenset())
    assert err.value.code == "broker.no_trust"


def test_pinned_asyncssh_hook_point() -> None:
    # The hook wraps this coroutine method by name; fail loudly if asyncssh changes it.
    method = asyncssh.SSHServerConnection.validate_public_key
    assert inspect.iscoroutinefunction(method)
    assert list(inspect.signature(method).parameters) == ["self", "username", "key_data", "msg", "signature"]


async def test_hook_runs_before_asyncssh_and_can_refuse() -> None:
    seen = []

    class Conn:
        async def validate_public_key(self, username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
            seen.append(("asyncssh", username))
            return True

    conn = Conn()
    install_certificate_hook(conn, lambda user, data, signed: seen.append(("hook", user, signed)) or user == "ok")
    assert await conn.validate_public_key("ok", b"k", b"msg", b"sig") is True
    assert await conn.validate_public_key("no", b"k", b"", b"") is False
    assert seen == [("hook", "ok", True), ("asyncssh", "ok"), ("hook", "no", False)]
