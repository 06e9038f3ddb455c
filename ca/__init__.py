"""jitgate's certificate authorities and their key storage.

- `ca.keystore`: encrypted private keys at rest (0600/0700), the CA passphrase.
- `ca.x509`: the X.509 CA for gRPC mTLS (server certificate, client identity bundles).
- `ca.ssh`: the SSH user CA and SSH upstream CA (signing, rotation, trusted keys).
- `ca.sshcert`: parsing and verifying OpenSSH user certificates.
"""
from __future__ import annotations

from ca.errors import CAError, CertificateRejected, IssueError, KeyStoreError
from ca.keystore import passphrase_from_env_or_dir
from ca.x509 import (
    X509CA,
    CertBundle,
    IdentityBundle,
    peer_name_from_cert,
    read_identity_bundle,
    write_identity_bundle,
)

__all__ = [
    "CAError",
    "CertBundle",
    "CertificateRejected",
    "IdentityBundle",
    "IssueError",
    "KeyStoreError",
    "X509CA",
    "passphrase_from_env_or_dir",
    "peer_name_from_cert",
    "read_identity_bundle",
    "write_identity_bundle",
]
