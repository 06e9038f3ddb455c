"""The public names of `ca` are exactly the ones other parts import."""
from __future__ import annotations

import ca


def test_public_names() -> None:
    assert sorted(ca.__all__) == sorted(
        [
            "CAError", "CertBundle", "CertificateRejected", "IdentityBundle", "IssueError", "KeyStoreError",
            "SSHCertInfo", "SSHCertificateAuthority", "UPSTREAM_CA_NAME", "USER_CA_NAME", "X509CA",
            "fingerprint", "new_serial", "parse_certificate", "passphrase_from_env_or_dir",
            "peer_name_from_cert", "read_identity_bundle", "sshd_trusted_ca_line", "verify_certificate",
            "write_identity_bundle",
        ]
    )
    for name in ca.__all__:
        assert getattr(ca, name) is not None, name
