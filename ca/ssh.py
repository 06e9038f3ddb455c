"""SSH certificate authorities: the user CA and the upstream CA, with rotation.

One class serves both roles; they differ only by name and by who trusts them
(the broker trusts the user CA; targets' sshd trusts the upstream CA through
`TrustedUserCAKeys`, see `sshd_trusted_ca_line`).

A CA named `N` lives in a 0700 directory, which may be shared with other CAs:
- `N-<generation>.key`: the current Ed25519 signing key, encrypted PKCS#8 PEM, 0600;
- `N.json`: state (0600): the current generation, its public key and
  `signed_until` (the latest `valid_before` it has signed, rounded up to the
  next minute), and the rotated-out public keys with the time until which they
  stay trusted.

Rotation makes a new key the signer and deletes the old private key at once
(it will never sign again); the old public key stays in
`trusted_public_key_lines()` until the latest `valid_before` it signed (rounded
up to the minute), so certificates already out keep working until they expire,
then it is dropped. `rotate(now, keep_old_trusted=False)` drops it at once, for
a key believed compromised: its certificates stop working immediately.

The state is owned by one process: several processes signing with the same
CA directory would each keep their own view of the latest `valid_before`.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ca.errors import IssueError, KeyStoreError
from ca.keystore import (
    ensure_private_dir,
    load_private_key,
    read_private_file,
    save_private_key,
    write_private_file,
)

USER_CA_NAME = "jitgate-user-ca"
UPSTREAM_CA_NAME = "jitgate-upstream-ca"

_STATE_VERSION = 1
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_MAX_KEY_ID = 256
_MAX_U64 = 2**64 - 1
_MIN_RSA_BITS = 2048
# Granularity of the recorded "latest valid_before signed" (see _record_valid_before).
SIGNED_UNTIL_STEP = dt.timedelta(seconds=60)


def new_serial() -> int:
    """A random non-zero 63-bit certificate serial (0 cannot be revoked in OpenSSH KRLs)."""
    while True:
        serial = secrets.randbits(63)
        if serial:
            return serial


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise IssueError("ssh.naive_datetime", f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def _from_iso(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _public_line(key: ed25519.Ed25519PublicKey, comment: str) -> str:
    return f"{key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()} {comment}"


@dataclass
class _RetiredKey:
    generation: int
    public_key_line: str
    retired_at: dt.datetime
    trusted_until: dt.datetime


@dataclass
class _State:
    generation: int
    public_key_line: str
    created_at: dt.datetime
    signed_until: dt.datetime | None
    retired: list[_RetiredKey]

    def to_json(self, name: str) -> bytes:
        doc = {
            "version": _STATE_VERSION,
            "name": name,
            "current": {
                "generation": self.generation,
                "public_key": self.public_key_line,
                "created_at": _iso(self.created_at),
                "signed_until": _iso(self.signed_until),
            },
            "retired": [
                {
                    "generation": r.generation,
                    "public_key": r.public_key_line,
                    "retired_at": _iso(r.retired_at),
                    "trusted_until": _iso(r.trusted_until),
                }
                for r in self.retired
            ],
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, path: Path) -> _State:
        try:
            doc = json.loads(data)
            if doc.get("version") != _STATE_VERSION:
                raise KeyStoreError(
                    "ca.state_version", f"`{path}` has state version {doc.get('version')!r}, expected {_STATE_VERSION}"
                )
            cur = doc["current"]
            return cls(
                generation=int(cur["generation"]),
                public_key_line=str(cur["public_key"]),
                created_at=_from_iso(cur["created_at"]),  # type: ignore[arg-type]
                signed_until=_from_iso(cur["signed_until"]),
                retired=[
                    _RetiredKey(
                        int(r["generation"]), str(r["public_key"]),
                        _from_iso(r["retired_at"]), _from_iso(r["trusted_until"]),  # type: ignore[arg-type]
                    )
                    for r in doc["retired"]
                ],
            )
        except KeyStoreError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise KeyStoreError("ca.state_corrupt", f"CA state file `{path}` is corrupt: {e}") from None


def _parse_subject_key(public_key: str) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The user's public key from an OpenSSH line; certificates and weak keys are refused."""
    try:
        parsed = serialization.load_ssh_public_identity(public_key.strip().encode())
    except Exception as e:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise IssueError("ssh.bad_public_key", f"not an OpenSSH public key line: {e}") from None
    if isinstance(parsed, serialization.SSHCertificate):
        raise IssueError("ssh.bad_public_key", "expected a public key, got a certificate")
    if isinstance(parsed, rsa.RSAPublicKey) and parsed.key_size < _MIN_RSA_BITS:
        raise IssueError("ssh.bad_public_key", f"RSA key of {parsed.key_size} bits is too weak (< {_MIN_RSA_BITS})")
    if not isinstance(parsed, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise IssueError("ssh.bad_public_key", f"unsupported key type {type(parsed).__name__}")
    return parsed


def _check_text(value: str, what: str, max_len: int, allow_space: bool) -> bytes:
    if not value:
        raise IssueError("ssh.bad_field", f"{what} must not be empty")
    if len(value) > max_len:
        raise IssueError("ssh.bad_field", f"{what} is longer than {max_len} characters")
    for c in value:
        if ord(c) < 0x20 or ord(c) == 0x7F or (not allow_space and c.isspace()):
            raise IssueError("ssh.bad_field", f"{what} {value!r} contains whitespace or control characters")
    return value.encode()


class SSHCertificateAuthority:
    """An Ed25519 SSH CA that signs OpenSSH user certificates and rotates its key."""

    def __init__(
        self, directory: Path, passphrase: bytes, name: str, key: ed25519.Ed25519PrivateKey, state: _State
    ) -> None:
        self._directory = directory
        self._passphrase = passphrase
        self._name = name
        self._key = key
        self._state = state
        # Signing may run on several gRPC worker threads; the state file is updated under this lock.
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def load_or_create(
        cls, directory: Path, passphrase: bytes, name: str = USER_CA_NAME, now: dt.datetime | None = None
    ) -> SSHCertificateAuthority:
        """Load CA `name` from `directory`, creating its first key (encrypted, 0600) when absent."""
        if not _NAME_RE.match(name):
            raise KeyStoreError("ca.bad_name", f"CA name `{name}` must be lowercase letters, digits and dashes")
        directory = ensure_private_dir(Path(directory))
        state_path = directory / f"{name}.json"
        if state_path.exists():
            state = _State.from_json(read_private_file(state_path, what="CA state file"), state_path)
            key_path = directory / f"{name}-{state.generation}.key"
            if not key_path.exists():
                raise KeyStoreError("ca.incomplete", f"SSH CA `{name}`: key file `{key_path}` is missing")
            key = load_private_key(key_path, passphrase)
            if not isinstance(key, ed25519.Ed25519PrivateKey) or (
                _public_line(key.public_key(), name).split()[:2] != state.public_key_line.split()[:2]
            ):
                raise KeyStoreError(
                    "ca.key_mismatch", f"`{key_path}` is not the key recorded in `{state_path}` for CA `{name}`"
                )
            ca = cls(directory, passphrase, name, key, state)
            ca._drop_expired(now or _utcnow())
            return ca
        if any(directory.glob(f"{name}-*.key")):
            raise KeyStoreError(
                "ca.incomplete", f"SSH CA `{name}` in `{directory}` has key files but no `{state_path.name}`"
            )
        now = now or _utcnow()
        key = ed25519.Ed25519PrivateKey.generate()
        state = _State(1, _public_line(key.public_key(), name), now, None, [])
        save_private_key(directory / f"{name}-1.key", key, passphrase)
        write_private_file(state_path, state.to_json(name))
        return cls(directory, passphrase, name, key, state)

    # -- public keys -----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The CA's name, also the comment of its public key lines."""
        return self._name

    def public_key_line(self) -> str:
        """The current signing key as an OpenSSH line: `ssh-ed25519 AAAA... <name>`."""
        return self._state.public_key_line

    def trusted_public_key_lines(self, now: dt.datetime | None = None) -> list[str]:
        """The current key, then rotated-out keys whose last certificate is still valid at `now`."""
        now = now or _utcnow()
        with self._lock:
            return [self._state.public_key_line] + [
                r.public_key_line for r in self._state.retired if r.trusted_until > now
            ]

    # -- signing ---------------------------------------------------------------------

    def sign_user_certificate(
        self,
        public_key: str,
        key_id: str,
        principals: list[str],
        valid_after: dt.datetime,
        valid_before: dt.datetime,
        serial: int,
        permit_pty: bool,
        permit_port_forwarding: bool,
        permit_agent_forwarding: bool,
        force_command: str | None = None,
    ) -> str:
        """Sign `public_key` as an OpenSSH user certificate; returns the certificate line.

        Times are truncated to whole seconds (`valid_before` rounds down, so the
        certificate never outlives the grant). X11 forwarding and user rc are
        never permitted. Raises `IssueError` (`ssh.*`) on invalid input.
        """
        subject = _parse_subject_key(public_key)
        kid = _check_text(key_id, "key id", _MAX_KEY_ID, allow_space=False)
        if not principals:
            # An empty principal list means "any user" to some OpenSSH checks: never issue one.
            raise IssueError("ssh.no_principals", "a user certificate needs at least one principal")
        names = [_check_text(p, "principal", 256, allow_space=False) for p in principals]
        if any(b"," in n for n in names):
            raise IssueError("ssh.bad_field", "principals must not contain commas")
        after = int(_aware(valid_after, "valid_after").timestamp())
        before = int(_aware(valid_before, "valid_before").timestamp())
        if before <= after:
            raise IssueError(
                "ssh.bad_validity",
                f"valid_before {valid_before.isoformat()} is not after valid_after {valid_after.isoformat()}",
            )
        if after < 0:
            raise IssueError("ssh.bad_validity", "valid_after before 1970 is not supported")
        if not 0 < serial <= _MAX_U64:
            raise IssueError("ssh.bad_serial", f"serial must be in 1..2^64-1, got {serial}")
        builder = (
            serialization.SSHCertificateBuilder()
            .public_key(subject)
            .serial(serial)
            .type(serialization.SSHCertificateType.USER)
            .key_id(kid)
            .valid_principals(names)
            .valid_after(after)
            .valid_before(before)
        )
        if force_command is not None:
            builder = builder.add_critical_option(
                b"force-command", _check_text(force_command, "force-command", 4096, allow_space=True)
            )
        for extension, allowed in (
            (b"permit-pty", permit_pty),
            (b"permit-port-forwarding", permit_port_forwarding),
            (b"permit-agent-forwarding", permit_agent_forwarding),
        ):
            if allowed:
                builder = builder.add_extension(extension, b"")
        with self._lock:
            cert = builder.sign(self._key)
            self._record_valid_before(dt.datetime.fromtimestamp(before, dt.UTC))
        return cert.public_bytes().decode()

    def _record_valid_before(self, valid_before: dt.datetime) -> None:
        # Persisted (fsync) before the certificate is returned: after a crash and a rotation
        # the old key must stay trusted for every certificate that left this process.
        # Rounded up to SIGNED_UNTIL_STEP so a burst of certificates costs one write, not
        # one each (~3 ms): a rotated-out key is trusted at most that much longer.
        last = self._state.signed_until
        if last is None or valid_before > last:
            step = int(SIGNED_UNTIL_STEP.total_seconds())
            rounded = -(-int(valid_before.timestamp()) // step) * step
            self._state.signed_until = dt.datetime.fromtimestamp(rounded, dt.UTC)
            self._save_state()

    # -- rotation --------------------------------------------------------------------

    def rotate(self, now: dt.datetime | None = None, keep_old_trusted: bool = True) -> str:
        """Make a new key the signer; returns its public key line.

        The old private key is deleted; its public key stays trusted until the
        latest `valid_before` it signed, rounded up to the minute (dropped at
        once if it signed nothing, or with `keep_old_trusted=False`).
        Earlier rotated-out keys keep their own deadlines.
        """
        now = _aware(now or _utcnow(), "now")
        with self._lock:
            old = self._state
            generation = old.generation + 1
            key = ed25519.Ed25519PrivateKey.generate()
            save_private_key(self._directory / f"{self._name}-{generation}.key", key, self._passphrase)
            retired = [r for r in old.retired if r.trusted_until > now]
            if keep_old_trusted and old.signed_until is not None and old.signed_until > now:
                retired.append(_RetiredKey(old.generation, old.public_key_line, now, old.signed_until))
            self._state = _State(generation, _public_line(key.public_key(), self._name), now, None, retired)
            self._key = key
            # State first, then delete: a crash in between leaves an unused encrypted key, never a CA without one.
            self._save_state()
            (self._directory / f"{self._name}-{old.generation}.key").unlink(missing_ok=True)
            return self._state.public_key_line

    def _drop_expired(self, now: dt.datetime) -> None:
        with self._lock:
            kept = [r for r in self._state.retired if r.trusted_until > now]
            if len(kept) != len(self._state.retired):
                self._state.retired = kept
                self._save_state()

    def _save_state(self) -> None:
        write_private_file(self._directory / f"{self._name}.json", self._state.to_json(self._name))


def sshd_trusted_ca_line(ca: SSHCertificateAuthority, now: dt.datetime | None = None) -> str:
    """Text for sshd's `TrustedUserCAKeys` file: one trusted key per line (several after a rotation)."""
    return "\n".join(ca.trusted_public_key_lines(now))


__all__ = [
    "UPSTREAM_CA_NAME",
    "USER_CA_NAME",
    "SSHCertificateAuthority",
    "new_serial",
    "sshd_trusted_ca_line",
]
