"""`notify:` in server.yaml: the channels, who is told where, and the worker's bounds.

```yaml
notify:
  channels:
    mail:                                 # a name rules can use in `notify: [mail]`
      type: email
      host: smtp.example.com
      port: 587
      from: jitgate@example.com
      username: jitgate
      password: env:JITGATE_SMTP_PASSWORD # env:NAME or file:PATH, never the secret itself
      ca_file: /etc/ssl/smtp-ca.pem        # optional: trust for STARTTLS (default: the system's)
    chat:
      type: slack
      url: env:JITGATE_SLACK_WEBHOOK      # the incoming webhook URL is a secret too
    tickets:
      type: webhook
      url: file:/etc/jitgate/tickets-url
      secret: env:JITGATE_TICKETS_HMAC    # HMAC-SHA256 key of the X-Jitgate-Signature header
  approvers: [mail, chat]                 # default channels of approvers and reviewers
  requester: [mail]                       # channels the requester is told on
  reminder_before: 1h                     # a pending request's reminder, before its timeout
```

Secrets never appear in this file: `url`, `password` and `secret` take `env:NAME` or
`file:PATH` only, resolved once at start (a missing one stops the server with a plain message).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from controlplane.config import ConfigError

CHANNEL_TYPES = ("email", "slack", "webhook")
CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # the same words policy rules' `notify:` takes
MAX_CHANNELS = 32
MAX_SECRET_BYTES = 4096
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_TOP = ("channels", "approvers", "requester", "reminder_before", "timeout_seconds", "concurrency",
        "retry_base_seconds", "retry_max_seconds", "max_attempts", "max_age", "lease_seconds", "poll_seconds",
        "keep_sent", "web_url", "recommendation", "sender")
_CHANNEL_KEYS = {
    "email": ("type", "host", "port", "from", "username", "password", "ca_file", "starttls"),
    "slack": ("type", "url"),
    "webhook": ("type", "url", "secret"),
}


class NotifyConfigError(ConfigError):
    """A problem in `notify:` of the server config, as one plain sentence."""


@dataclass(frozen=True)
class Secret:
    """A resolved secret; its repr never shows the value (configs get logged and printed)."""

    source: str  # `env:NAME` or `file:PATH`: safe to show
    value: str = field(repr=False)

    def __str__(self) -> str:
        return f"<secret from {self.source}>"


@dataclass(frozen=True)
class ChannelConfig:
    """One channel: where and how to deliver."""

    name: str
    type: str
    url: Secret | None = None          # slack, webhook
    secret: Secret | None = None       # webhook: HMAC key
    host: str = ""                     # email
    port: int = 587
    sender: str = ""
    username: str = ""
    password: Secret | None = None
    ca_file: str = ""
    starttls: bool = True

    def secrets(self) -> list[str]:
        """Every secret value of this channel (scrubbed from anything logged or stored)."""
        return [s.value for s in (self.url, self.secret, self.password) if s is not None and s.value]


@dataclass(frozen=True)
class NotifyConfig:
    """Channels, routing and the worker's bounds; validates itself when built."""

    channels: dict[str, ChannelConfig]
    approvers: tuple[str, ...] = ()
    requester: tuple[str, ...] = ()
    reminder_before: timedelta = timedelta(hours=1)
    timeout_seconds: float = 5.0      # one delivery attempt (connect + send), never longer
    concurrency: int = 4              # deliveries in flight per channel
    retry_base_seconds: float = 2.0   # backoff: base * 2^(attempt-1), capped, +-20% jitter
    retry_max_seconds: float = 300.0
    max_attempts: int = 12
    max_age: timedelta = timedelta(hours=24)  # a message not delivered by then is given up (dead)
    lease_seconds: float = 60.0       # a claimed row is due again after this if its sender vanished
    poll_seconds: float = 1.0         # the worker looks for due rows at least this often
    keep_sent: timedelta = timedelta(days=7)  # settled rows are deleted after this
    web_url: str = ""                 # optional: a link to the request in the web console (`{id}`)
    recommendation: bool = True       # compute the duration recommendation for approvers' messages
    sender: str = "process"           # process: a child at lower CPU priority (notify/process.py); thread: in-process

    def __post_init__(self) -> None:
        if not self.channels:
            raise NotifyConfigError("notify: give at least one channel under `channels:`")
        for what, names in (("approvers", self.approvers), ("requester", self.requester)):
            for n in names:
                if n not in self.channels:
                    raise NotifyConfigError(f"notify.{what}: unknown channel `{n}`")
        if not 0.1 <= self.timeout_seconds <= 60:
            raise NotifyConfigError("notify.timeout_seconds must be from 0.1 to 60")
        if not 1 <= self.concurrency <= 64:
            raise NotifyConfigError("notify.concurrency must be from 1 to 64")
        if not 0.01 <= self.retry_base_seconds <= self.retry_max_seconds <= 86400:
            raise NotifyConfigError("notify: need 0.01 <= retry_base_seconds <= retry_max_seconds <= 86400")
        if not 1 <= self.max_attempts <= 100:
            raise NotifyConfigError("notify.max_attempts must be from 1 to 100")
        if self.lease_seconds < 2 * self.timeout_seconds:
            raise NotifyConfigError("notify.lease_seconds must be at least twice timeout_seconds")
        if not 0.05 <= self.poll_seconds <= 60:
            raise NotifyConfigError("notify.poll_seconds must be from 0.05 to 60")
        if self.sender not in ("process", "thread"):
            raise NotifyConfigError("notify.sender must be `process` or `thread`")
        if self.web_url and not self.web_url.startswith(("https://", "http://")):
            raise NotifyConfigError("notify.web_url must be an http(s) URL with `{id}` for the request")

    @property
    def approver_channels(self) -> tuple[str, ...]:
        return self.approvers or tuple(self.channels)

    @property
    def requester_channels(self) -> tuple[str, ...]:
        """Default: the email channels (a chat room or ticket system is not the requester's inbox)."""
        if self.requester:
            return self.requester
        return tuple(n for n, c in self.channels.items() if c.type == "email")

    def secrets(self) -> list[str]:
        return [s for c in self.channels.values() for s in c.secrets()]


