"""The broker's own connection to a target: ephemeral key, upstream certificate, pinned host key.

For each session the broker makes a fresh Ed25519 key, has the control plane
sign it with the SSH upstream CA (principal = the approved login), and logs in
to the target with that certificate. The target's host key must match the
resource's pinned `host_key` or be certified by its `host_ca`; with neither,
the connection is refused (never trust on first use).
"""
from __future__ import annotations

import asyncssh

from broker.cpclient import ControlPlaneClient, Target

# AES-GCM first: on x86 with AES-NI it relays far faster than chacha20-poly1305 (NOTES.md).
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                "aes128-ctr", "aes256-ctr")


class UpstreamError(Exception):
    """The target could not be reached or refused the broker; `message` is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def known_hosts_for(target: Target) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """asyncssh's (trusted host keys, trusted host CA keys, revoked keys) for a target."""
    try:
        keys = [asyncssh.import_public_key(line) for line in target.host_key.splitlines() if line.strip()]
        cas = [asyncssh.import_public_key(line) for line in target.host_ca.splitlines() if line.strip()]
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UpstreamError(f"target `{target.name}` has an unreadable host key: {exc}") from None
    if not keys and not cas:
        raise UpstreamError(f"target `{target.name}` has no pinned host_key or host_ca; refusing to connect")
    return keys, cas, []


async def connect_upstream(cp: ControlPlaneClient, session_id: str, target: Target, login: str,
                           connect_timeout: float = 10.0) -> asyncssh.SSHClientConnection:
    """Log in to `target` as `login` with a fresh upstream certificate for `session_id`."""
    known_hosts = known_hosts_for(target)
    key = asyncssh.generate_private_key("ssh-ed25519")
    cert_line, _ = await cp.issue_upstream_certificate(session_id, key.export_public_key().decode().strip())
    try:
        cert = asyncssh.import_certificate(cert_line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UpstreamError(f"the control plane returned an unreadable upstream certificate: {exc}") from None
    try:
        return await asyncssh.connect(
            target.host, target.port, username=login, client_keys=[(key, cert)], known_hosts=known_hosts,
            agent_path=None, agent_forwarding=False, x11_forwarding=False, config=[],
            preferred_auth=["publickey"], password=None, kbdint_auth=False, gss_auth=False,
            host_based_auth=False, encryption_algs=list(FAST_CIPHERS),
            connect_timeout=connect_timeout, keepalive_interval=30,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise UpstreamError(f"target `{target.name}` ({target.address}) presented a host key that does not "
                            "match its pinned key; refusing to connect") from None
    except asyncssh.PermissionDenied:
        raise UpstreamError(f"target `{target.name}` refused the broker's login as `{login}` "
                            "(does it trust the upstream CA?)") from None
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise UpstreamError(f"cannot reach target `{target.name}` ({target.address}): {exc}") from None
