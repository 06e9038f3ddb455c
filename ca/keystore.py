"""Private key storage: encrypted at rest, owner-only files, fail closed on loose modes.

Every CA private key is written as PKCS#8 PEM encrypted with the CA passphrase
(cryptography's `BestAvailableEncryption`: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC).
Files are 0600 and directories 0700; a key file, passphrase file or key
directory that others can read or write is refused, as sshd's StrictModes does.

The passphrase comes from exactly one of (two set at once is refused as ambiguous):
1. `JITGATE_CA_PASSPHRASE`: the value itself;
2. `JITGATE_CA_PASSPHRASE_FILE`: a file holding it (trailing newline ignored),
   owner-only (0600 or 0400) like a key, best outside the data directory
   (systemd's `LoadCredential=`, a mounted secret);
3. `JITGATE_CA_PASSPHRASE_COMMAND`: a command printing it on stdout (trailing
   newline ignored), e.g. `pass show jitgate/ca` or `vault kv get -field=pw
   secret/jitgate`; split like a shell line but run without a shell, stdin
   closed, within PASSPHRASE_COMMAND_TIMEOUT; a failure, a timeout, empty or
   oversized output stops the start with a message saying which;
4. none set: the embedded/dev default, a random 256-bit passphrase written to
   `<key_dir>/passphrase` (0600) on first start and read from there afterwards.

The default keeps `make run` and a single-machine trial working with no setup,
as Vault's dev mode does. It is acceptable there: the demo's keys guard only
that machine's demo, and there is no secret store apart from the disk the keys
are on. It is not acceptable in production: the passphrase then sits beside the
keys it protects, so a copy of the data directory (a backup, a snapshot, a disk)
opens them all, which is what encryption at rest is there to prevent.
Production installs set the file (outside the data directory) or the command; a
service that finds its passphrase file inside its own data directory logs one
warning at start saying so (`passphrase_at_start`).

PKCS#8's PBKDF2 uses few iterations, so the passphrase must be high-entropy
(the generated one is); a short human passphrase would be guessable offline.

`new_openssh_key` is the one exception: an unencrypted OpenSSH-format key
(0600) for OpenSSH programs that read it unattended (a user's client key, a
demo target's host key).
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import shlex
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ca.errors import KeyStoreError

PASSPHRASE_ENV = "JITGATE_CA_PASSPHRASE"
PASSPHRASE_FILE_ENV = "JITGATE_CA_PASSPHRASE_FILE"
PASSPHRASE_COMMAND_ENV = "JITGATE_CA_PASSPHRASE_COMMAND"
DEFAULT_PASSPHRASE_FILE = "passphrase"
# A secret manager's CLI answers in well under a second; 10 s allows a slow network or
# a cold start without leaving a service hanging at start.
PASSPHRASE_COMMAND_TIMEOUT = 10.0
# A passphrase is one line; more output than this is a command printing the wrong thing.
MAX_PASSPHRASE_BYTES = 4096
# How much of a failing command's stderr the error quotes (its first line, cut here).
_STDERR_QUOTE = 200

_PRIVATE_FILE_MODE = 0o600
_PRIVATE_DIR_MODE = 0o700

log = logging.getLogger("jitgate.keys")


@dataclass(frozen=True)
class Passphrase:
    """The key passphrase and where it came from (for messages; the value never appears in them)."""

    value: bytes = field(repr=False)
    source: str
    # The passphrase file, when it lies inside the data directory whose keys it encrypts.
    beside_keys: Path | None = None

    def warning(self) -> str | None:
        """The start-up warning when the passphrase lies beside the keys, else None."""
        if self.beside_keys is None:
            return None
        return (f"the key passphrase is read from `{self.beside_keys}`, inside the data directory whose keys "
                "it encrypts: anyone who can read that directory or a backup of it can decrypt them. "
                f"Outside a demo, keep it elsewhere: set {PASSPHRASE_FILE_ENV} to a file outside the data "
                f"directory, or {PASSPHRASE_COMMAND_ENV} to a command that prints it")


def resolve_passphrase(key_dir: Path, environ: Mapping[str, str] | None = None) -> Passphrase:
    """The key passphrase from the environment, or from (or newly into) `<key_dir>/passphrase`.

    `environ` defaults to `os.environ`; tests pass their own mapping. The data
    directory, for `beside_keys`, is `key_dir`'s parent (where a service's other
    keys live too).
    """
    env = os.environ if environ is None else environ
    key_dir = Path(key_dir)
    given = [name for name in (PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, PASSPHRASE_COMMAND_ENV) if name in env]
    if len(given) > 1:
        raise KeyStoreError("ca.passphrase_ambiguous",
                            f"{', '.join(given)} are set at once: set only one source of the key passphrase")
    for name in given:
        if not env[name]:
            raise KeyStoreError("ca.passphrase_empty", f"{name} is set but empty")
    if PASSPHRASE_ENV in given:
        return Passphrase(env[PASSPHRASE_ENV].encode(), f"${PASSPHRASE_ENV}")
    if PASSPHRASE_COMMAND_ENV in given:
        return Passphrase(passphrase_from_command(env[PASSPHRASE_COMMAND_ENV]), f"${PASSPHRASE_COMMAND_ENV}")
    if PASSPHRASE_FILE_ENV in given:
        path = Path(env[PASSPHRASE_FILE_ENV]).expanduser()
    else:
        path = _default_passphrase_file(key_dir)
    return Passphrase(_read_passphrase_file(path), f"file `{path}`",
                      beside_keys=path if _inside(path, key_dir.parent) else None)


def passphrase_from_env_or_dir(key_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The key passphrase's value (see `resolve_passphrase`)."""
    return resolve_passphrase(key_dir, environ).value


