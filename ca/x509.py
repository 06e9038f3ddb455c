"""The X.509 CA that makes gRPC's mTLS identities: the server certificate and client bundles.

Keys are ECDSA P-256: every TLS stack gRPC links (BoringSSL in grpcio) accepts
it for both server and client authentication; Ed25519 certificates are not
universally accepted in TLS 1.2/1.3 client auth.

Layout of a CA directory (0700): `x509-ca.key` (encrypted PKCS#8, 0600) and
`x509-ca.pem` (the self-signed CA certificate, public).

An identity bundle is a directory (0700) holding `ca.pem`, `cert.pem` and
`key.pem`. `key.pem` is NOT encrypted: grpcio's `ssl_channel_credentials` and
`ssl_server_credentials` take only a plain PEM key, so the key's protection is
the file mode (0600) and the directory (0700), as with `~/.ssh/id_ed25519`
without a passphrase. Certificates are short-lived by default for that reason.
A server's key is stored encrypted (`write_server_certificate`) and decrypted in
memory when it is loaded (`read_server_key`).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.errors import IssueError, KeyStoreError
from ca.keystore import (
    check_private_mode,
    ensure_private_dir,
    load_private_key,
    read_private_file,
    save_private_key,
    write_private_file,
)

CA_KEY_FILE = "x509-ca.key"
CA_CERT_FILE = "x509-ca.pem"
BUNDLE_CA_FILE = "ca.pem"
BUNDLE_CERT_FILE = "cert.pem"
BUNDLE_KEY_FILE = "key.pem"

CA_VALIDITY_DAYS = 3650
SERVER_CERT_DAYS = 365
CLIENT_CERT_DAYS = 90
# Backdate notBefore a little so peers with a slightly slow clock accept a fresh certificate.
CLOCK_SKEW = dt.timedelta(minutes=5)
# X.520 upper bound for a commonName.
_MAX_CN_LENGTH = 64


@dataclass(frozen=True)
class CertBundle:
    """A certificate and its private key, both PEM; the key is unencrypted (see module doc)."""

    cert_pem: bytes
    key_pem: bytes


class IdentityBundle(NamedTuple):
    """What `read_identity_bundle` returns; unpacks as `(ca_pem, cert_pem, key_pem)`."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem_plain(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_name(name: str) -> str:
    if not name or not name.strip() or name != name.strip():
        raise IssueError("x509.bad_name", f"identity name `{name}` must be non-empty without surrounding spaces")
    if len(name) > _MAX_CN_LENGTH:
        raise IssueError("x509.bad_name", f"identity name `{name}` is longer than {_MAX_CN_LENGTH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise IssueError("x509.bad_name", f"identity name {name!r} contains control characters")
    return name


def _check_days(days: int) -> int:
    if days < 1:
        raise IssueError("x509.bad_validity", f"validity must be at least 1 day, got {days}")
    return days


class X509CA:
    """A self-signed ECDSA P-256 CA that issues server and client certificates for mTLS."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self._cert = cert

    @classmethod
    def load_or_create(
        cls, directory: Path, passphrase: bytes, common_name: str = "jitgate CA", now: dt.datetime | None = None
    ) -> X509CA:
        """Load the CA from `directory`, creating it (0700 dir, encrypted key 0600) on first use."""
        directory = ensure_private_dir(Path(directory))
        key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
        if key_path.exists() or cert_path.exists():
            return cls._load(key_path, cert_path, passphrase)
        now = now or _utcnow()
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _check_name(common_name))])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        # Key first: a crash between the two writes leaves a key without a cert,
        # which _load reports instead of silently making a second CA.
        save_private_key(key_path, key, passphrase)
        write_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert)

    @classmethod
    def _load(cls, key_path: Path, cert_path: Path, passphrase: bytes) -> X509CA:
        for path in (key_path, cert_path):
            if not path.exists():
                raise KeyStoreError(
                    "ca.incomplete", f"X.509 CA in `{path.parent}` is incomplete: `{path.name}` is missing"
                )
        key = load_private_key(key_path, passphrase)
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError:
            raise KeyStoreError("ca.key_corrupt", f"`{cert_path}` is not a PEM certificate") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise KeyStoreError(
                "ca.key_mismatch", f"`{key_path}` does not belong to the certificate `{cert_path}`"
            )
        return cls(key, cert)

    @property
    def ca_cert_pem(self) -> bytes:
        """The CA certificate (PEM) that servers and clients trust."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate object."""
        return self._cert

    def issue_server_certificate(
        self, hostnames: list[str], ips: list[str], days: int = SERVER_CERT_DAYS, now: dt.datetime | None = None
    ) -> CertBundle:
        """A serverAuth certificate whose SANs are `hostnames` + localhost and `ips` + 127.0.0.1, ::1."""
        dns = list(dict.fromkeys([*hostnames, "localhost"]))
        try:
            addrs = list(dict.fromkeys(ipaddress.ip_address(ip) for ip in [*ips, "127.0.0.1", "::1"]))
        except ValueError as e:
            raise IssueError("x509.bad_ip", str(e)) from None
        for host in dns:
            if not host or any(c.isspace() for c in host):
                raise IssueError("x509.bad_hostname", f"bad host name `{host}`")
        san = x509.SubjectAlternativeName(
            [*(x509.DNSName(h) for h in dns), *(x509.IPAddress(a) for a in addrs)]
        )
        return self._issue(
            common_name=_check_name(dns[0]), san=san, eku=ExtendedKeyUsageOID.SERVER_AUTH,
            days=days, now=now,
        )

    def issue_client_certificate(
        self, name: str, days: int = CLIENT_CERT_DAYS, now: dt.datetime | None = None
    ) -> CertBundle:
        """A clientAuth certificate with subject CN = `name` (the identity), random serial."""
        return self._issue(
            common_name=_check_name(name), san=None, eku=ExtendedKeyUsageOID.CLIENT_AUTH, days=days, now=now
        )

    def issue_client_certificate_for(
        self, name: str, public_key: CertificatePublicKeyTypes, lifetime: dt.timedelta, unit: str,
        now: dt.datetime | None = None,
    ) -> bytes:
        """A clientAuth certificate (PEM) for a key the client keeps (a CSR's), CN = `name`,
        OU = `unit` (how the identity was obtained, e.g. `oidc`), valid for `lifetime`."""
        if not dt.timedelta(minutes=1) <= lifetime <= dt.timedelta(days=CLIENT_CERT_DAYS):
            raise IssueError("x509.bad_validity", "a signed-in certificate's lifetime must be between 1 minute "
                             f"and {CLIENT_CERT_DAYS} days")
        cert = self._build(_check_name(name), None, ExtendedKeyUsageOID.CLIENT_AUTH, lifetime, now or _utcnow(),
                           public_key, unit)
        return cert.public_bytes(serialization.Encoding.PEM)

    def _issue(
        self,
        common_name: str,
        san: x509.SubjectAlternativeName | None,
        eku: x509.ObjectIdentifier,
        days: int,
        now: dt.datetime | None,
    ) -> CertBundle:
        key = _new_key()
        cert = self._build(common_name, san, eku, dt.timedelta(days=_check_days(days)), now or _utcnow(),
                           key.public_key(), "")
        return CertBundle(cert.public_bytes(serialization.Encoding.PEM), _key_pem_plain(key))

    def _build(
        self, common_name: str, san: x509.SubjectAlternativeName | None, eku: x509.ObjectIdentifier,
        lifetime: dt.timedelta, now: dt.datetime, public_key: CertificatePublicKeyTypes, unit: str,
    ) -> x509.Certificate:
        not_after = min(now + lifetime, self._cert.not_valid_after_utc)
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if unit:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def verify_issued(self, cert_pem_or_der: bytes, now: dt.datetime | None = None) -> str:
        """Check a certificate was issued by this CA and is within its window; return its CN.

        gRPC's TLS stack already does this for connections; this is for files
        and tests. Raises `CAError` with `x509.untrusted` or `x509.expired`.
        """
        return verify_issued_by(cert_pem_or_der, self._cert.public_bytes(serialization.Encoding.PEM), now)


def verify_issued_by(cert_pem_or_der: bytes, ca_cert_pem: bytes, now: dt.datetime | None = None) -> str:
    """Check a certificate was issued by the CA certificate `ca_cert_pem` and is within its
    window; return its CN. Raises `CAError` with `x509.untrusted` or `x509.expired` (the
    message gives the window), `x509.malformed` for a file that is no certificate."""
    cert, ca_cert = _load_cert(cert_pem_or_der), _load_cert(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise IssueError("x509.untrusted", "certificate was not issued by this CA") from None
    now = now or _utcnow()
    if not (cert.not_valid_before_utc <= now < cert.not_valid_after_utc):
        raise IssueError("x509.expired", "certificate is outside its validity window "
                                         f"({_utc_text(cert.not_valid_before_utc)} to "
                                         f"{_utc_text(cert.not_valid_after_utc)})")
    return peer_name_from_cert(cert.public_bytes(serialization.Encoding.DER))


def _utc_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_cert(data: bytes | str) -> x509.Certificate:
    raw = data.encode() if isinstance(data, str) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError:
        raise IssueError("x509.malformed", "not a PEM or DER X.509 certificate") from None


def peer_name_from_cert(der_or_pem: bytes | str) -> str:
    """The identity in a peer certificate: its subject CN (PEM or DER input).

    With gRPC: `context.auth_context()["x509_pem_cert"][0]`.
    """
    cert = _load_cert(der_or_pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or not isinstance(cns[0].value, str) or not cns[0].value:
        raise IssueError("x509.no_identity", "certificate subject has no single common name")
    return cns[0].value


def write_identity_bundle(bundle: CertBundle, ca_cert_pem: bytes, out_dir: Path) -> Path:
    """Write `ca.pem`, `cert.pem`, `key.pem` (0600, plain: grpc needs it so) into `out_dir` (0700)."""
    out_dir = ensure_private_dir(Path(out_dir))
    write_private_file(out_dir / BUNDLE_CA_FILE, ca_cert_pem)
    write_private_file(out_dir / BUNDLE_CERT_FILE, bundle.cert_pem)
    write_private_file(out_dir / BUNDLE_KEY_FILE, bundle.key_pem)
    return out_dir


def write_server_certificate(directory: Path, bundle: CertBundle, passphrase: bytes) -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` (encrypted with `passphrase`, 0600) into `directory` (0700)."""
    directory = ensure_private_dir(Path(directory))
    cert_path, key_path = directory / BUNDLE_CERT_FILE, directory / BUNDLE_KEY_FILE
    save_private_key(key_path, serialization.load_pem_private_key(bundle.key_pem, password=None), passphrase)
    write_private_file(cert_path, bundle.cert_pem)
    return cert_path, key_path


def read_server_key(path: Path, passphrase: bytes) -> bytes:
    """A key written by `write_server_certificate`, as plain PEM for the TLS stack (in memory only).

    KeyStoreError `ca.key_not_encrypted` for a key stored in clear, as earlier versions did.
    """
    return _key_pem_plain(load_private_key(Path(path), passphrase))  # type: ignore[arg-type]


def read_identity_bundle(directory: Path) -> IdentityBundle:
    """Read a bundle written by `write_identity_bundle`; refuses a key or dir others can access."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyStoreError("ca.key_missing", f"identity directory `{directory}` does not exist")
    check_private_mode(directory, what="identity directory")
    for name in (BUNDLE_CA_FILE, BUNDLE_CERT_FILE, BUNDLE_KEY_FILE):
        if not (directory / name).exists():
            raise KeyStoreError("ca.key_missing", f"identity directory `{directory}` has no `{name}`")
    key = read_private_file(directory / BUNDLE_KEY_FILE, what="identity key")
    return IdentityBundle(
        (directory / BUNDLE_CA_FILE).read_bytes(), (directory / BUNDLE_CERT_FILE).read_bytes(), key
    )


__all__ = [
    "X509CA",
    "CertBundle",
    "IdentityBundle",
    "peer_name_from_cert",
    "read_identity_bundle",
    "verify_issued_by",
    "write_identity_bundle",
]
