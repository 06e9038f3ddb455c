"""Errors raised by the certificate authorities, each with a stable code.

Codes are lowercase and dotted (`ca.key_permissions`, `cert.expired`) so the
control plane and brokers can map them to gRPC statuses or SSH messages
without parsing the text (`jitgate.errors` has the base and the table).
"""
from __future__ import annotations

from jitgate.errors import JitgateError


class CAError(JitgateError):
    """Base of every error raised by `ca/`: a stable `code` and a plain `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


class KeyStoreError(CAError):
    """A key, passphrase or CA directory cannot be used (permissions, passphrase, corruption)."""


class CertificateRejected(CAError):
    """An SSH certificate failed parsing or verification; `code` says which check (`cert.*`)."""


class IssueError(CAError):
    """A certificate could not be issued because the request to sign it is invalid."""
