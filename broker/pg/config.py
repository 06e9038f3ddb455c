"""The PostgreSQL broker's configuration, checked when built, and its user-name convention."""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from broker.lockstate import DEFAULT_STALE_AFTER
from broker.pg.credentials import CredentialSource
from broker.refusals import RefusalLimits
from recorder.limits import check_max_recording_bytes

# The one documented user-name syntax: `ROLE@RESOURCE`, e.g. `readonly@orders-db`.
USER_SYNTAX = "ROLE@RESOURCE"
# PostgreSQL role names are at most 63 bytes (NAMEDATALEN - 1); resource names as the SSH
# broker allows them (64): a longer user name is refused before anything else looks at it.
MAX_ROLE_BYTES = 63
MAX_RESOURCE = 64


class ConfigError(ValueError):
    """A broker configuration that cannot work (raised at start, with a plain message)."""


def parse_user(user: str) -> tuple[str, str]:
    """`ROLE@RESOURCE` -> (role, resource); ValueError with a plain message otherwise.

    The last `@` separates them: role names may hold `@`, resource names may not.
    """
    if len(user.encode()) > MAX_ROLE_BYTES + 1 + MAX_RESOURCE:
        raise ValueError(f"user name of {len(user)} characters is too long for {USER_SYNTAX} "
                         f"(role at most {MAX_ROLE_BYTES} bytes, resource at most {MAX_RESOURCE})")
    role, sep, resource = user.rpartition("@")
    if len(role.encode()) > MAX_ROLE_BYTES or len(resource) > MAX_RESOURCE:
        raise ValueError(f"user name is too long for {USER_SYNTAX} (role at most {MAX_ROLE_BYTES} bytes, "
                         f"resource at most {MAX_RESOURCE} characters)")
    if not sep or not role or not resource:
        raise ValueError(f"user name `{user}` is not {USER_SYNTAX} (for example readonly@orders-db)")
    return role, resource


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address `{listen}` is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass
class PgBrokerConfig:
    """How the PostgreSQL broker listens, encrypts and limits.

    `tls_cert` / `tls_key`: PEM files of the server certificate the internal CA
    issued for the broker's host names (clients verify it with `sslmode=verify-full`);
    the key may be encrypted with `tls_key_passphrase`.
    `require_tls`: refuse clients that do not negotiate TLS (on by default).
    `credentials`: what resources' `credentials:` references may reach on this broker.
    `max_recording_bytes`: the most a session's recording may hold; past it the session is cut.
    """

    listen: str = "127.0.0.1:6432"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_key_passphrase: bytes | None = field(default=None, repr=False)
    require_tls: bool = True
    name: str = "pg-broker"
    max_message: int = 64 * 1024 * 1024  # larger client messages end the connection (54000)
    login_timeout: float = 30.0  # startup + token + upstream login
    upstream_timeout: float = 10.0
    record_interval: float = 0.05  # how often finished statements are shipped to the recording process
    record_backlog: int = 4 * 1024 * 1024  # unrecorded statement bytes beyond which clients are paused
    credentials: CredentialSource = field(default_factory=CredentialSource)
    # A statement line is 150-300 bytes: 256 MiB is about a million statements, more than
    # a person's session runs in its window, while a runaway loop meets it in minutes and
    # cannot fill the recordings' disk (the cut comes within about two recording intervals of traffic).
    max_recording_bytes: int = 256 * 1024 * 1024
    cut_wait: float = 2.0  # how long a cut waits for a message boundary to say why
    activity_interval: float = 30.0  # live sessions' activity (and unreported ends) go to the control plane
    refusals: RefusalLimits = field(default_factory=RefusalLimits)  # refused logins: audit and tarpit
    # Seconds the broker may go without learning the lock state before it refuses new sessions.
    lock_stale_after: float = DEFAULT_STALE_AFTER

    def __post_init__(self) -> None:
        self.host, self.port = split_listen(self.listen)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("give both a TLS certificate and its key, or neither")
        if self.require_tls and self.tls_cert is None:
            raise ConfigError("TLS is required but no server certificate and key were given")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"TLS file `{path}` does not exist")
        if self.max_message < 1024:
            raise ConfigError("max_message must be at least 1024 bytes")
        if self.record_backlog < 64 * 1024:
            raise ConfigError("record_backlog must be at least 64 KiB")
        try:
            check_max_recording_bytes(self.max_recording_bytes, "--max-recording-bytes")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.login_timeout <= 0 or self.upstream_timeout <= 0:
            raise ConfigError("timeouts must be positive")
        self._ssl: ssl.SSLContext | None = None
        if self.tls_cert is not None:
            try:
                self._ssl = self._make_ssl()
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"cannot load the TLS certificate `{self.tls_cert}`: {exc}") from None

    def _make_ssl(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # An unencrypted key loads too; the password is only asked for by an encrypted one.
        ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key), password=self.tls_key_passphrase or b"")
        return ctx

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl
