"""Parsing and verifying OpenSSH certificates: every refusal, plus certificates made by ssh-keygen."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ca.errors import CertificateRejected
from ca.ssh import SSHCertificateAuthority
from ca.sshcert import fingerprint, parse_certificate, verify_certificate
from tests.ca.sshkeys import blob, line_from_blob, private_openssh, user_keypair
from tests.support import require_binary

PASS = b"sshcert-test-passphrase"
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
CERT_TYPE = "ssh-ed25519-cert-v01@openssh.com"


@pytest.fixture
def ca(tmp_path: Path) -> SSHCertificateAuthority:
    return SSHCertificateAuthority.load_or_create(tmp_path / "ca", PASS, "jitgate-user-ca")


@pytest.fixture
def cert(ca: SSHCertificateAuthority) -> str:
    return ca.sign_user_certificate(
        user_keypair()[1], "grant-7f3a", ["root@web-01"], T0 - dt.timedelta(seconds=30),
        T0 + dt.timedelta(hours=1), 77, permit_pty=True, permit_port_forwarding=False,
        permit_agent_forwarding=False, force_command="true",
    )


def expect(code: str, *args: object, **kw: object) -> CertificateRejected:
    with pytest.raises(CertificateRejected) as e:
        verify_certificate(*args, **kw)  # type: ignore[arg-type]
    assert e.value.code == code, e.value.message
    return e.value


def test_parse_fields(ca: SSHCertificateAuthority, cert: str) -> None:
    info = parse_certificate(cert)
    assert info.cert_type == "user"
    assert info.key_id == "grant-7f3a" and info.serial == 77
    assert info.principals == ("root@web-01",)
    assert info.valid_after == T0 - dt.timedelta(seconds=30)
    assert info.valid_before == T0 + dt.timedelta(hours=1)
    assert info.extensions == {"permit-pty": ""}
    assert info.critical_options == {"force-command": "true"}
    assert info.signature_key_line.split() == ca.public_key_line().split()[:2]
    assert info.line == cert
    assert info.signature_key_fingerprint == fingerprint(ca.public_key_line())
    # Same result from bytes, with a trailing comment, and from the wire blob.
    assert parse_certificate((cert + " alice@laptop\n").encode()) == info
    assert parse_certificate(blob(cert)) == info


def test_verify_accepts_inside_window(ca: SSHCertificateAuthority, cert: str) -> None:
    info = verify_certificate(cert, [ca.public_key_line()], T0, principal="root@web-01")
    assert info.key_id == "grant-7f3a"
    # The window is [valid_after, valid_before): both edges.
    verify_certificate(cert, [ca.public_key_line()], T0 - dt.timedelta(seconds=30))
    verify_certificate(
        parse_certificate(cert), ca.trusted_public_key_lines(), T0 + dt.timedelta(minutes=59, seconds=59)
    )


def test_expired_and_not_yet_valid(ca: SSHCertificateAuthority, cert: str) -> None:
    trusted = [ca.public_key_line()]
    err = expect("cert.expired", cert, trusted, T0 + dt.timedelta(hours=1))
    assert "2026-11-21T13:00:00" in err.message
    expect("cert.not_yet_valid", cert, trusted, T0 - dt.timedelta(seconds=31))


def test_foreign_ca_is_untrusted(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    foreign = SSHCertificateAuthority.load_or_create(tmp_path / "foreign", PASS, "jitgate-user-ca")
    forged = foreign.sign_user_certificate(
        user_keypair()[1], "grant-7f3a", ["root@web-01"], T0, T0 + dt.timedelta(hours=1), 1, True, False, False
    )
    expect("cert.untrusted_ca", forged, [ca.public_key_line()], T0)
    expect("cert.untrusted_ca", forged, [], T0)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize("field", [b"grant-7f3a", b"root@web-01", b"permit-pty"])
def test_tampered_signed_bytes_fail_the_signature(ca: SSHCertificateAuthority, cert: str, field: bytes) -> None:
    raw = blob(cert)
    at = raw.index(field) + 2
    tampered = line_from_blob(CERT_TYPE, _flip(raw, at))
    assert parse_certificate(tampered) != parse_certificate(cert)  # still parses: only the signature can tell
    expect("cert.bad_signature", tampered, [ca.public_key_line()], T0)


def test_tampered_validity_and_signature_bytes(ca: SSHCertificateAuthority, cert: str) -> None:
    raw = blob(cert)
    # Push valid_before later: the 8-byte big-endian time sits right before the critical options.
    before = int((T0 + dt.timedelta(hours=1)).timestamp()).to_bytes(8, "big")
    later = int((T0 + dt.timedelta(days=30)).timestamp()).to_bytes(8, "big")
    extended = line_from_blob(CERT_TYPE, raw.replace(before, later))
    assert parse_certificate(extended).valid_before == T0 + dt.timedelta(days=30)
    expect("cert.bad_signature", extended, [ca.public_key_line()], T0)
    expect("cert.bad_signature", line_from_blob(CERT_TYPE, _flip(raw, len(raw) - 5)), [ca.public_key_line()], T0)


def test_claiming_a_trusted_signer_does_not_help(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    """A forger signs with their own key, then swaps in our CA's public key as the signer."""
    foreign = SSHCertificateAuthority.load_or_create(tmp_path / "foreign", PASS, "jitgate-user-ca")
    forged = foreign.sign_user_certificate(
        user_keypair()[1], "grant-x", ["root@web-01"], T0, T0 + dt.timedelta(hours=1), 1, True, False, False
    )
    swapped = blob(forged).replace(blob(foreign.public_key_line()), blob(ca.public_key_line()))
    assert swapped != blob(forged)
    expect("cert.bad_signature", line_from_blob(CERT_TYPE, swapped), [ca.public_key_line()], T0)


