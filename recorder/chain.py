"""The hash chain and the signed seal that make a recording tamper-evident.

Every line of a recording's data file (its header, then each event) is one
link: `h[i] = SHA-256(h[i-1] || line_i)`, starting from a genesis hash bound to
the recording's reference, so lines cannot be edited, dropped, inserted,
reordered or moved to another recording without breaking the chain. The chain
is kept in a sidecar file, one hex hash per line, so the data file stays a
plain asciicast or JSON-lines file. At close a `Seal` (event count, byte
counts, end reason, final hash) is signed with the recorder's Ed25519 key and
appended to the sidecar.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, fields

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

GENESIS_DOMAIN = b"jitgate-recording-chain-v1\x00"
SEAL_DOMAIN = b"jitgate-recording-seal-v1\x00"


def genesis(ref: str) -> bytes:
    """The hash before the first line: binds the chain to the recording's reference."""
    return hashlib.sha256(GENESIS_DOMAIN + ref.encode("utf-8")).digest()


def link(previous: bytes, line: bytes) -> bytes:
    """The next hash: covers the previous hash and one line (without its newline)."""
    h = hashlib.sha256(previous)
    h.update(line)
    return h.digest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """OpenSSH-style fingerprint of a recorder key: `SHA256:<base64>`."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class Seal:
    """The signed end of a recording. `events` excludes the header line."""

    ref: str
    session_id: str
    kind: str
    events: int
    bytes_in: int
    bytes_out: int
    started_at: float
    ended_at: float
    end_reason: str
    final_hash: str  # hex
    key_id: str
    signature: str = ""  # base64 Ed25519 signature over payload()
    version: int = 1

    def payload(self) -> bytes:
        """The signed bytes: every field but the signature, canonical JSON."""
        body = {k: v for k, v in asdict(self).items() if k != "signature"}
        return SEAL_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def to_line(self) -> str:
        return json.dumps({"seal": asdict(self)}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_line(cls, line: str) -> Seal:
        """Parse a sidecar seal line (ValueError when malformed)."""
        try:
            body = json.loads(line)["seal"]
            names = {f.name for f in fields(cls)}
            if set(body) != names:
                raise ValueError(f"seal fields differ: {sorted(set(body) ^ names)}")
            return cls(**body)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed seal: {exc}") from None


def sign_seal(seal: Seal, private_key: Ed25519PrivateKey) -> Seal:
    """The seal with its signature filled in."""
    sig = private_key.sign(seal.payload())
    return Seal(**{**asdict(seal), "signature": base64.b64encode(sig).decode("ascii")})


def check_seal_signature(seal: Seal, trusted: list[Ed25519PublicKey]) -> str | None:
    """None when a trusted key signed the seal, else a plain problem."""
    for public_key in trusted:
        if key_id(public_key) != seal.key_id:
            continue
        try:
            public_key.verify(base64.b64decode(seal.signature, validate=True), seal.payload())
            return None
        except (InvalidSignature, ValueError):
            return f"seal signature is invalid (key {seal.key_id})"
    return f"seal is signed by an untrusted key {seal.key_id}"
