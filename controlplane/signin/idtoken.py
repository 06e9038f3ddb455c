"""Checking an OpenID Connect ID token: discovery, keys, signature, claims (joserfc does the JOSE).

`ProviderKeys` reads the issuer's discovery document once (its `issuer` must equal the
configured one, exactly) and its JWKS, and refetches the JWKS when a token names a key
id it does not hold (the provider rotated its keys), at most once per
`jwks_min_refresh_seconds`: a flood of made-up key ids costs the provider one fetch per
interval, not one per token. Every fetch is bounded (time, bytes, keys).

`TokenChecker.check` refuses, each with its own code and a plain message: a token too
big or not a compact JWS, another issuer, an algorithm not allowed (never `none` or
an HMAC: the client is public), an unknown key, a bad signature, another audience
(or an `azp` naming another client), no or another nonce, expired, not yet valid or
issued in the future. Nonce *reuse* is the store's job (`store.people.consume_nonce`).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import errors as jose_errors
from joserfc import jws, jwt
from joserfc.jwk import KeySet

from controlplane.errors import JitError
from controlplane.signin.config import OidcConfig

MAX_TOKEN_BYTES = 16 * 1024
MAX_DOCUMENT_BYTES = 64 * 1024  # discovery document and JWKS
MAX_KEYS = 32
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def _refuse(code: str, message: str) -> JitError:
    return JitError(code, message)


def fetch_json(url: str, timeout: float, what: str) -> dict[str, Any]:
    """GET a JSON object of at most MAX_DOCUMENT_BYTES; any failure is `signin.provider_unavailable`."""
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client, client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise _refuse("signin.provider_unavailable",
                              f"the identity provider's {what} at `{url}` answered HTTP {resp.status_code}")
            body = b""
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise _refuse("signin.provider_unavailable",
                                  f"the identity provider's {what} is larger than {MAX_DOCUMENT_BYTES} bytes")
    except httpx.HTTPError as e:
        raise _refuse("signin.provider_unavailable",
                      f"cannot reach the identity provider's {what} at `{url}`: {type(e).__name__}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise _refuse("signin.provider_unavailable", f"the identity provider's {what} is not JSON") from None
    if not isinstance(data, dict):
        raise _refuse("signin.provider_unavailable", f"the identity provider's {what} is not a JSON object")
    return data


def post_form(url: str, data: dict[str, str], timeout: float, what: str) -> dict[str, Any]:
    """POST a form to the provider; its JSON answer (an OAuth error answer included), bounded."""
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            resp = client.post(url, data=data)
    except httpx.HTTPError as e:
        raise _refuse("signin.provider_unavailable",
                      f"cannot reach the identity provider's {what}: {type(e).__name__}") from None
    if len(resp.content) > MAX_DOCUMENT_BYTES:
        raise _refuse("signin.provider_unavailable", f"the identity provider's {what} answer is too large")
    try:
        answer = resp.json()
    except ValueError:
        raise _refuse("signin.provider_unavailable",
                      f"the identity provider's {what} answered HTTP {resp.status_code} without JSON") from None
    if not isinstance(answer, dict):
        raise _refuse("signin.provider_unavailable", f"the identity provider's {what} answer is not an object")
    return answer


class ProviderKeys:
    """The issuer's discovery document and signing keys, refetched on an unknown key id (bounded)."""

    def __init__(self, config: OidcConfig, fetch: Callable[[str, float, str], dict[str, Any]] = fetch_json,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._fetch = fetch
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._jwks_uri = ""
        self.document: dict[str, Any] = {}
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self.fetches = 0  # JWKS fetches so far (tests check the bound)

    def discovery_url(self) -> str:
        return self._config.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def _discover(self) -> str:
        if not self._jwks_uri:
            doc = self._fetch(self.discovery_url(), self._config.http_timeout_seconds, "discovery document")
            if doc.get("issuer") != self._config.issuer:
                raise _refuse("signin.provider_unavailable",
                              f"the discovery document names issuer `{doc.get('issuer')}`, "
                              f"not the configured `{self._config.issuer}`")
            uri = doc.get("jwks_uri")
            if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
                raise _refuse("signin.provider_unavailable", "the discovery document has no usable `jwks_uri`")
            self._jwks_uri = uri
            self.document = doc
        return self._jwks_uri

    def endpoint(self, name: str) -> str:
        """An endpoint from the discovery document (`token_endpoint`, ...); "" when absent."""
        with self._lock:
            self._discover()
            value = self.document.get(name)
        return value if isinstance(value, str) and value.startswith(("https://", "http://")) else ""

    def _refetch(self) -> None:
        data = self._fetch(self._discover(), self._config.http_timeout_seconds, "key set (JWKS)")
        keys = data.get("keys")
        if not isinstance(keys, list) or len(keys) > MAX_KEYS:
            raise _refuse("signin.provider_unavailable", f"the provider's JWKS must list at most {MAX_KEYS} keys")
        usable = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig" and "kid" in k]
        try:
            self._keys = KeySet.import_key_set({"keys": usable})
        except (jose_errors.JoseError, ValueError, TypeError):
            raise _refuse("signin.provider_unavailable",
                          "the provider's JWKS holds a key that cannot be read") from None
        self._fetched_at = self._monotonic()
        self.fetches += 1

    def key_for(self, kid: str) -> Any:
        """The provider's key `kid`; one refetch when unknown and the last fetch is old enough."""
        with self._lock:
            if self._keys is None:
                self._refetch()
            key = self._find(kid)
            if key is None and self._monotonic() - self._fetched_at >= self._config.jwks_min_refresh_seconds:
                self._refetch()
                key = self._find(kid)
            if key is None:
                raise _refuse("signin.unknown_key",
                              f"the ID token is signed with key `{kid}`, which the provider does not publish")
            return key

    def _find(self, kid: str) -> Any:
        assert self._keys is not None
        for key in self._keys.keys:
            if key.kid == kid:
                return key
        return None


@dataclass(frozen=True)
class IdToken:
    """The checked claims of an ID token."""

    claims: dict[str, Any]
    kid: str = ""

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])


