"""Key storage: encrypted at rest, 0600/0700, loose modes and wrong passphrases refused."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ca.errors import KeyStoreError
from ca.keystore import (
    PASSPHRASE_ENV,
    PASSPHRASE_FILE_ENV,
    ensure_private_dir,
    load_private_key,
    passphrase_from_env_or_dir,
    save_private_key,
    write_private_file,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_key_is_encrypted_0600_and_round_trips(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "k.key"
    save_private_key(path, key, b"s3cret-passphrase")
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert mode(path) == 0o600
    with pytest.raises(TypeError):  # cryptography itself cannot read it without the passphrase
        serialization.load_pem_private_key(data, password=None)
    loaded = load_private_key(path, b"s3cret-passphrase")
    assert loaded.public_key() == key.public_key()  # type: ignore[union-attr]
    assert not list(tmp_path.glob(".*.tmp")), "temp file left behind"


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    save_private_key(path, ed25519.Ed25519PrivateKey.generate(), b"right")
    # Many tries: a wrong passphrase sometimes passes CBC padding and fails later, differently.
    for i in range(500):
        with pytest.raises(KeyStoreError) as e:
            load_private_key(path, b"wrong-%d" % i)
        assert e.value.code == "ca.bad_passphrase", e.value.message
    assert "wrong CA passphrase" in str(e.value)


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o660, 0o644])
def test_loose_key_file_is_refused(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "k.key"
    save_private_key(path, ed25519.Ed25519PrivateKey.generate(), b"pw")
    os.chmod(path, loose)
    with pytest.raises(KeyStoreError) as e:
        load_private_key(path, b"pw")
    assert e.value.code == "ca.key_permissions"
    assert f"{loose:04o}" in str(e.value) and "chmod 0600" in str(e.value)


def test_plaintext_key_is_refused(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "plain.key"
    write_private_file(
        path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    with pytest.raises(KeyStoreError) as e:
        load_private_key(path, b"pw")
    assert e.value.code == "ca.key_not_encrypted"


def test_corrupt_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    write_private_file(path, b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(KeyStoreError) as e:
        load_private_key(path, b"pw")
    assert e.value.code == "ca.key_corrupt"


def test_empty_passphrase_refused_for_storage(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError) as e:
        save_private_key(tmp_path / "k.key", ed25519.Ed25519PrivateKey.generate(), b"")
    assert e.value.code == "ca.passphrase_empty"


def test_private_dir_created_0700_and_loose_existing_refused(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        d = ensure_private_dir(tmp_path / "a" / "ca")
    finally:
        os.umask(old)
    assert mode(d) == 0o700 and mode(tmp_path / "a") == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o755)
    with pytest.raises(KeyStoreError) as e:
        ensure_private_dir(loose)
    assert e.value.code == "ca.key_permissions"
    assert "chmod 0700" in str(e.value)


def test_passphrase_from_env_value(tmp_path: Path) -> None:
    assert passphrase_from_env_or_dir(tmp_path / "ca", {PASSPHRASE_ENV: "from-env"}) == b"from-env"
    assert not (tmp_path / "ca").exists(), "env passphrase must not create a passphrase file"
    with pytest.raises(KeyStoreError) as e:
        passphrase_from_env_or_dir(tmp_path / "ca", {PASSPHRASE_ENV: ""})
    assert e.value.code == "ca.passphrase_empty"


def test_passphrase_from_file(tmp_path: Path) -> None:
    f = tmp_path / "pp"
    write_private_file(f, b"from-file\n")
    assert passphrase_from_env_or_dir(tmp_path / "ca", {PASSPHRASE_FILE_ENV: str(f)}) == b"from-file"
    os.chmod(f, 0o644)
    with pytest.raises(KeyStoreError) as e:
        passphrase_from_env_or_dir(tmp_path / "ca", {PASSPHRASE_FILE_ENV: str(f)})
    assert e.value.code == "ca.key_permissions"
    with pytest.raises(KeyStoreError) as e:
        passphrase_from_env_or_dir(tmp_path / "ca", {PASSPHRASE_FILE_ENV: str(tmp_path / "missing")})
    assert e.value.code == "ca.key_missing"
    # Two sources at once are ambiguous (one would be silently ignored): refused.
    with pytest.raises(KeyStoreError) as e:
        passphrase_from_env_or_dir(tmp_path / "ca", {PASSPHRASE_ENV: "v", PASSPHRASE_FILE_ENV: str(f)})
    assert e.value.code == "ca.passphrase_ambiguous"


def test_dev_default_passphrase_file_made_once(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    first = passphrase_from_env_or_dir(ca_dir, {})
    assert len(first) >= 40  # 256 random bits, url-safe base64
    assert mode(ca_dir / "passphrase") == 0o600
    assert mode(ca_dir) == 0o700
    assert passphrase_from_env_or_dir(ca_dir, {}) == first
    assert passphrase_from_env_or_dir(tmp_path / "other", {}) != first
    os.chmod(ca_dir / "passphrase", 0o640)
    with pytest.raises(KeyStoreError) as e:
        passphrase_from_env_or_dir(ca_dir, {})
    assert e.value.code == "ca.key_permissions"
