"""Who may log in to the SSH broker: the user name convention and the certificate checks.

User name: `LOGIN@RESOURCE` (e.g. `ssh -p 2222 root@web-01@broker`); OpenSSH
passes a user name containing `@` through intact to ssh, scp, sftp and
`rsync -e ssh`. The last `@` separates login from resource, since resource
names never contain one.

asyncssh checks a certificate's CA, principal and window itself but keeps
the certificate away from server code. `install_certificate_hook` is the one
small, pinned place that wraps the connection's `validate_public_key(username,
key_data, msg, signature)` (asyncssh 2.14-2.x, see tests/broker/ssh/test_auth.py)
to see the raw key blob the client presented. The broker checks that blob with
`ca.verify_certificate` (its own rules and codes) before asyncssh's check, and
only a signed, accepted attempt yields the credential.
"""
from __future__ import annotations

import datetime as dt
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from broker.refusals import clip
from ca import CertificateRejected, SSHCertInfo, verify_certificate

# Logins and resource names as POLICY.md allows them: no spaces, no control characters.
_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.+-]{0,63}")
# Characters of a refused user name quoted back (it is the client's choice, of any length).
_QUOTED_NAME = 2 * 64 + 1


@dataclass(frozen=True)
class Target:
    """What the SSH user name asks for."""

    login: str
    resource: str

    @property
    def principal(self) -> str:
        return f"{self.login}@{self.resource}"


class Refusal(Exception):
    """A login the broker refuses itself: stable `code`, and the line the user sees."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_user_name(username: str) -> Target:
    """`LOGIN@RESOURCE` -> Target, or Refusal("user.malformed")."""
    login, sep, resource = username.rpartition("@")
    if not sep or not _NAME.fullmatch(login) or not _NAME.fullmatch(resource):
        raise Refusal("user.malformed", f"user name `{clip(username, _QUOTED_NAME)}` must be LOGIN@RESOURCE, "
                      "e.g. `ssh -p 2222 root@web-01@broker`")
    return Target(login=login, resource=resource)


_HINTS = {
    "cert.expired": "run `jitgate ssh {resource}` to get a fresh certificate (or ask for access again)",
    "cert.untrusted_ca": "this certificate was not issued by this jitgate",
    "cert.principal_mismatch": "the certificate is for another target or login",
    "cert.bad_signature": "the certificate was altered",
    "cert.revoked": "the grant was revoked",
}


def check_certificate(key_data: bytes, username: str, trusted_ca_lines: Iterable[str],
                      revoked_serials: frozenset[int] | set[int], now: dt.datetime | None = None) -> SSHCertInfo:
    """Check the presented key blob as a jitgate user certificate for `username`.

    Raises Refusal with a stable code (`cert.*`, `user.malformed`) and a plain message.
    """
    target = parse_user_name(username)
    trusted = list(trusted_ca_lines)
    if not trusted:
        raise Refusal("broker.no_trust", "the broker has no trusted CA yet (control plane unreachable); try again")
    try:
        info = verify_certificate(key_data, trusted, now=now, principal=target.principal)
    except CertificateRejected as exc:
        if exc.code == "cert.malformed":
            raise Refusal(
                "cert.required", f"a jitgate certificate is required: run `jitgate ssh {target.resource}`"
            ) from None
        hint = _HINTS.get(exc.code, "").format(resource=target.resource)
        raise Refusal(exc.code, f"{exc.message}" + (f"; {hint}" if hint else "")) from None
    if info.serial in revoked_serials:
        raise Refusal("cert.revoked", f"certificate serial {info.serial} is revoked; {_HINTS['cert.revoked']}")
    if not info.key_id:
        raise Refusal("cert.no_key_id", "certificate has no key id (grant id)")
    return info


Validator = Callable[[str, bytes, bytes, bytes], Awaitable[bool]]


def install_certificate_hook(conn: Any, on_attempt: Callable[[str, bytes, bool], bool | Awaitable[bool]]) -> None:
    """Wrap `conn.validate_public_key` so `on_attempt(username, key_data, signed)` runs first.

    `on_attempt` (plain or async) returns False to refuse the key before asyncssh looks at it.
    It is called for the unsigned query and again for the signed attempt;
    the caller keeps the credential only when a signed attempt succeeds,
    which `on_attempt` learns through the connection's `auth_completed`.
    """
    original: Validator = conn.validate_public_key

    async def validate_public_key(username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
        accepted = on_attempt(username, key_data, bool(msg))
        if inspect.isawaitable(accepted):
            accepted = await accepted
        if not accepted:
            return False
        return await original(username, key_data, msg, signature)

    conn.validate_public_key = validate_public_key
