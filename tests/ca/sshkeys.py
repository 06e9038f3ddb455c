"""Helpers for the SSH CA tests: user key pairs as OpenSSH lines."""
from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def user_keypair() -> tuple[ed25519.Ed25519PrivateKey, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return key, line + " alice@laptop"


def private_openssh(key: ed25519.Ed25519PrivateKey) -> bytes:
    """Unencrypted OpenSSH private key (test-only, for ssh/ssh-keygen)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )


def blob(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


def line_from_blob(type_name: str, data: bytes) -> str:
    return f"{type_name} {base64.b64encode(data).decode()}"