def resolve_secret(ref: Any, what: str, environ: Mapping[str, str]) -> Secret:
    """`env:NAME` or `file:PATH` -> the secret; anything else (a literal) is refused."""
    if not isinstance(ref, str) or not ref.startswith(("env:", "file:")):
        raise NotifyConfigError(f"{what} must be `env:NAME` or `file:PATH` (secrets are never written in the config)")
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = environ.get(name)
        if not value:
            raise NotifyConfigError(f"{what}: environment variable `{name}` is not set")
    else:
        path = Path(name).expanduser()
        try:
            if path.stat().st_size > MAX_SECRET_BYTES:
                raise NotifyConfigError(f"{what}: `{name}` is over {MAX_SECRET_BYTES} bytes")
            value = path.read_text().strip()
        except OSError as e:
            raise NotifyConfigError(f"{what}: cannot read `{name}`: {e.strerror}") from None
        if not value:
            raise NotifyConfigError(f"{what}: `{name}` is empty")
    if len(value) > MAX_SECRET_BYTES or any(c in value for c in "\r\n\0"):
        raise NotifyConfigError(f"{what}: the secret from `{ref}` is too long or has line breaks")
    return Secret(ref, value)


def parse_duration(value: Any, what: str) -> timedelta:
    text = str(value).strip()
    m = _DURATION.fullmatch(text)
    if not text or m is None or not any(m.groups()):
        raise NotifyConfigError(f"{what}: `{text}` is not a duration like 30m or 1h30m")
    h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(hours=h, minutes=mi, seconds=s)


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NotifyConfigError(f"{what} must be a list of channel names")
    return tuple(dict.fromkeys(value))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotifyConfigError(f"{what} must be a number, got {value!r}")
    return float(value)