class TokenChecker:
    """Checks ID tokens for one configured provider and client."""

    def __init__(self, config: OidcConfig, keys: ProviderKeys, now: Callable[[], float] = time.time) -> None:
        self._config = config
        self._keys = keys
        self._now = now

    def check(self, token: str, nonce: str | None) -> IdToken:
        """The checked token; `nonce` None only for a device grant the control plane ran itself."""
        cfg = self._config
        if len(token) > MAX_TOKEN_BYTES:
            raise _refuse("signin.token_invalid", f"the ID token is larger than {MAX_TOKEN_BYTES} bytes")
        try:
            parts = jws.extract_compact(token.encode("ascii"))
            unverified = json.loads(parts.payload)
        except (jose_errors.JoseError, ValueError, UnicodeError):
            raise _refuse("signin.token_invalid", "the ID token is not a compact JWS (header.payload.signature)") \
                from None
        if not isinstance(unverified, dict):
            raise _refuse("signin.token_invalid", "the ID token's payload is not a JSON object")
        # The issuer is read before the signature only to say *why* a token from elsewhere is refused.
        if unverified.get("iss") != cfg.issuer:
            raise _refuse("signin.wrong_issuer",
                          f"the ID token was issued by `{str(unverified.get('iss'))[:200]}`, "
                          f"not by the configured provider `{cfg.issuer}`")
        header = parts.protected
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _refuse("signin.token_invalid", f"the ID token's algorithm `{str(alg)[:32]}` is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise _refuse("signin.unknown_key", "the ID token names no key id (`kid`)")
        key = self._keys.key_for(kid)
        try:
            decoded = jwt.decode(token, key, algorithms=[alg])
        except jose_errors.BadSignatureError:
            raise _refuse("signin.bad_signature",
                          f"the ID token's signature does not verify with the provider's key `{kid}`") from None
        except jose_errors.JoseError as e:
            raise _refuse("signin.token_invalid", f"the ID token cannot be verified: {e.error}") from None
        claims = decoded.claims
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": cfg.issuer}, "sub": {"essential": True},
            "aud": {"essential": True, "values": list(cfg.audiences)}, "exp": {"essential": True},
            "iat": {"essential": True}}
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(now=lambda: int(self._now()), leeway=cfg.clock_skew_seconds, **options)
        try:
            registry.validate(claims)
        except jose_errors.ExpiredTokenError:
            raise _refuse("signin.expired", "the ID token has expired: sign in again") from None
        except jose_errors.MissingClaimError as e:
            raise _refuse("signin.token_invalid", f"the ID token lacks the claim {e.description}") from None
        except jose_errors.InvalidClaimError as e:
            raise self._claim_error(e.claim, claims) from None
        except jose_errors.JoseError as e:
            raise _refuse("signin.token_invalid", f"the ID token was refused: {e.error}") from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") not in cfg.audiences:
            raise _refuse("signin.wrong_audience", "the ID token names several audiences and `azp` is not jitgate")
        return IdToken(claims, kid)

    def _claim_error(self, claim: str, claims: dict[str, Any]) -> JitError:
        cfg = self._config
        if claim == "aud":
            wanted = "` or `".join(cfg.audiences)
            return _refuse("signin.wrong_audience",
                           f"the ID token is for client `{str(claims.get('aud'))[:200]}`, not `{wanted}`")
        if claim == "nonce":
            return _refuse("signin.nonce", "the ID token's nonce is not the one this sign-in was given")
        if claim in ("iat", "nbf"):
            return _refuse("signin.token_invalid", f"the ID token's `{claim}` lies in the future")
        return _refuse("signin.token_invalid", f"the ID token's claim `{claim}` is invalid")


__all__ = ["ALGORITHMS", "MAX_TOKEN_BYTES", "IdToken", "ProviderKeys", "TokenChecker", "fetch_json", "post_form"]
