"""The recorder's Ed25519 signing key: encrypted at rest with a passphrase, mode 0600."""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ca.keystore import write_private_file
from recorder.events import RecordingError

PRIVATE_NAME = "recorder_key.pem"
PUBLIC_NAME = "recorder_key.pub"


def load_or_create_signing_key(key_dir: Path, passphrase: bytes) -> Ed25519PrivateKey:
    """Load the recorder key from `key_dir`, creating it (encrypted, 0600) if absent."""
    if not passphrase:
        raise RecordingError("a non-empty recorder key passphrase is required")
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path = key_dir / PRIVATE_NAME
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        try:
            # Written whole, then linked into place: readers never see a half-written key, and of
            # two processes racing to create it exactly one wins (FileExistsError for the other).
            write_private_file(private_path, pem, exclusive=True)
        except FileExistsError:
            pass  # another process created it first: load theirs
        else:
            public = key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            tmp = key_dir / (PUBLIC_NAME + ".tmp")
            tmp.write_bytes(public + b" jitgate-recorder\n")
            os.replace(tmp, key_dir / PUBLIC_NAME)
            return key
    mode = private_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise RecordingError(f"recorder key {private_path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        loaded = serialization.load_pem_private_key(private_path.read_bytes(), password=passphrase)
    except (ValueError, TypeError):
        raise RecordingError(f"cannot decrypt recorder key {private_path}: wrong passphrase?") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise RecordingError(f"recorder key {private_path} is not an Ed25519 key")
    return loaded


def load_public_key(key_dir: Path) -> Ed25519PublicKey | None:
    """The recorder's public key from `key_dir`, or None if there is none yet."""
    path = key_dir / PUBLIC_NAME
    if not path.exists():
        return None
    return parse_public_key(path.read_bytes(), str(path))


def parse_public_key(data: bytes, where: str = "public key") -> Ed25519PublicKey:
    """An OpenSSH `ssh-ed25519 AAAA...` line -> the key."""
    try:
        key = serialization.load_ssh_public_key(b" ".join(data.split()[:2]))
    except (ValueError, IndexError):
        raise RecordingError(f"{where}: not an OpenSSH public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise RecordingError(f"{where}: not an Ed25519 key")
    return key
