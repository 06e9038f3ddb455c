"""Reading and checking OpenSSH certificates (what the SSH broker and tests use).

`parse_certificate` only decodes; `verify_certificate` checks, in this order,
that the certificate is signed by a trusted CA key, that the signature holds,
that it is a user certificate with only known critical options and at least
one principal, that `now` is inside its window, and optionally that it names a
given principal. Each failure is a `CertificateRejected` with a stable code:

| code | meaning |
| --- | --- |
| `cert.malformed` | not an OpenSSH certificate (or a plain key) |
| `cert.untrusted_ca` | signed by a key that is not in the trusted list |
| `cert.bad_signature` | the signed bytes were altered |
| `cert.not_user_cert` | a host certificate |
| `cert.unsupported_critical_option` | a critical option other than `force-command` |
| `cert.no_principals` | an empty principal list (never accepted) |
| `cert.not_yet_valid` / `cert.expired` | outside `[valid_after, valid_before)` |
| `cert.principal_mismatch` | the wanted principal is not listed |
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ca.errors import CertificateRejected

_UTC = dt.UTC
# Critical options jitgate understands; OpenSSH refuses a certificate with any unknown one.
# `source-address` is refused too: nothing in jitgate enforces it, so accepting it would fail open.
KNOWN_CRITICAL_OPTIONS = frozenset({"force-command"})


@dataclass(frozen=True)
class SSHCertInfo:
    """The decoded fields of an OpenSSH certificate. Times are UTC-aware datetimes."""

    cert_type: str  # "user" or "host"
    key_id: str
    serial: int
    principals: tuple[str, ...]
    valid_after: dt.datetime
    valid_before: dt.datetime  # datetime.max (UTC) for OpenSSH's "forever"
    extensions: dict[str, str] = field(hash=False)
    critical_options: dict[str, str] = field(hash=False)
    signature_key_line: str  # the signing CA's key, `type base64` (no comment)
    public_key_line: str  # the certified key, `type base64`
    line: str  # the certificate itself, `type base64`

    @property
    def public_key_fingerprint(self) -> str:
        """`SHA256:...` of the certified key, as `ssh-keygen -l` prints it."""
        return fingerprint(self.public_key_line)

    @property
    def signature_key_fingerprint(self) -> str:
        """`SHA256:...` of the signing CA key."""
        return fingerprint(self.signature_key_line)


def fingerprint(key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line (`type base64 [comment]`)."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _as_line(data: str | bytes) -> bytes:
    """Accept a certificate line (str or bytes) or the raw wire blob; return `type base64`."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > 4 and raw[:1] == b"\x00":
        # Wire blob, as SSH carries it (and asyncssh's `public_data`): string type || rest.
        (n,) = struct.unpack(">I", raw[:4])
        if 0 < n < 128 and len(raw) >= 4 + n:
            return raw[4 : 4 + n] + b" " + base64.b64encode(raw)
        raise CertificateRejected("cert.malformed", "not an OpenSSH certificate")
    parts = raw.strip().split()
    if len(parts) < 2:
        raise CertificateRejected("cert.malformed", "not an OpenSSH certificate line")
    return parts[0] + b" " + parts[1]


def _time(value: int) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(value, _UTC)
    except (OverflowError, OSError, ValueError):
        return dt.datetime.max.replace(tzinfo=_UTC)


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise CertificateRejected("cert.malformed", f"certificate {what} is not UTF-8") from None


def _key_line(key: object) -> str:
    line: bytes = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line.decode()


def _load(data: str | bytes) -> tuple[serialization.SSHCertificate, str]:
    line = _as_line(data)
    try:
        cert = serialization.load_ssh_public_identity(line)
    except (ValueError, UnsupportedAlgorithm, binascii.Error) as e:
        raise CertificateRejected("cert.malformed", f"not a valid OpenSSH certificate: {e}") from None
    if not isinstance(cert, serialization.SSHCertificate):
        raise CertificateRejected("cert.malformed", "a plain public key, not a certificate")
    return cert, line.decode()


def _info(cert: serialization.SSHCertificate, line: str) -> SSHCertInfo:
    user = cert.type == serialization.SSHCertificateType.USER
    return SSHCertInfo(
        cert_type="user" if user else "host",
        key_id=_text(cert.key_id, "key id"),
        serial=cert.serial,
        principals=tuple(_text(p, "principal") for p in cert.valid_principals),
        valid_after=_time(cert.valid_after),
        valid_before=_time(cert.valid_before),
        extensions={_text(k, "extension"): _text(v, "extension") for k, v in cert.extensions.items()},
        critical_options={
            _text(k, "critical option"): _text(v, "critical option") for k, v in cert.critical_options.items()
        },
        signature_key_line=_key_line(cert.signature_key()),
        public_key_line=_key_line(cert.public_key()),
        line=line,
    )


def parse_certificate(line_or_bytes: str | bytes) -> SSHCertInfo:
    """Decode an OpenSSH certificate (line or wire blob) without checking it."""
    cert, line = _load(line_or_bytes)
    return _info(cert, line)


def _key_blob(line: str) -> bytes:
    parts = line.split()
    if len(parts) < 2:
        raise CertificateRejected("cert.bad_trusted_key", f"trusted CA key line {line!r} is not `type base64`")
    try:
        return base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise CertificateRejected("cert.bad_trusted_key", f"trusted CA key line {line!r} is not base64") from None


def verify_certificate(
    cert: str | bytes | SSHCertInfo,
    trusted_ca_lines: Iterable[str],
    now: dt.datetime | None = None,
    principal: str | None = None,
) -> SSHCertInfo:
    """Check an OpenSSH user certificate against trusted CA key lines at `now`; return its fields.

    Raises `CertificateRejected` with the codes in this module's doc.
    """
    parsed, line = _load(cert.line if isinstance(cert, SSHCertInfo) else cert)
    info = _info(parsed, line)
    trusted = {_key_blob(t) for t in trusted_ca_lines}
    if _key_blob(info.signature_key_line) not in trusted:
        raise CertificateRejected(
            "cert.untrusted_ca", f"certificate is signed by an untrusted CA ({info.signature_key_fingerprint})"
        )
    try:
        parsed.verify_cert_signature()
    except (InvalidSignature, UnsupportedAlgorithm):
        raise CertificateRejected(
            "cert.bad_signature", "certificate signature is invalid (altered certificate)"
        ) from None
    if info.cert_type != "user":
        raise CertificateRejected("cert.not_user_cert", "a host certificate cannot be used to log in")
    unknown = sorted(set(info.critical_options) - KNOWN_CRITICAL_OPTIONS)
    if unknown:
        raise CertificateRejected(
            "cert.unsupported_critical_option", f"certificate has unsupported critical option `{unknown[0]}`"
        )
    if not info.principals:
        raise CertificateRejected("cert.no_principals", "certificate lists no principals")
    now = now or dt.datetime.now(_UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if now < info.valid_after:
        raise CertificateRejected(
            "cert.not_yet_valid", f"certificate is not valid before {info.valid_after.isoformat()}"
        )
    if now >= info.valid_before:
        raise CertificateRejected("cert.expired", f"certificate expired at {info.valid_before.isoformat()}")
    if principal is not None and principal not in info.principals:
        raise CertificateRejected(
            "cert.principal_mismatch",
            f"certificate is not valid for `{principal}` (it names {', '.join(info.principals)})",
        )
    return info


__all__ = [
    "KNOWN_CRITICAL_OPTIONS",
    "SSHCertInfo",
    "fingerprint",
    "parse_certificate",
    "verify_certificate",
]
