"""Resolving a resource's `credentials:` reference into an upstream login, on the broker.

A reference is `env:NAME` or `file:PATH`. The value found is either a
libpq-style URI (`postgresql://role:secret@host/db?sslmode=require`; only the
user, password, `sslmode` and `sslrootcert` are used: the address and
database come from the resource) or a bare password. One resource has several
roles, so the role's own entry is looked up first:

- `env:NAME`: `$NAME_<ROLE>` (role upper-cased, other characters as `_`), then `$NAME`;
- `file:PATH`: `PATH/<role>` when PATH is a directory, else the file itself.

An empty reference means no secret (trust). The login user is the URI's user
when it names one, else the approved role. Secrets never appear in errors.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


class CredentialError(Exception):
    """A reference that cannot be resolved (message is safe to show: no secret in it)."""


@dataclass(frozen=True)
class UpstreamLogin:
    """Who the broker logs in as upstream, and with what (never shown to the user)."""

    user: str
    password: str | None = None
    sslmode: str = "disable"
    sslrootcert: str | None = None

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"UpstreamLogin(user={self.user!r}, password={'***' if self.password else None}, sslmode={self.sslmode!r})"


_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def _env_suffix(role: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", role).upper()


def _raw_secret(reference: str, role: str, environ: dict[str, str] | os._Environ) -> str | None:
    if not reference:
        return None
    scheme, sep, rest = reference.partition(":")
    if not sep or not rest:
        raise CredentialError(f"credentials reference `{reference}` is not `env:NAME` or `file:PATH`")
    if scheme == "env":
        for name in (f"{rest}_{_env_suffix(role)}", rest):
            if name in environ:
                return environ[name]
        raise CredentialError(f"credentials environment variable `{rest}` is not set on the broker")
    if scheme == "file":
        path = Path(rest)
        if path.is_dir():
            path = path / role
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError:
            raise CredentialError(f"credentials file `{path}` cannot be read on the broker") from None
    raise CredentialError(f"credentials reference `{reference}` is not `env:NAME` or `file:PATH`")


def resolve_login(reference: str, role: str, environ: dict[str, str] | None = None) -> UpstreamLogin:
    """The upstream login for `role` from a resource's `credentials:` reference."""
    secret = _raw_secret(reference, role, os.environ if environ is None else environ)
    if secret is None:
        return UpstreamLogin(user=role)
    if secret.startswith(("postgres://", "postgresql://")):
        return _from_uri(secret, role)
    return UpstreamLogin(user=role, password=secret)


def _from_uri(uri: str, role: str) -> UpstreamLogin:
    try:
        parts = urlsplit(uri)
        query = parse_qs(parts.query)
    except ValueError:
        raise CredentialError("credentials URI is malformed") from None
    sslmode = query.get("sslmode", ["disable"])[0]
    if sslmode not in _SSLMODES:
        raise CredentialError(f"credentials URI has an unknown sslmode `{sslmode}`")
    user = unquote(parts.username) if parts.username else role
    password = unquote(parts.password) if parts.password is not None else None
    root = query.get("sslrootcert", [None])[0]
    return UpstreamLogin(user=user, password=password, sslmode=sslmode, sslrootcert=root)
