"""jitgate's certificate authorities and their key storage.

- `ca.keystore`: encrypted private keys at rest (0600/0700), the CA passphrase.
- `ca.x509`: the X.509 CA for gRPC mTLS (server certificate, client identity bundles).
- `ca.ssh`: the SSH user CA and SSH upstream CA (signing, rotation, trusted keys).
- `ca.sshcert`: parsing and verifying OpenSSH user certificates.
"""
from __future__ import annotations

from ca.errors import CAError, CertificateRejected, IssueError, KeyStoreError
from ca.keystore import passphrase_from_env_or_dir
from ca.ssh import (
    UPSTREAM_CA_NAME,
    USER_CA_NAME,
    SSHCertificateAuthority,
    new_serial,
    sshd_trusted_ca_line,
)
from ca.sshcert import SSHCertInfo, fingerprint, parse_certificate, verify_certificate
from ca.x509 import (
    X509CA,
    CertBundle,
    IdentityBundle,
    peer_name_from_cert,
    read_identity_bundle,
    write_identity_bundle,
)

__all__ = [
    "UPSTREAM_CA_NAME",
    "USER_CA_NAME",
    "X509CA",
    "CAError",
    "CertBundle",
    "CertificateRejected",
    "IdentityBundle",
    "IssueError",
    "KeyStoreError",
    "SSHCertInfo",
    "SSHCertificateAuthority",
    "fingerprint",
    "new_serial",
    "parse_certificate",
    "passphrase_from_env_or_dir",
    "peer_name_from_cert",
    "read_identity_bundle",
    "sshd_trusted_ca_line",
    "verify_certificate",
    "write_identity_bundle",
]
