"""Resolving a resource's `credentials:` reference into an upstream login, on the broker.

The policy names a reference; the broker's own configuration (`CredentialSource`)
decides what a reference may reach, so a policy change cannot make the broker
read and send its own secrets (its keys, its passphrase) anywhere:

- `env:NAME`: only variables the broker allows by name (`--credentials-env NAME`)
  or by prefix (`--credentials-env-prefix DB_`); never a `JITGATE_*` variable,
  which is the broker's own configuration;
- `file:PATH`: only a relative PATH inside the broker's credentials directory
  (`--credentials-dir`): no absolute path, no `..`, and symbolic links must stay
  inside the directory after they are followed; at most `MAX_CREDENTIAL_FILE` bytes.

The value found is either a libpq-style URI
(`postgresql://role:secret@host:port/db?sslmode=verify-full&sslrootcert=/ca.pem`)
or a bare password. Of a URI the user, password, `sslmode`, `sslrootcert` and
`cleartext=allow` are used; the database comes from the resource. A URI that
names a host binds the secret to that address: a resource whose `address`
differs is refused (a policy cannot send the secret to another server).
One resource has several roles, so the role's own entry is looked up first:

- `env:NAME`: `$NAME_<ROLE>` (role upper-cased, other characters as `_`), then `$NAME`;
- `file:PATH`: `PATH/<role>` when PATH is a directory, else the file itself.

An empty reference means no secret (trust). The login user is the URI's user
when it names one, else the approved role. Secrets never appear in errors.
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# A credentials file holds a password or a URI: 64 KiB is far above either, and
# keeps a reference to a large file from being read into the broker at all.
MAX_CREDENTIAL_FILE = 64 * 1024
# The broker's own settings (passphrases, identity, server) live in these variables.
PROTECTED_ENV_PREFIX = "JITGATE_"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]+_")  # at least two characters, then `_`


class CredentialError(Exception):
    """A reference that cannot be resolved (message is safe to show: no secret in it)."""


@dataclass(frozen=True)
class UpstreamLogin:
    """Who the broker logs in as upstream, and with what (never shown to the user).

    `bound_to`: the (host, port) the secret's URI names, if it names one.
    `allow_cleartext`: the secret may be sent as a cleartext password without verified TLS
    (only with `bound_to`: the operator said where it may go).
    """

    user: str
    password: str | None = None
    sslmode: str = "disable"
    sslrootcert: str | None = None
    bound_to: tuple[str, int] | None = None
    allow_cleartext: bool = False

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return (
            f"UpstreamLogin(user={self.user!r}, password={'***' if self.password else None}, sslmode={self.sslmode!r})"
        )

    @property
    def verified_tls(self) -> bool:
        """The upstream's certificate is checked against a CA the operator named (not the system's)."""
        return self.sslmode in ("verify-ca", "verify-full") and bool(self.sslrootcert)


_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def _env_suffix(role: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", role).upper()


def _protected(name: str) -> bool:
    return name.upper().startswith(PROTECTED_ENV_PREFIX)


@dataclass(frozen=True)
class CredentialSource:
    """What `credentials:` references may reach on this broker (checked when built).

    `env_names`: variables allowed by name (`NAME` also allows its per-role `NAME_<ROLE>`).
    `env_prefixes`: variables allowed by prefix (each `[A-Za-z_][A-Za-z0-9_]+_`).
    `directory`: where `file:` references are read; None refuses them all.
    `protected`: directories `directory` must neither be in nor contain (the broker's data, its identity).
    """

    env_names: tuple[str, ...] = ()
    env_prefixes: tuple[str, ...] = ()
    directory: Path | None = None
    protected: tuple[Path, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in self.env_names:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"--credentials-env `{name}` is not an environment variable name")
            if _protected(name) or _protected(name + "_"):
                raise ValueError(f"--credentials-env `{name}` would reach the broker's own {PROTECTED_ENV_PREFIX}* "
                                 "settings")
        for prefix in self.env_prefixes:
            if not _ENV_PREFIX.fullmatch(prefix):
                raise ValueError(f"--credentials-env-prefix `{prefix}` must be letters, digits and `_`, "
                                 "at least 3 characters, ending with `_` (for example DB_)")
            if _protected(prefix) or PROTECTED_ENV_PREFIX.startswith(prefix.upper()):
                raise ValueError(f"--credentials-env-prefix `{prefix}` would reach the broker's own "
                                 f"{PROTECTED_ENV_PREFIX}* settings")
        if self.directory is not None:
            real = Path(self.directory).resolve()
            if not real.is_dir():
                raise ValueError(f"--credentials-dir `{self.directory}` is not a directory")
            for other in self.protected:
                mine = Path(other).resolve()
                if mine.is_relative_to(real) or real.is_relative_to(mine):
                    raise ValueError(f"--credentials-dir `{self.directory}` overlaps `{other}` (the broker's "
                                     "own keys and data): give a directory that holds credentials only")
            object.__setattr__(self, "directory", real)

    def env_allowed(self, name: str) -> bool:
        if _protected(name):
            return False
        return name in self.env_names or name.startswith(self.env_prefixes)

    def raw_secret(self, reference: str, role: str, environ: Mapping[str, str]) -> str | None:
        """The secret a reference names for `role`, None for an empty reference; CredentialError
        for a reference this broker does not allow or cannot read."""
        if not reference:
            return None
        scheme, sep, rest = reference.partition(":")
        if not sep or not rest:
            raise CredentialError(f"credentials reference `{reference}` is not `env:NAME` or `file:PATH`")
        if scheme == "env":
            return self._env(rest, role, environ)
        if scheme == "file":
            return self._file(rest, role)
        raise CredentialError(f"credentials reference `{reference}` is not `env:NAME` or `file:PATH`")

    def _env(self, name: str, role: str, environ: Mapping[str, str]) -> str:
        if not _ENV_NAME.fullmatch(name):
            raise CredentialError(f"credentials `env:{name}` is not an environment variable name")
        if not self.env_allowed(name):
            raise CredentialError(f"credentials `env:{name}` names a variable this broker does not allow "
                                  "(its --credentials-env / --credentials-env-prefix)")
        for candidate in (f"{name}_{_env_suffix(role)}", name):
            if candidate in environ and not _protected(candidate):
                return environ[candidate]
        raise CredentialError(f"credentials environment variable `{name}` is not set on the broker")

    def _file(self, rel: str, role: str) -> str:
        if self.directory is None:
            raise CredentialError(f"credentials `file:{rel}`: this broker reads no credential files "
                                  "(no --credentials-dir)")
        problem = relative_path_problem(rel)
        if problem is not None:
            raise CredentialError(f"credentials `file:{rel}` {problem}")
        path = self._inside(self.directory / rel, rel)
        if path.is_dir():
            if relative_path_problem(role) is not None or "/" in role:
                raise CredentialError(f"role `{role}` cannot name a credentials file")
            path = self._inside(path / role, f"{rel}/{role}")
        return _read_small(path, rel)

    def _inside(self, path: Path, shown: str) -> Path:
        real = path.resolve()  # follows symbolic links: where the file really is
        assert self.directory is not None
        if not real.is_relative_to(self.directory):
            raise CredentialError(f"credentials file `{shown}` leads outside the broker's credentials directory")
        return real

    def resolve(self, reference: str, role: str, address: str,
                environ: Mapping[str, str] | None = None) -> UpstreamLogin:
        """The upstream login for `role` at `address` from a resource's `credentials:` reference."""
        secret = self.raw_secret(reference, role, os.environ if environ is None else environ)
        if secret is None:
            return UpstreamLogin(user=role)
        if not secret.startswith(("postgres://", "postgresql://")):
            return UpstreamLogin(user=role, password=secret)
        login = _from_uri(secret, role)
        host, port = split_address(address)
        if login.bound_to is not None and login.bound_to != (host.lower(), port):
            raise CredentialError(f"credentials `{reference}` are for {login.bound_to[0]}:{login.bound_to[1]}, "
                                  f"not for the resource's address {address}")
        return login


def relative_path_problem(rel: str) -> str | None:
    """Why `rel` is not a plain relative path (no absolute path, `..`, empty part, NUL); None when it is."""
    if not rel or "\x00" in rel or "\\" in rel:
        return "is not a plain relative path"
    if rel.startswith("/"):
        return "is an absolute path: give a path inside the broker's credentials directory"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "may not hold `..`, `.` or empty parts"
    return None


def _read_small(path: Path, shown: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise CredentialError(f"credentials file `{shown}` cannot be read on the broker") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CredentialError(f"credentials file `{shown}` is not a regular file")
        if info.st_size > MAX_CREDENTIAL_FILE:
            raise CredentialError(f"credentials file `{shown}` is over {MAX_CREDENTIAL_FILE} bytes")
        data = f.read(MAX_CREDENTIAL_FILE + 1)
    if len(data) > MAX_CREDENTIAL_FILE:
        raise CredentialError(f"credentials file `{shown}` is over {MAX_CREDENTIAL_FILE} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CredentialError(f"credentials file `{shown}` is not UTF-8 text") from None


def split_address(address: str, default_port: int = 5432) -> tuple[str, int]:
    """"host:port" (or "[v6]:port", or "host") -> (host, port); CredentialError when the port is not a number."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            host, port = address, ""
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise CredentialError(f"address `{address}` is not host:port") from None


def _from_uri(uri: str, role: str) -> UpstreamLogin:
    try:
        parts = urlsplit(uri)
        query = parse_qs(parts.query)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise CredentialError("credentials URI is malformed") from None
    sslmode = query.get("sslmode", ["disable"])[0]
    if sslmode not in _SSLMODES:
        raise CredentialError(f"credentials URI has an unknown sslmode `{sslmode}`")
    cleartext = query.get("cleartext", ["refuse"])[0]
    if cleartext not in ("allow", "refuse"):
        raise CredentialError(f"credentials URI has cleartext=`{cleartext}`: `allow` or `refuse`")
    bound = (host.lower(), port or 5432) if host else None
    if cleartext == "allow" and bound is None:
        raise CredentialError("credentials URI allows a cleartext password but names no host:port it is for")
    user = unquote(parts.username) if parts.username else role
    password = unquote(parts.password) if parts.password is not None else None
    root = query.get("sslrootcert", [None])[0]
    return UpstreamLogin(user=user, password=password, sslmode=sslmode, sslrootcert=root, bound_to=bound,
                         allow_cleartext=cleartext == "allow")
