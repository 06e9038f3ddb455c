"""Real receivers for notification tests and the benchmark: an SMTP server (aiosmtpd, STARTTLS
and AUTH required) and an HTTP receiver (stdlib http.server in a thread) that can answer 500,
answer slowly, or be down. Both remember what arrived and count each idempotency key, as a
receiver that deduplicates would.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage as Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# How long a wait for a delivery may take before it fails. Generous: it returns as soon as the
# delivery is there, and after a kill -9 the restarted server's sender (a low-priority child
# process) may be starved for a while on a loaded machine (two test workers on two cores).
WAIT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(dir_: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the SMTP server's; the cert is the client's CA file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = dir_ / "smtp-cert.pem", dir_ / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: Message
    tls: bool
    authenticated: bool
    at: float = field(default_factory=time.monotonic)  # when it arrived (the benchmark's clock)


class SmtpServer:
    """aiosmtpd on 127.0.0.1: STARTTLS required before AUTH, AUTH required before MAIL."""

    def __init__(self, tmp: Path, user: str = "jitgate", password: str = "s3cret-smtp") -> None:
        self.user, self.password = user, password
        self.cert, key = self_signed(tmp)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, key)
        self.mails: list[Mail] = []
        self.ids: Counter[str] = Counter()
        self.auth_failures = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, tls_context=ctx,
                                     require_starttls=True, auth_required=True, auth_require_tls=True,
                                     authenticator=self._auth)

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == self.user \
            and data.password.decode() == self.password
        if not ok:
            self.auth_failures += 1
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's handler hook
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=email_policy.default)
        with self._cond:
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), msg,
                                   tls=session.ssl is not None, authenticated=bool(session.authenticated)))
            self.ids[msg["Message-ID"]] += 1
            self._cond.notify_all()
        return "250 OK"

    def wait(self, pred: Any, timeout: float = WAIT) -> list[Mail]:
        """Wait until `pred(mails)` is true; returns the mails (raises on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.mails):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"SMTP: condition not met within {timeout}s; got {len(self.mails)} mail(s)")
                self._cond.wait(left)
            return list(self.mails)

    def for_request(self, rid: str) -> list[Mail]:
        with self._lock:
            return [m for m in self.mails if m.message["X-Jitgate-Request"] == rid]

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """An HTTP receiver on a fixed loopback port that can be stopped and started again.

    `mode`: "ok" (200), "500" (answers 500), "slow" (answers 200 after `delay` seconds).
    `deduped` counts each Idempotency-Key once, as a deduplicating receiver would."""

    secret: str = "hmac-key-for-tests"
    mode: str = "ok"
    delay: float = 0.0
    port: int = field(default_factory=free_port)
    hits: list[Hit] = field(default_factory=list)
    answered: list[Hit] = field(default_factory=list)
    keys: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                hit = Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                receiver._arrived(hit)
                mode, delay = receiver.mode, receiver.delay
                if mode == "slow":
                    time.sleep(delay)
                status = 500 if mode == "500" else 200
                if status == 200:
                    receiver._answered(hit)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a sender that gave up (timeout, kill -9) closed the connection: expected here

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _arrived(self, hit: Hit) -> None:
        with self._cond:
            self.hits.append(hit)
            sig = hit.headers.get("x-jitgate-signature")
            if sig is not None:
                ts = hit.headers.get("x-jitgate-timestamp", "")
                want = "v1=" + hmac.new(self.secret.encode(), ts.encode() + b"." + hit.body,
                                        hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, sig):
                    self.bad_signatures += 1
            self._cond.notify_all()

    def _answered(self, hit: Hit) -> None:
        with self._cond:
            self.answered.append(hit)
            self.keys[hit.headers.get("idempotency-key", "")] += 1
            self._cond.notify_all()

    def wait(self, pred: Any, timeout: float = WAIT) -> list[Hit]:
        """Wait until `pred(answered hits)` holds; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.answered):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"HTTP: condition not met within {timeout}s; "
                                         f"{len(self.hits)} arrived, {len(self.answered)} answered 200")
                self._cond.wait(left)
            return list(self.answered)

    def wait_arrived(self, pred: Any, timeout: float = WAIT) -> list[Hit]:
        """Wait until `pred(every hit that arrived, answered or not)` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.hits):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"HTTP: nothing arrived as expected within {timeout}s")
                self._cond.wait(left)
            return list(self.hits)

    def for_request(self, rid: str) -> list[Hit]:
        with self._cond:
            return [h for h in self.answered if rid in h.body.decode(errors="replace")]


__all__ = ["HttpReceiver", "SmtpServer", "free_port", "self_signed"]
