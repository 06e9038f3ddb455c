"""A sign-in: a nonce, then an ID token and a CSR -> a short-lived client certificate.

`begin()` hands out a one-time nonce (kept hashed in the store, `nonce_minutes` to live).
`complete()` checks, in this order, each refusal audited as `signin.refused` with its
code: the CSR (size, PEM, self-signature, key type), the ID token (`idtoken`), the
claims (user name, groups, `email_verified` where email is used), that the name is
not a broker's, and the nonce, consumed in the same transaction that stores the person
and appends `signin.succeeded`. The certificate's subject is CN = the user name,
OU = `oidc`; its key is the CSR's (the private key never leaves the client).
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from controlplane.errors import JitError
from controlplane.signin.config import MAX_GROUPS, NAME_MAX, OidcConfig
from controlplane.signin.directory import PeopleDirectory
from controlplane.signin.idtoken import IdToken, ProviderKeys, TokenChecker, post_form
from controlplane.store import people as people_store
from policy.names import name_problem

log = logging.getLogger("controlplane.signin")

MAX_CSR_BYTES = 8 * 1024
MAX_NONCE_CHARS = 128
SOURCE_UNIT = "oidc"  # the OU of a signed-in certificate: `whoami` shows it as the identity's source
ANONYMOUS = "-"  # the audit actor of a refusal before a name is known


MAX_OPEN_SIGNINS = 10_000  # nonces handed out and not yet used or expired (BeginSignIn needs no certificate)
MAX_DEVICE_SIGNINS = 256  # headless sign-ins waiting at once (each holds a device code)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class Begun:
    nonce: str
    expires_at: dt.datetime
    user_code: str = ""
    verification_uri: str = ""
    verification_uri_complete: str = ""
    interval: int = 0


@dataclass
class DeviceSignIn:
    """A headless sign-in in progress: the device code stays here, never with the client."""

    device_code: str
    token_endpoint: str
    interval: float
    expires: float  # monotonic
    next_poll: float = 0.0


@dataclass(frozen=True)
class SignedIn:
    name: str
    groups: tuple[str, ...]
    email: str
    cert_pem: bytes
    ca_pem: bytes
    expires_at: dt.datetime


def _public_key(csr_pem: str) -> Any:
    if len(csr_pem) > MAX_CSR_BYTES:
        raise JitError("signin.bad_csr", f"the certificate signing request is larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
    except (ValueError, UnicodeError):
        raise JitError("signin.bad_csr", "the certificate signing request is not a PEM PKCS#10 request") from None
    if not csr.is_signature_valid:
        raise JitError("signin.bad_csr", "the certificate signing request's signature does not verify")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1"):
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return key
    raise JitError("signin.bad_csr", "the request's key must be ECDSA P-256/P-384, Ed25519 or RSA of 2048 bits or more")


class SignInService:
    """Sign-ins for one configured provider; thread-safe (the store serializes writes)."""

    def __init__(self, config: OidcConfig, ledger: Any, x509_ca: Any, directory: PeopleDirectory,
                 checker: TokenChecker | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self.ca = x509_ca
        self.directory = directory
        self.keys = ProviderKeys(config)
        self.checker = checker or TokenChecker(config, self.keys)
        self.clock = clock or ledger.clock
        self._devices: dict[str, DeviceSignIn] = {}
        self._devices_lock = threading.Lock()

    def load_people(self) -> None:
        """Put every stored person in the directory (at start)."""
        with self.ledger.store.read() as tx:
            found = people_store.all_people(tx.conn)
        self.directory.load((p.name, p.groups) for p in found)

    def begin(self, headless: bool = False) -> Begun:
        now = self.clock()
        nonce = secrets.token_urlsafe(32)
        expires = now + dt.timedelta(minutes=self.config.nonce_minutes)
        started = self._start_device() if headless else None
        with self.ledger.store.write() as tx:
            if not people_store.put_nonce(tx.conn, nonce, now, expires, MAX_OPEN_SIGNINS):
                raise JitError("signin.busy", f"{MAX_OPEN_SIGNINS} sign-ins are already under way; try again later")
        if started is None:
            return Begun(nonce, expires)
        device, answer = started
        with self._devices_lock:
            mono = time.monotonic()
            for key in [k for k, d in self._devices.items() if d.expires < mono]:
                del self._devices[key]
            if len(self._devices) >= MAX_DEVICE_SIGNINS:
                raise JitError("signin.busy", f"{MAX_DEVICE_SIGNINS} headless sign-ins are already waiting; "
                                              "try again in a minute")
            self._devices[nonce] = device
        return Begun(nonce, expires, str(answer.get("user_code", ""))[:64],
                     str(answer.get("verification_uri", ""))[:512],
                     str(answer.get("verification_uri_complete", ""))[:1024], int(device.interval))

    def _start_device(self) -> tuple[DeviceSignIn, dict[str, Any]]:
        """Ask the provider for a device code (RFC 8628 section 3.1)."""
        endpoint = self.keys.endpoint("device_authorization_endpoint")
        token_endpoint = self.keys.endpoint("token_endpoint")
        if not endpoint or not token_endpoint:
            raise JitError("signin.provider_unavailable",
                           "the identity provider offers no device authorization: sign in with a browser")
        answer = post_form(endpoint, {"client_id": self.config.client_id, "scope": " ".join(self.config.scopes)},
                           self.config.http_timeout_seconds, "device authorization endpoint")
        code = answer.get("device_code")
        if not isinstance(code, str) or not code or len(code) > 2048 or not answer.get("user_code"):
            raise JitError("signin.provider_unavailable",
                           f"the identity provider refused a device sign-in: {str(answer.get('error'))[:200]}")
        lifetime = min(float(answer.get("expires_in") or 600), self.config.nonce_minutes * 60.0)
        interval = min(max(float(answer.get("interval") or 5), 1.0), 60.0)
        return DeviceSignIn(code, token_endpoint, interval, time.monotonic() + lifetime), answer

    def _device_token(self, nonce: str) -> str:
        """The ID token of a headless sign-in, or `signin.pending` while the person has not finished."""
        with self._devices_lock:
            device = self._devices.get(nonce)
            mono = time.monotonic()
            if device is None:
                raise JitError("signin.nonce", "no headless sign-in is waiting under this nonce: sign in again")
            if mono > device.expires:
                del self._devices[nonce]
                raise JitError("signin.device_denied", "the headless sign-in took too long: sign in again")
            if mono < device.next_poll:  # the client cannot make us hit the provider faster than it allows
                raise JitError("signin.pending", "waiting for the sign-in on the other device")
            device.next_poll = mono + device.interval
        answer = post_form(device.token_endpoint, {
            "grant_type": DEVICE_GRANT, "device_code": device.device_code, "client_id": self.config.client_id},
            self.config.http_timeout_seconds, "token endpoint")
        error = answer.get("error")
        if error in ("authorization_pending", "slow_down"):
            if error == "slow_down":
                device.interval = min(device.interval + 5, 60.0)
            raise JitError("signin.pending", "waiting for the sign-in on the other device")
        with self._devices_lock:
            self._devices.pop(nonce, None)
        if error:
            raise JitError("signin.device_denied", f"the identity provider ended the headless sign-in: "
                                                   f"{str(error)[:64]}")
        token = answer.get("id_token")
        if not isinstance(token, str):
            raise JitError("signin.provider_unavailable", "the identity provider answered without an ID token")
        return token

    def complete(self, id_token: str, nonce: str, csr_pem: str, hours: int, peer: str) -> SignedIn:
        try:
            return self._complete(id_token, nonce, csr_pem, hours, peer)
        except JitError as e:
            if e.code == "signin.pending":
                raise  # not a refusal: the person is still signing in
            actor = getattr(e, "signin_name", ANONYMOUS)
            self.ledger.record("signin.refused", actor, actor, {
                "code": e.code, "message": e.message, "peer": peer[:200], "issuer": self.config.issuer})
            log.info("sign-in refused (%s): %s", e.code, e.message)
            raise

    def _complete(self, id_token: str, nonce: str, csr_pem: str, hours: int, peer: str) -> SignedIn:
        cfg = self.config
        if not nonce or len(nonce) > MAX_NONCE_CHARS:
            raise JitError("signin.nonce", f"a sign-in needs the nonce from BeginSignIn (at most {MAX_NONCE_CHARS} "
                                           "characters)")
        hours = hours or cfg.certificate_hours
        if not 1 <= hours <= cfg.max_certificate_hours:
            raise JitError("signin.bad_lifetime", f"a signed-in certificate lasts 1 to {cfg.max_certificate_hours} "
                                                  f"hours here, not {hours}")
        public_key = _public_key(csr_pem)
        if id_token:
            token = self.checker.check(id_token, nonce)
        else:  # headless: the device code never left this server, so the token is this sign-in's
            token = self.checker.check(self._device_token(nonce), None)
        name, email, groups = self._identity(token)
        if self.ledger.is_broker(name):
            err = JitError("signin.name_reserved", f"`{name}` is a broker identity; a person cannot sign in as it")
            err.signin_name = name  # type: ignore[attr-defined]
            raise err
        now = self.clock()
        lifetime = dt.timedelta(hours=hours)
        cert_pem = self.ca.issue_client_certificate_for(name, public_key, lifetime, SOURCE_UNIT, now=now)
        cert = x509.load_pem_x509_certificate(cert_pem)
        expires = cert.not_valid_after_utc
        auth_time = token.claims.get("auth_time")
        amr = token.claims.get("amr")
        amr_list = tuple(str(a)[:32] for a in amr[:16]) if isinstance(amr, list) else ()
        person = people_store.Person(
            name, email, tuple(groups), cfg.issuer, token.subject[:512], now,
            dt.datetime.fromtimestamp(auth_time, dt.UTC) if isinstance(auth_time, (int, float)) else None, amr_list)
        with self.ledger.write() as w:
            outcome = people_store.consume_nonce(w.tx.conn, nonce, now)
            if outcome != "ok":
                err = JitError("signin.nonce", {
                    "used": "this sign-in's nonce was already used: an ID token is accepted once; sign in again",
                    "expired": "this sign-in took too long (its nonce expired): sign in again",
                    "unknown": "the nonce was not handed out by this control plane: sign in again",
                }[outcome])
                err.signin_name = name  # type: ignore[attr-defined]
                raise err
            people_store.save_person(w.tx.conn, person)
            w.commit([("signin.succeeded", name, name, {
                "issuer": cfg.issuer, "subject": person.subject, "groups": list(groups), "email": email,
                "serial": str(cert.serial_number), "expires_at": expires.isoformat(), "amr": list(amr_list),
                "kid": token.kid, "peer": peer[:200]}, now)])
        self.directory.put(name, groups)
        return SignedIn(name, tuple(groups), email, cert_pem, self.ca.ca_cert_pem, expires)

    def _identity(self, token: IdToken) -> tuple[str, str, list[str]]:
        return identity_of(self.config, token.claims)


def identity_of(cfg: OidcConfig, claims: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(user name, verified email or "", policy groups) from an ID token's checked claims."""
    verified = claims.get("email_verified") is True
    raw_name = claims.get(cfg.username_claim)
    if cfg.username_claim == "email" and not verified:
        raise JitError("signin.email_unverified",
                       "the user name comes from `email`, and the provider has not verified this email")
    if not isinstance(raw_name, str) or not raw_name:
        raise JitError("signin.claims", f"the ID token has no `{cfg.username_claim}` claim to name the user")
    if len(raw_name) > NAME_MAX:
        raise JitError("signin.claims", f"the user name in `{cfg.username_claim}` is longer than {NAME_MAX}")
    problem = name_problem(raw_name)
    if problem:
        raise JitError("signin.claims", f"the user name in `{cfg.username_claim}` is refused: {problem}")
    raw_email = claims.get("email")
    email = raw_email if verified and isinstance(raw_email, str) and len(raw_email) <= 320 else ""
    raw_groups = claims.get(cfg.groups_claim, [])
    if isinstance(raw_groups, str):
        raw_groups = [raw_groups]
    if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
        raise JitError("signin.claims", f"the `{cfg.groups_claim}` claim must be a list of group names")
    if len(raw_groups) > MAX_GROUPS:
        raise JitError("signin.claims", f"the `{cfg.groups_claim}` claim lists more than {MAX_GROUPS} groups")
    groups = [g for g in cfg.policy_groups(raw_groups) if len(g) <= NAME_MAX and not name_problem(g)]
    return raw_name, email, groups


def email_of(store: Any, name: str) -> str | None:
    """The verified email of the person called `name` (None: never signed in or no verified email).

    The one lookup other parts (notifications) use; reads the store's `people` table.
    """
    with store.read() as tx:
        return people_store.email_of(tx.conn, name)


__all__ = ["MAX_CSR_BYTES", "SOURCE_UNIT", "Begun", "SignInService", "SignedIn", "email_of", "identity_of"]
