"""server.yaml's `oidc:` mapping, checked when the server's config is built.

```yaml
login_listen: 127.0.0.1:7444       # the sign-in listener (TLS, no client certificate)
oidc:
  issuer: https://login.example.com/  # https, or http on a loopback address (tests, demo)
  client_id: jitgate                  # a public client: PKCE, loopback redirect, device grant
  console_client_id: jitgate-web      # optional: the web console's client (`jitgate web`: a web
                                      # application with its own https redirect URI at the provider)
  scopes: [openid, email, profile, groups]
  username_claim: preferred_username  # the jitgate user name; `email` needs email_verified
  groups_claim: groups                # a list of strings in the ID token
  group_map: {idp-sre: sre}           # provider group -> policy group
  keep_unmapped_groups: false         # true: provider groups not in group_map count as they are
  certificate_hours: 8                # what `jitgate login` gets by default
  max_certificate_hours: 12           # the most a sign-in may ask for
  clock_skew_seconds: 60
  jwks_min_refresh_seconds: 30        # an unknown key id refetches the JWKS at most this often
  nonce_minutes: 10                   # how long a sign-in may take
```
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from jitgate.errors import JitgateError

MAX_GROUPS = 256  # groups kept from one token (more is refused, never cut silently)
NAME_MAX = 128  # the API's bound on names (controlplane/bounds.py)


class OidcConfigError(JitgateError, ValueError):
    code = "config.invalid"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise OidcConfigError(f"oidc: `{key}` must be a list of names")
    return tuple(value)


@dataclass(frozen=True)
class OidcConfig:
    """The sign-in settings; validates itself when built."""

    issuer: str
    client_id: str
    # The web console (`jitgate web`) signs people in as its own client: providers register a web
    # application's https redirect URI apart from the CLI's loopback one. Its ID tokens pass the
    # same checks (issuer, signature, nonce from BeginSignIn, ...); only the audience may be this one.
    console_client_id: str = ""
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    group_map: Mapping[str, str] = field(default_factory=dict)
    keep_unmapped_groups: bool = False
    certificate_hours: int = 8
    max_certificate_hours: int = 12
    clock_skew_seconds: int = 60
    jwks_min_refresh_seconds: float = 30.0
    nonce_minutes: int = 10
    http_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.issuer)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise OidcConfigError(f"oidc: issuer `{self.issuer}` must be an https URL without query or fragment")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise OidcConfigError(f"oidc: issuer `{self.issuer}` must use https (http only on a loopback address)")
        if not self.client_id:
            raise OidcConfigError("oidc: `client_id` is required")
        if self.console_client_id == self.client_id:
            raise OidcConfigError("oidc: `console_client_id` must differ from `client_id` (or be left out)")
        if "openid" not in self.scopes:
            raise OidcConfigError("oidc: `scopes` must include `openid`")
        if not self.username_claim or not self.groups_claim:
            raise OidcConfigError("oidc: `username_claim` and `groups_claim` must name claims")
        if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in self.group_map.items()):
            raise OidcConfigError("oidc: `group_map` must map provider group names to policy group names")
        if not 1 <= self.max_certificate_hours <= 168:
            raise OidcConfigError("oidc: `max_certificate_hours` must be between 1 and 168")
        if not 1 <= self.certificate_hours <= self.max_certificate_hours:
            raise OidcConfigError("oidc: `certificate_hours` must be between 1 and `max_certificate_hours`")
        if not 0 <= self.clock_skew_seconds <= 300:
            raise OidcConfigError("oidc: `clock_skew_seconds` must be between 0 and 300")
        if not 1 <= self.jwks_min_refresh_seconds <= 3600:
            raise OidcConfigError("oidc: `jwks_min_refresh_seconds` must be between 1 and 3600")
        if not 1 <= self.nonce_minutes <= 60:
            raise OidcConfigError("oidc: `nonce_minutes` must be between 1 and 60")
        if not 0.5 <= self.http_timeout_seconds <= 60:
            raise OidcConfigError("oidc: `http_timeout_seconds` must be between 0.5 and 60")

    @classmethod
    def from_mapping(cls, data: Any) -> OidcConfig:
        """From server.yaml's `oidc:` (unknown keys refused, so a typo fails at start)."""
        if isinstance(data, OidcConfig):
            return data
        if not isinstance(data, Mapping):
            raise OidcConfigError("oidc: must be a mapping (issuer, client_id, ...)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OidcConfigError(f"oidc: unknown key `{unknown[0]}` (known: {', '.join(sorted(known))})")
        values = dict(data)
        if "scopes" in values:
            values["scopes"] = _names("scopes", values["scopes"])
        if "group_map" in values and not isinstance(values["group_map"], Mapping):
            raise OidcConfigError("oidc: `group_map` must be a mapping")
        for key in ("issuer", "client_id", "console_client_id", "username_claim", "groups_claim"):
            if key in values and not isinstance(values[key], str):
                raise OidcConfigError(f"oidc: `{key}` must be a string")
        try:
            return cls(**values)
        except TypeError as e:
            raise OidcConfigError(f"oidc: {e}") from None

    @property
    def audiences(self) -> tuple[str, ...]:
        """The clients whose ID tokens sign people in: the CLI's, and the console's when set."""
        return (self.client_id, self.console_client_id) if self.console_client_id else (self.client_id,)

    @property
    def issuer_id(self) -> str:
        """The issuer exactly as tokens carry it (OIDC compares it as a string)."""
        return self.issuer

    def policy_groups(self, provider_groups: list[str]) -> list[str]:
        """Provider groups -> policy groups through `group_map` (unmapped dropped unless kept)."""
        out: list[str] = []
        for g in provider_groups:
            mapped = self.group_map.get(g)
            if mapped is None and self.keep_unmapped_groups:
                mapped = g
            if mapped is not None and mapped not in out:
                out.append(mapped)
        return out


__all__ = ["MAX_GROUPS", "NAME_MAX", "OidcConfig", "OidcConfigError"]