def passphrase_at_start(key_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The passphrase for a service starting: resolved once (a command runs once), with one
    warning logged when it lies beside the keys it protects."""
    passphrase = resolve_passphrase(key_dir, environ)
    log.debug("key passphrase for `%s` from %s", key_dir, passphrase.source)
    warning = passphrase.warning()
    if warning:
        log.warning("%s", warning)
    return passphrase.value


def passphrase_from_command(command: str, timeout: float = PASSPHRASE_COMMAND_TIMEOUT) -> bytes:
    """Run `command` (split like a shell line, no shell, this process's environment) and return
    its stdout without the trailing newline; any failure is a KeyStoreError naming the command,
    never its output."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise KeyStoreError("ca.passphrase_command",
                            f"{PASSPHRASE_COMMAND_ENV} `{command}` cannot be split: {exc}") from None
    if not argv:
        raise KeyStoreError("ca.passphrase_empty", f"{PASSPHRASE_COMMAND_ENV} is set but empty")
    what = f"passphrase command `{command}`"
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise KeyStoreError("ca.passphrase_command", f"{what} did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise KeyStoreError("ca.passphrase_command", f"cannot run {what}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        said = f": {lines[0][:_STDERR_QUOTE]!r}" if lines else ""
        status = f"signal {-done.returncode}" if done.returncode < 0 else f"status {done.returncode}"
        raise KeyStoreError("ca.passphrase_command", f"{what} exited with {status}{said}")
    value = done.stdout.rstrip(b"\r\n")
    if not value:
        raise KeyStoreError("ca.passphrase_empty", f"{what} printed nothing")
    if len(value) > MAX_PASSPHRASE_BYTES:
        raise KeyStoreError("ca.passphrase_command", f"{what} printed {len(value)} bytes, over the "
                            f"{MAX_PASSPHRASE_BYTES}-byte limit of a passphrase")
    return value


def _default_passphrase_file(key_dir: Path) -> Path:
    """`<key_dir>/passphrase`, made (256 random bits, 0600) on first use."""
    ensure_private_dir(key_dir)
    path = key_dir / DEFAULT_PASSPHRASE_FILE
    if not path.exists():
        # token_urlsafe(32): 256 random bits, printable so an operator can copy it.
        try:
            write_private_file(path, secrets.token_urlsafe(32).encode() + b"\n", exclusive=True)
        except FileExistsError:
            pass  # another process created it first; read theirs
    return path


def _inside(path: Path, directory: Path) -> bool:
    """True when `path` (symlinks followed) lies inside `directory`."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(directory))
    except OSError:
        return False


def _read_passphrase_file(path: Path) -> bytes:
    data = read_private_file(path, what="passphrase file")
    value = data.rstrip(b"\r\n")
    if not value:
        raise KeyStoreError("ca.passphrase_empty", f"passphrase file `{path}` is empty")
    return value


def ensure_private_dir(path: Path) -> Path:
    """Create `path` and any missing parents at 0700; refuse an existing `path` others can access."""
    path = Path(path)
    if not path.exists():
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=_PRIVATE_DIR_MODE)
            except FileExistsError:
                continue  # made concurrently; its mode is checked below when it is the leaf
            os.chmod(directory, _PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
        check_private_mode(path, what="key directory")
        return path
    if not path.is_dir():
        raise KeyStoreError("ca.not_a_directory", f"`{path}` exists and is not a directory")
    check_private_mode(path, what="key directory")
    return path


def check_private_mode(path: Path, what: str = "key file") -> None:
    """Raise `ca.key_permissions` when `path` is accessible by group/others or owned by someone else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyStoreError("ca.key_missing", f"{what} `{path}` does not exist") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        wanted = "0700" if stat.S_ISDIR(st.st_mode) else "0600"
        raise KeyStoreError(
            "ca.key_permissions",
            f"{what} `{path}` has mode {mode:04o}, refusing to use it: "
            f"it must not be accessible by group or others (chmod {wanted} `{path}`)",
        )
    if st.st_uid != os.geteuid():
        raise KeyStoreError(
            "ca.key_owner",
            f"{what} `{path}` is owned by uid {st.st_uid}, not by this process (uid {os.geteuid()})",
        )


def write_private_file(path: Path, data: bytes, exclusive: bool = False) -> None:
    """Write `data` to `path` atomically with mode 0600 (temp file, fsync, rename).

    With `exclusive=True` an existing file is never replaced (FileExistsError).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)  # fails with FileExistsError instead of replacing
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_openssh_key(path: Path) -> str:
    """Write a new Ed25519 key to `path` (OpenSSH format, unencrypted, 0600, never replacing a file).

    Returns its public line (`ssh-ed25519 AAAA...`).
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def read_private_file(path: Path, what: str = "key file") -> bytes:
    """Read a file after checking it is 0600-or-stricter and ours."""
    path = Path(path)
    check_private_mode(path, what=what)
    return path.read_bytes()


def save_private_key(path: Path, key: PrivateKeyTypes, passphrase: bytes) -> None:
    """Write `key` to `path` as passphrase-encrypted PKCS#8 PEM, mode 0600."""
    if not passphrase:
        raise KeyStoreError("ca.passphrase_empty", "refusing to store a CA key without a passphrase")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    write_private_file(path, pem)


def load_private_key(path: Path, passphrase: bytes) -> PrivateKeyTypes:
    """Load an encrypted PEM private key, refusing loose modes, plaintext keys and a wrong passphrase."""
    data = read_private_file(path)
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        # cryptography raises TypeError when the key is not encrypted but a password was given.
        raise KeyStoreError(
            "ca.key_not_encrypted", f"key file `{path}` is not encrypted; CA keys must be encrypted at rest"
        ) from None
    except ValueError:
        # A wrong passphrase usually fails the CBC padding, but about 1 in 300 times it
        # decrypts to garbage that then fails to parse: cryptography's message differs, so
        # decide by whether the file itself is a well-formed encrypted PKCS#8 structure.
        if _looks_like_encrypted_pkcs8(data):
            raise KeyStoreError(
                "ca.bad_passphrase", f"cannot decrypt `{path}`: wrong CA passphrase (or the file is damaged)"
            ) from None
        raise KeyStoreError("ca.key_corrupt", f"key file `{path}` is not a valid PEM private key") from None


def _looks_like_encrypted_pkcs8(pem: bytes) -> bool:
    """True for `ENCRYPTED PRIVATE KEY` PEM whose body is base64 of a DER SEQUENCE of plausible size."""
    header, footer = b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"-----END ENCRYPTED PRIVATE KEY-----"
    text = pem.strip()
    if not (text.startswith(header) and text.endswith(footer)):
        return False
    try:
        der = base64.b64decode(b"".join(text[len(header) : -len(footer)].split()), validate=True)
    except binascii.Error:
        return False
    return len(der) >= 64 and der[0] == 0x30