def _raw_cert(ca_key: ed25519.Ed25519PrivateKey, **kw: object) -> str:
    b = (
        serialization.SSHCertificateBuilder()
        .public_key(ed25519.Ed25519PrivateKey.generate().public_key())
        .serial(5)
        .type(kw.get("type", serialization.SSHCertificateType.USER))  # type: ignore[arg-type]
        .key_id(b"grant-raw")
        .valid_after(int(T0.timestamp()) - 10)
        .valid_before(int(T0.timestamp()) + 3600)
    )
    b = b.valid_principals(kw["principals"]) if kw.get("principals") else b.valid_for_all_principals()  # type: ignore[arg-type]
    for name, value in kw.get("critical", {}).items():  # type: ignore[union-attr]
        b = b.add_critical_option(name, value)
    return b.sign(ca_key).public_bytes().decode()


def test_host_cert_no_principals_and_unknown_critical_option_refused() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    trusted = [
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    ]
    host = _raw_cert(key, type=serialization.SSHCertificateType.HOST, principals=[b"web-01"])
    expect("cert.not_user_cert", host, trusted, T0)
    expect("cert.no_principals", _raw_cert(key), trusted, T0)
    src = _raw_cert(key, principals=[b"root"], critical={b"source-address": b"10.0.0.0/8"})
    err = expect("cert.unsupported_critical_option", src, trusted, T0)
    assert "source-address" in err.message
    assert verify_certificate(_raw_cert(key, principals=[b"root"]), trusted, T0).key_id == "grant-raw"


def test_principal_mismatch(ca: SSHCertificateAuthority, cert: str) -> None:
    err = expect("cert.principal_mismatch", cert, [ca.public_key_line()], T0, principal="root@db-01")
    assert "root@db-01" in err.message


@pytest.mark.parametrize("junk", ["", "garbage", "ssh-ed25519-cert-v01@openssh.com AAAA", b"\x00\x00\x00\x05ab"])
def test_malformed_input(junk: str | bytes, ca: SSHCertificateAuthority) -> None:
    with pytest.raises(CertificateRejected) as e:
        parse_certificate(junk)
    assert e.value.code == "cert.malformed"


def test_plain_public_key_is_not_a_certificate(ca: SSHCertificateAuthority) -> None:
    expect("cert.malformed", user_keypair()[1], [ca.public_key_line()], T0)


def test_certificate_made_by_ssh_keygen_verifies(tmp_path: Path) -> None:
    """Interop the other way: OpenSSH signs, we parse and verify."""
    keygen = require_binary("ssh-keygen")
    ca_key = ed25519.Ed25519PrivateKey.generate()
    ca_path = tmp_path / "ca_key"
    ca_path.write_bytes(private_openssh(ca_key))
    os.chmod(ca_path, 0o600)
    _user_key, user_line = user_keypair()
    (tmp_path / "id.pub").write_text(user_line + "\n")
    subprocess.run(
        [keygen, "-q", "-s", str(ca_path), "-I", "grant-kg", "-n", "root,deploy", "-z", "4242",
         "-V", "20261121115900:20261121130000", "-O", "clear", "-O", "permit-pty", str(tmp_path / "id.pub")],
        check=True, capture_output=True, timeout=10, env={**os.environ, "TZ": "UTC"},
    )
    line = (tmp_path / "id-cert.pub").read_text()
    trusted = [
        ca_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    ]
    info = verify_certificate(line, trusted, T0, principal="deploy")
    assert (info.key_id, info.serial, info.principals) == ("grant-kg", 4242, ("root", "deploy"))
    assert info.extensions == {"permit-pty": ""}
    assert info.valid_before == dt.datetime(2026, 11, 21, 13, 0, tzinfo=UTC)
    assert info.public_key_line.split()[1] == user_line.split()[1]


def test_asyncssh_reads_our_certificate_and_its_wire_blob_parses(ca: SSHCertificateAuthority, cert: str) -> None:
    """The broker's library sees the same fields; its `public_data` (wire blob) feeds parse_certificate."""
    import asyncssh

    theirs = asyncssh.import_certificate(cert)
    assert theirs.principals == ["root@web-01"]
    assert theirs.options == {"force-command": "true", "permit-pty": True}
    info = verify_certificate(theirs.public_data, [ca.public_key_line()], T0)
    assert info == parse_certificate(cert)