def _channel(name: str, spec: Any, environ: Mapping[str, str]) -> ChannelConfig:
    what = f"notify.channels.{name}"
    if not CHANNEL_NAME.fullmatch(name):
        raise NotifyConfigError(f"{what}: a channel name is 1-64 of a-z, 0-9, `_`, `-`")
    if not isinstance(spec, dict):
        raise NotifyConfigError(f"{what} must be a mapping")
    kind = spec.get("type")
    if kind not in CHANNEL_TYPES:
        raise NotifyConfigError(f"{what}.type must be one of {', '.join(CHANNEL_TYPES)}")
    for key in spec:
        if key not in _CHANNEL_KEYS[kind]:
            raise NotifyConfigError(f"{what}: unknown key `{key}` for a {kind} channel")
    if kind in ("slack", "webhook"):
        url = resolve_secret(spec.get("url"), f"{what}.url", environ)
        if not url.value.startswith(("https://", "http://")):
            raise NotifyConfigError(f"{what}.url: the URL from `{url.source}` must be http(s)")
        secret = resolve_secret(spec["secret"], f"{what}.secret", environ) if "secret" in spec else None
        if kind == "webhook" and secret is None:
            raise NotifyConfigError(f"{what}: a webhook needs `secret` (the HMAC key receivers verify with)")
        return ChannelConfig(name=name, type=kind, url=url, secret=secret)
    host, sender = spec.get("host"), spec.get("from")
    if not isinstance(host, str) or not host:
        raise NotifyConfigError(f"{what}.host is required")
    if not isinstance(sender, str) or "@" not in sender or any(c in sender for c in "\r\n<>,"):
        raise NotifyConfigError(f"{what}.from must be one plain address like jitgate@example.com")
    port = spec.get("port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise NotifyConfigError(f"{what}.port must be a port number")
    starttls = spec.get("starttls", True)
    if not isinstance(starttls, bool):
        raise NotifyConfigError(f"{what}.starttls must be true or false")
    username = spec.get("username", "")
    password = resolve_secret(spec.get("password"), f"{what}.password", environ) if username else None
    if username and not starttls:
        raise NotifyConfigError(f"{what}: a password is only sent over STARTTLS; set `starttls: true`")
    ca_file = str(spec.get("ca_file", ""))
    if ca_file and not Path(ca_file).expanduser().is_file():
        raise NotifyConfigError(f"{what}.ca_file `{ca_file}` does not exist")
    return ChannelConfig(name=name, type=kind, host=host, port=port, sender=sender, username=str(username),
                         password=password, ca_file=ca_file, starttls=starttls)


def parse_notify(data: Any, environ: Mapping[str, str] | None = None) -> NotifyConfig:
    """`notify:` of server.yaml -> NotifyConfig (secrets resolved from `environ`)."""
    env = os.environ if environ is None else environ
    if not isinstance(data, dict):
        raise NotifyConfigError("notify must be a mapping (see README, Notifications)")
    for key in data:
        if key not in _TOP:
            raise NotifyConfigError(f"notify: unknown key `{key}` (known: {', '.join(_TOP)})")
    raw_channels = data.get("channels")
    if not isinstance(raw_channels, dict) or not raw_channels:
        raise NotifyConfigError("notify.channels must name at least one channel")
    if len(raw_channels) > MAX_CHANNELS:
        raise NotifyConfigError(f"notify.channels: at most {MAX_CHANNELS} channels")
    channels = {str(n): _channel(str(n), spec, env) for n, spec in raw_channels.items()}
    kw: dict[str, Any] = {"channels": channels}
    for key in ("approvers", "requester"):
        if key in data:
            kw[key] = _names(data[key], f"notify.{key}")
    for key in ("reminder_before", "max_age", "keep_sent"):
        if key in data:
            kw[key] = parse_duration(data[key], f"notify.{key}")
    for key in ("timeout_seconds", "retry_base_seconds", "retry_max_seconds", "lease_seconds", "poll_seconds"):
        if key in data:
            kw[key] = _number(data[key], f"notify.{key}")
    for key in ("concurrency", "max_attempts"):
        if key in data:
            kw[key] = int(_number(data[key], f"notify.{key}"))
    if "web_url" in data:
        kw["web_url"] = str(data["web_url"])
    if "sender" in data:
        kw["sender"] = str(data["sender"])
    if "recommendation" in data:
        if not isinstance(data["recommendation"], bool):
            raise NotifyConfigError("notify.recommendation must be true or false")
        kw["recommendation"] = data["recommendation"]
    return NotifyConfig(**kw)


__all__ = ["CHANNEL_TYPES", "ChannelConfig", "NotifyConfig", "NotifyConfigError", "Secret", "parse_notify",
           "resolve_secret"]
