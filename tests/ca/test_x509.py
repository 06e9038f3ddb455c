"""X.509 CA: certificates' content, identity bundles, and real gRPC mTLS on loopback."""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.errors import CAError, KeyStoreError
from ca.x509 import (
    X509CA,
    CertBundle,
    peer_name_from_cert,
    read_identity_bundle,
    read_server_key,
    write_identity_bundle,
    write_server_certificate,
)

PASS = b"x509-test-passphrase"
UTC = dt.UTC


@pytest.fixture
def ca(tmp_path: Path) -> X509CA:
    return X509CA.load_or_create(tmp_path / "ca", PASS)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_ca_created_encrypted_and_reloaded(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    first = X509CA.load_or_create(d, PASS)
    assert mode(d) == 0o700 and mode(d / "x509-ca.key") == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (d / "x509-ca.key").read_bytes()
    again = X509CA.load_or_create(d, PASS)
    assert again.ca_cert_pem == first.ca_cert_pem
    cert = x509.load_pem_x509_certificate(first.ca_cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    with pytest.raises(KeyStoreError) as e:
        X509CA.load_or_create(d, b"wrong")
    assert e.value.code == "ca.bad_passphrase"
    os.chmod(d / "x509-ca.key", 0o644)
    with pytest.raises(KeyStoreError) as e:
        X509CA.load_or_create(d, PASS)
    assert e.value.code == "ca.key_permissions"


def test_incomplete_ca_is_refused_not_replaced(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    X509CA.load_or_create(d, PASS)
    (d / "x509-ca.pem").unlink()
    with pytest.raises(KeyStoreError) as e:
        X509CA.load_or_create(d, PASS)
    assert e.value.code == "ca.incomplete"


def test_server_certificate_sans_and_eku(ca: X509CA) -> None:
    b = ca.issue_server_certificate(["cp.example.internal"], ["10.0.0.7"], days=30)
    cert = x509.load_pem_x509_certificate(b.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cp.example.internal", "localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=30) <= life <= dt.timedelta(days=30, minutes=10)
    assert ca.verify_issued(b.cert_pem) == "cp.example.internal"


def test_client_certificate_identity(ca: X509CA) -> None:
    a = ca.issue_client_certificate("alice")
    b = ca.issue_client_certificate("alice")
    ca_a = x509.load_pem_x509_certificate(a.cert_pem)
    assert ca_a.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert list(ca_a.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert ca_a.serial_number != x509.load_pem_x509_certificate(b.cert_pem).serial_number
    assert peer_name_from_cert(a.cert_pem) == "alice"
    assert peer_name_from_cert(ca_a.public_bytes(serialization.Encoding.DER)) == "alice"
    assert b"ENCRYPTED" not in a.key_pem  # grpc needs the plain key


@pytest.mark.parametrize("bad", ["", " alice", "a\nb", "x" * 65])
def test_bad_identity_names_refused(ca: X509CA, bad: str) -> None:
    with pytest.raises(CAError) as e:
        ca.issue_client_certificate(bad)
    assert e.value.code == "x509.bad_name"


def test_verify_issued_refuses_foreign_and_expired(ca: X509CA, tmp_path: Path) -> None:
    other = X509CA.load_or_create(tmp_path / "other", PASS)
    with pytest.raises(CAError) as e:
        ca.verify_issued(other.issue_client_certificate("mallory").cert_pem)
    assert e.value.code == "x509.untrusted"
    old = ca.issue_client_certificate("old", days=1, now=dt.datetime.now(UTC) - dt.timedelta(days=3))
    with pytest.raises(CAError) as e:
        ca.verify_issued(old.cert_pem)
    assert e.value.code == "x509.expired"


def test_identity_bundle_round_trip_and_modes(ca: X509CA, tmp_path: Path) -> None:
    out = tmp_path / "ids" / "alice"
    bundle = ca.issue_client_certificate("alice")
    write_identity_bundle(bundle, ca.ca_cert_pem, out)
    assert mode(out) == 0o700 and mode(out / "key.pem") == 0o600
    ca_pem, cert_pem, key_pem = read_identity_bundle(out)
    assert (ca_pem, cert_pem, key_pem) == (ca.ca_cert_pem, bundle.cert_pem, bundle.key_pem)
    os.chmod(out / "key.pem", 0o644)
    with pytest.raises(KeyStoreError) as e:
        read_identity_bundle(out)
    assert e.value.code == "ca.key_permissions"
    with pytest.raises(KeyStoreError) as e:
        read_identity_bundle(tmp_path / "nope")
    assert e.value.code == "ca.key_missing"


# --- real gRPC over mTLS on loopback -------------------------------------------------

def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    pem = context.auth_context()["x509_pem_cert"][0]
    return peer_name_from_cert(pem).encode()


@pytest.fixture
def mtls_server(ca: X509CA) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Who", {"AmI": grpc.unary_unary_rpc_method_handler(_whoami)})]
    )
    sb = ca.issue_server_certificate(["jitgate-cp"], [])
    creds = grpc.ssl_server_credentials(
        [(sb.key_pem, sb.cert_pem)], root_certificates=ca.ca_cert_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    yield port
    server.stop(None)


def _call(port: int, ca_pem: bytes, client: CertBundle | None, host: str = "localhost") -> bytes:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None,
    )
    # Always dial 127.0.0.1; the name the server certificate must match is `host`.
    options = [("grpc.ssl_target_name_override", host)]
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as ch:
        return ch.unary_unary("/test.Who/AmI")(b"", timeout=5)


def test_server_key_is_stored_encrypted_and_read_back_plain(ca: X509CA, tmp_path: Path) -> None:
    bundle = ca.issue_server_certificate(["localhost"], [])
    cert_path, key_path = write_server_certificate(tmp_path / "tls", bundle, b"server passphrase")
    assert mode(tmp_path / "tls") == 0o700 and mode(key_path) == 0o600
    assert cert_path.read_bytes() == bundle.cert_pem
    stored = key_path.read_bytes()
    assert stored.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") and bundle.key_pem not in stored
    plain = read_server_key(key_path, b"server passphrase")
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert (serialization.load_pem_private_key(plain, None).public_key().public_bytes(*raw)
            == x509.load_pem_x509_certificate(bundle.cert_pem).public_key().public_bytes(*raw))
    with pytest.raises(KeyStoreError) as wrong:
        read_server_key(key_path, b"another passphrase")
    assert wrong.value.code == "ca.bad_passphrase"
    key_path.write_bytes(bundle.key_pem)  # in clear, as earlier versions stored it
    with pytest.raises(KeyStoreError) as clear:
        read_server_key(key_path, b"server passphrase")
    assert clear.value.code == "ca.key_not_encrypted"


def test_grpc_mtls_accepts_issued_client_and_names_it(ca: X509CA, mtls_server: int) -> None:
    bob = ca.issue_client_certificate("bob")
    assert _call(mtls_server, ca.ca_cert_pem, bob) == b"bob"
    assert _call(mtls_server, ca.ca_cert_pem, bob, host="127.0.0.1") == b"bob"


def test_grpc_mtls_refuses_foreign_missing_and_expired_clients(
    ca: X509CA, mtls_server: int, tmp_path: Path
) -> None:
    foreign = X509CA.load_or_create(tmp_path / "foreign", PASS).issue_client_certificate("bob")
    expired = ca.issue_client_certificate("bob", days=1, now=dt.datetime.now(UTC) - dt.timedelta(days=3))
    for client in (foreign, None, expired):
        with pytest.raises(grpc.RpcError) as e:
            _call(mtls_server, ca.ca_cert_pem, client)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_client_refuses_server_of_foreign_ca(ca: X509CA, mtls_server: int, tmp_path: Path) -> None:
    foreign = X509CA.load_or_create(tmp_path / "foreign", PASS)
    with pytest.raises(grpc.RpcError) as e:
        _call(mtls_server, foreign.ca_cert_pem, ca.issue_client_certificate("bob"))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
