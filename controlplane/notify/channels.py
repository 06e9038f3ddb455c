"""Delivery: one class per channel type, each one bounded attempt that succeeds or raises.

- email: SMTP with STARTTLS (certificate verified) and AUTH (smtplib); one message to
  every recipient, `Message-ID: <KEY@jitgate>` so a receiver that sees it twice can drop it.
- slack: a Slack-compatible incoming webhook, Block Kit JSON (httpx).
- webhook: JSON with `X-Jitgate-Signature: v1=HEX`, HEX = HMAC-SHA256(secret,
  f"{X-Jitgate-Timestamp}.{body}"), and the idempotency key in `Idempotency-Key`.

An error message never carries a secret: `DeliveryError` texts are built from the status
and the exception's class, and `scrub` removes the channel's secrets from anything else.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate

import httpx

from controlplane.notify.config import ChannelConfig
from controlplane.notify.messages import Message

SIGNATURE_HEADER = "X-Jitgate-Signature"
TIMESTAMP_HEADER = "X-Jitgate-Timestamp"
KEY_HEADER = "Idempotency-Key"
KIND_HEADER = "X-Jitgate-Event"
# httpx logs every request's full URL at INFO; a webhook URL is a secret (it authorizes posting).
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)
MAX_RESPONSE_BYTES = 64 * 1024  # a receiver's answer is read no further
SMTP_REUSE_SECONDS = 60.0  # an SMTP connection is kept this long, then opened anew


class DeliveryError(Exception):
    """One attempt failed (retried by the worker until its limits); the text is safe to log."""


class NothingToSend(Exception):
    """Nobody on this channel to tell (e.g. no email address): the row is skipped, not retried."""


def scrub(text: str, secrets: Sequence[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature header value (see README, Notifications, to verify it)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


class Channel:
    """One configured channel. `send` makes one attempt within `timeout` seconds."""

    def __init__(self, config: ChannelConfig, timeout: float) -> None:
        self.config = config
        self.name = config.name
        self.timeout = timeout

    def send(self, message: Message, addresses: list[str], event_at: datetime) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release pooled connections."""


class HttpChannel(Channel):
    """What the Slack and generic webhook channels share: a pooled client with hard timeouts."""

    def __init__(self, config: ChannelConfig, timeout: float) -> None:
        super().__init__(config, timeout)
        assert config.url is not None
        self._url = config.url.value
        # Every phase bounded; no redirects (a 3xx is a misconfiguration, not somewhere to follow a secret URL).
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))

    def _post(self, body: bytes, headers: dict[str, str]) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            with self._client.stream("POST", self._url, content=body,
                                     headers={"Content-Type": "application/json", **headers}) as resp:
                read = 0
                for chunk in resp.iter_bytes():  # drain (bounded) so the connection can be reused
                    read += len(chunk)
                    if read > MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                        break
                status = resp.status_code
        except httpx.TimeoutException:
            raise DeliveryError(f"no answer within {self.timeout:g}s") from None
        except httpx.HTTPError as e:
            raise DeliveryError(f"{type(e).__name__}: {scrub(str(e), self.config.secrets())}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"the receiver answered HTTP {status}")

    def close(self) -> None:
        self._client.close()


class SlackChannel(HttpChannel):
    def send(self, message: Message, addresses: list[str], event_at: datetime) -> None:
        body = json.dumps(message.slack(), ensure_ascii=False).encode()
        # Slack ignores the key; a Slack-compatible receiver (Mattermost, a proxy) may use it.
        self._post(body, {KEY_HEADER: message.key})


class WebhookChannel(HttpChannel):
    def send(self, message: Message, addresses: list[str], event_at: datetime) -> None:
        assert self.config.secret is not None
        body = json.dumps(message.webhook(event_at), ensure_ascii=False, separators=(",", ":")).encode()
        ts = str(int(time.time()))
        self._post(body, {KEY_HEADER: message.key, KIND_HEADER: message.kind, TIMESTAMP_HEADER: ts,
                          SIGNATURE_HEADER: sign(self.config.secret.value, ts, body)})


class EmailChannel(Channel):
    """SMTP: each sending thread keeps one authenticated STARTTLS connection and reuses it
    (a TLS handshake and AUTH per message would cost more than the request being told about);
    a connection older than SMTP_REUSE_SECONDS, or one the server closed, is opened again."""

    def __init__(self, config: ChannelConfig, timeout: float) -> None:
        super().__init__(config, timeout)
        self._tls = ssl.create_default_context(cafile=config.ca_file or None)
        self._local = threading.local()
        self._all: list[smtplib.SMTP] = []
        self._all_lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        smtp = smtplib.SMTP(c.host, c.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if c.starttls:
                smtp.starttls(context=self._tls)
                smtp.ehlo()
            if c.username and c.password is not None:
                smtp.login(c.username, c.password.value)
        except BaseException:
            smtp.close()
            raise
        with self._all_lock:
            self._all.append(smtp)
        return smtp

    def _drop(self) -> None:
        smtp = getattr(self._local, "smtp", None)
        self._local.smtp = None
        if smtp is not None:
            with self._all_lock:
                if smtp in self._all:
                    self._all.remove(smtp)
            try:
                smtp.close()
            except OSError:
                pass

    def _connection(self) -> smtplib.SMTP:
        smtp = getattr(self._local, "smtp", None)
        if smtp is not None and time.monotonic() - self._local.since > SMTP_REUSE_SECONDS:
            self._drop()
            smtp = None
        if smtp is None:
            smtp = self._connect()
            self._local.smtp, self._local.since = smtp, time.monotonic()
        return smtp

    def send(self, message: Message, addresses: list[str], event_at: datetime) -> None:
        if not addresses:
            raise NothingToSend("no email address for " + (", ".join(message.recipients) or "anyone"))
        c = self.config
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = c.sender
        mail["To"] = ", ".join(addresses)
        mail["Date"] = formatdate(event_at.timestamp(), usegmt=True)
        # The idempotency key: the same row always sends the same Message-ID.
        mail["Message-ID"] = f"<{message.key}@jitgate>"
        mail["X-Jitgate-Request"] = message.request_id
        mail.set_content(message.text())
        try:
            try:
                reused = getattr(self._local, "smtp", None) is not None
                refused = self._connection().send_message(mail)
            except smtplib.SMTPServerDisconnected:
                self._drop()
                if not reused:
                    raise
                refused = self._connection().send_message(mail)  # the kept connection had gone stale
        except smtplib.SMTPAuthenticationError as e:
            self._drop()
            raise DeliveryError(f"SMTP authentication refused ({e.smtp_code})") from None
        except smtplib.SMTPResponseException as e:
            self._drop()
            raise DeliveryError(f"SMTP error {e.smtp_code}") from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("SMTP server refused every recipient") from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
            self._drop()
            raise DeliveryError(f"{type(e).__name__}: {scrub(str(e), c.secrets())}"[:300]) from None
        if refused:
            raise DeliveryError(f"SMTP server refused {len(refused)} of {len(addresses)} recipient(s)")

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for smtp in conns:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


CHANNEL_CLASSES: dict[str, Callable[[ChannelConfig, float], Channel]] = {
    "email": EmailChannel, "slack": SlackChannel, "webhook": WebhookChannel}


def make_channel(config: ChannelConfig, timeout: float) -> Channel:
    return CHANNEL_CLASSES[config.type](config, timeout)


__all__ = ["KEY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Channel", "DeliveryError", "EmailChannel",
           "NothingToSend", "SlackChannel", "WebhookChannel", "make_channel", "scrub", "sign"]
