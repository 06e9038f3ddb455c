"""Who is calling: the data directory's PKI, identity bundles, and the caller of an RPC.

The data directory (0700) holds:

    ca/             X.509 CA (mTLS), SSH user CA, SSH upstream CA, their passphrase
    server/         the server's certificate and key (cert.pem, key.pem: encrypted
                    with the CA passphrase, decrypted in memory for gRPC)
    jitgate.db      the store (SQLite, WAL)
    server.lock     held by the running server (one server per data directory)
    server.addr     the address the running server listens on

The identity of a caller is the CN of its client certificate, which the TLS
layer has already checked against our CA; its roles come from the policies and
the server config (`Ledger.roles_of`), never from the client.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ca.errors import KeyStoreError
from ca.keystore import ensure_private_dir, passphrase_at_start, passphrase_from_env_or_dir
from ca.ssh import UPSTREAM_CA_NAME, USER_CA_NAME, SSHCertificateAuthority
from ca.x509 import X509CA, peer_name_from_cert, read_server_key, write_identity_bundle, write_server_certificate

CA_DIR = "ca"
SERVER_DIR = "server"
DB_FILE = "jitgate.db"
LOCK_FILE = "server.lock"
ADDR_FILE = "server.addr"
# Reissue the server certificate when it has less than this left.
_SERVER_CERT_RENEW = dt.timedelta(days=30)


@dataclass(frozen=True)
class DataDir:
    """Paths inside one data directory."""

    root: Path

    @property
    def ca_dir(self) -> Path:
        return self.root / CA_DIR

    @property
    def server_dir(self) -> Path:
        return self.root / SERVER_DIR

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILE

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def addr_path(self) -> Path:
        return self.root / ADDR_FILE


@dataclass(frozen=True)
class ServerPki:
    """The CAs and the server's TLS material, loaded (or created on first start)."""

    x509_ca: X509CA
    server_cert_pem: bytes
    server_key_pem: bytes
    ssh_user_ca: SSHCertificateAuthority
    ssh_upstream_ca: SSHCertificateAuthority

    @property
    def ca_pem(self) -> bytes:
        return self.x509_ca.ca_cert_pem


def open_x509_ca(data_dir: DataDir, passphrase: bytes | None = None) -> X509CA:
    """The X.509 CA of a data directory, created (0700, encrypted key) on first use."""
    ensure_private_dir(data_dir.root)
    passphrase = passphrase or passphrase_from_env_or_dir(data_dir.ca_dir)
    return X509CA.load_or_create(data_dir.ca_dir, passphrase)


def open_ssh_cas(data_dir: DataDir, passphrase: bytes | None = None
                 ) -> tuple[SSHCertificateAuthority, SSHCertificateAuthority]:
    """(SSH user CA, SSH upstream CA), created on first use in `ca/ssh/`."""
    passphrase = passphrase or passphrase_from_env_or_dir(data_dir.ca_dir)
    ssh_dir = data_dir.ca_dir / "ssh"
    user = SSHCertificateAuthority.load_or_create(ssh_dir, passphrase, name=USER_CA_NAME)
    upstream = SSHCertificateAuthority.load_or_create(ssh_dir, passphrase, name=UPSTREAM_CA_NAME)
    return user, upstream


def _server_cert_fits(cert_path: Path, ca: X509CA, names: list[str], ips: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca.certificate)
    except Exception:  # any unreadable or foreign certificate is simply reissued
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < _SERVER_CERT_RENEW:
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return set(names) <= have_dns and {str(ipaddress.ip_address(i)) for i in ips} <= have_ips


def init_pki(
    data_dir: DataDir, server_names: list[str] | None = None, server_ips: list[str] | None = None
) -> ServerPki:
    """Load the CAs and the server certificate, creating what is missing (first start)."""
    names = list(server_names or [])
    ips = list(server_ips or [])
    passphrase = passphrase_at_start(data_dir.ca_dir)  # once: a command runs once, a warning is logged once
    ca = open_x509_ca(data_dir, passphrase)
    server_dir = ensure_private_dir(data_dir.server_dir)
    cert_path, key_path = server_dir / "cert.pem", server_dir / "key.pem"
    key_pem = _server_key(key_path, passphrase)
    if key_pem is None or not _server_cert_fits(cert_path, ca, names, ips):
        bundle = ca.issue_server_certificate(names, ips)
        write_server_certificate(server_dir, bundle, passphrase)
        key_pem = bundle.key_pem
    user_ca, upstream_ca = open_ssh_cas(data_dir, passphrase)
    return ServerPki(ca, cert_path.read_bytes(), key_pem, user_ca, upstream_ca)


def _server_key(path: Path, passphrase: bytes) -> bytes | None:
    """The server key in plain PEM (memory only); None when there is none yet or an earlier
    version stored it in clear (then a new key and certificate are made)."""
    if not path.exists():
        return None
    try:
        return read_server_key(path, passphrase)
    except KeyStoreError as exc:
        if exc.code == "ca.key_not_encrypted":
            return None
        raise


def issue_identity_bundle(ca: X509CA, name: str, out_dir: Path, days: int = 90) -> Path:
    """Write a client bundle (ca.pem, cert.pem, key.pem) for identity `name` into `out_dir`."""
    bundle = ca.issue_client_certificate(name, days=days)
    return write_identity_bundle(bundle, ca.ca_cert_pem, Path(out_dir))


def caller_name(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The CN of the verified client certificate in a gRPC auth context, or None."""
    names = list(auth_context.get("x509_common_name") or [])
    if len(names) == 1 and names[0]:
        return names[0].decode("utf-8", "replace")
    pems = list(auth_context.get("x509_pem_cert") or [])
    if pems:
        try:
            return peer_name_from_cert(pems[0])
        except Exception:
            return None
    return None


def write_server_addr(data_dir: DataDir, address: str) -> None:
    """Record where the running server listens (for tools and the test harness)."""
    tmp = data_dir.addr_path.with_suffix(".tmp")
    tmp.write_text(address + "\n")
    os.replace(tmp, data_dir.addr_path)
