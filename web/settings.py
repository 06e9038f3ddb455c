"""What `jitgate web` is started with, checked when built."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_CLIENT_ID = "jitgate-web"


class SettingsError(ValueError):
    """A bad start-up setting: one plain line, before anything listens."""


@dataclass(frozen=True)
class WebSettings:
    """The console's settings.

    `public_url` is the address people open (https://host:port); the provider redirects to
    `public_url + /auth/callback`, which must be registered for `client_id` at the provider.
    """

    server: str                      # the control plane's API address(es), `a:7443,b:7443`
    login_server: str                # its sign-in listener
    ca_pem: bytes                    # the control plane's CA: checks both of its listeners
    public_url: str
    client_id: str = DEFAULT_CLIENT_ID
    idle_timeout: timedelta = timedelta(minutes=30)
    absolute_timeout: timedelta = timedelta(hours=8)  # never past the person's certificate either
    certificate_hours: int = 0       # 0: the control plane's default
    max_sessions: int = 10_000       # web sessions held in memory at once
    max_pending_signins: int = 1_000  # sign-ins started and not finished
    rpc_timeout: float = 15.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_key_password: bytes | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.public_url)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise SettingsError(f"--public-url `{self.public_url}` must be https://HOST[:PORT] (no path)")
        if not self.client_id or len(self.client_id) > 128:
            raise SettingsError("--client-id must be 1 to 128 characters")
        if not self.ca_pem.strip().startswith(b"-----BEGIN CERTIFICATE-----"):
            raise SettingsError("the control plane's CA certificate is not a PEM certificate")
        if not timedelta(minutes=1) <= self.idle_timeout <= self.absolute_timeout <= timedelta(hours=24):
            raise SettingsError("timeouts: 1 min <= idle <= absolute <= 24 h")
        if not 0 <= self.certificate_hours <= 168:
            raise SettingsError("--hours must be between 0 and 168")

    @property
    def origin(self) -> str:
        """`https://host[:port]` as browsers send it in the Origin header."""
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    @property
    def redirect_uri(self) -> str:
        return self.origin + "/auth/callback"


__all__ = ["DEFAULT_CLIENT_ID", "SettingsError", "WebSettings"]
