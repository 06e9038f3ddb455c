"""SSH user/upstream CA: storage, signing (checked by OpenSSH's ssh-keygen), refusals, rotation."""
from __future__ import annotations

import datetime as dt
import os
import re
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ca.errors import CAError, KeyStoreError
from ca.ssh import SIGNED_UNTIL_STEP, SSHCertificateAuthority, new_serial, sshd_trusted_ca_line
from ca.sshcert import parse_certificate, verify_certificate
from tests.ca.sshkeys import user_keypair
from tests.support import require_binary

PASS = b"ssh-ca-test-passphrase"
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def ca(tmp_path: Path) -> SSHCertificateAuthority:
    return SSHCertificateAuthority.load_or_create(tmp_path / "ca", PASS, "jitgate-user-ca", now=T0)


def sign(ca: SSHCertificateAuthority, **kw: object) -> str:
    args: dict[str, object] = dict(
        public_key=user_keypair()[1], key_id="grant-42", principals=["root@web-01"],
        valid_after=T0 - dt.timedelta(seconds=30), valid_before=T0 + dt.timedelta(hours=1),
        serial=1234, permit_pty=True, permit_port_forwarding=False, permit_agent_forwarding=False,
    )
    args.update(kw)
    return ca.sign_user_certificate(**args)  # type: ignore[arg-type]


def test_created_encrypted_0600_and_reloaded(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    d = tmp_path / "ca"
    line = ca.public_key_line()
    assert re.fullmatch(r"ssh-ed25519 AAAA[A-Za-z0-9+/=]+ jitgate-user-ca", line)
    key_file = d / "jitgate-user-ca-1.key"
    assert mode(d) == 0o700 and mode(key_file) == 0o600 and mode(d / "jitgate-user-ca.json") == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    again = SSHCertificateAuthority.load_or_create(d, PASS, "jitgate-user-ca")
    assert again.public_key_line() == line
    # A second CA in the same directory is independent.
    up = SSHCertificateAuthority.load_or_create(d, PASS, "jitgate-upstream-ca")
    assert up.public_key_line().endswith(" jitgate-upstream-ca")
    assert up.public_key_line().split()[1] != line.split()[1]


def test_load_refusals(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    d = tmp_path / "ca"
    with pytest.raises(KeyStoreError) as e:
        SSHCertificateAuthority.load_or_create(d, b"wrong", "jitgate-user-ca")
    assert e.value.code == "ca.bad_passphrase"
    os.chmod(d / "jitgate-user-ca-1.key", 0o644)
    with pytest.raises(KeyStoreError) as e:
        SSHCertificateAuthority.load_or_create(d, PASS, "jitgate-user-ca")
    assert e.value.code == "ca.key_permissions"
    os.chmod(d / "jitgate-user-ca-1.key", 0o600)
    # Someone swaps the key file for another encrypted key: refused, not silently used.
    other = SSHCertificateAuthority.load_or_create(tmp_path / "other", PASS, "jitgate-user-ca")
    os.replace(tmp_path / "other" / "jitgate-user-ca-1.key", d / "jitgate-user-ca-1.key")
    with pytest.raises(KeyStoreError) as e:
        SSHCertificateAuthority.load_or_create(d, PASS, "jitgate-user-ca")
    assert e.value.code == "ca.key_mismatch"
    assert other.public_key_line()
    (d / "jitgate-user-ca-1.key").unlink()
    with pytest.raises(KeyStoreError) as e:
        SSHCertificateAuthority.load_or_create(d, PASS, "jitgate-user-ca")
    assert e.value.code == "ca.incomplete"
    (d / "jitgate-user-ca.json").write_text("{not json")
    with pytest.raises(KeyStoreError) as e:
        SSHCertificateAuthority.load_or_create(d, PASS, "jitgate-user-ca")
    assert e.value.code == "ca.state_corrupt"
    with pytest.raises(KeyStoreError) as e:
        SSHCertificateAuthority.load_or_create(d, PASS, "Bad Name")
    assert e.value.code == "ca.bad_name"


def _keygen_list(tmp_path: Path, cert_line: str) -> str:
    keygen = require_binary("ssh-keygen")
    path = tmp_path / "id-cert.pub"
    path.write_text(cert_line + "\n")
    out = subprocess.run(
        [keygen, "-L", "-f", str(path)], capture_output=True, text=True, timeout=10, env={**os.environ, "TZ": "UTC"}
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _section(listing: str, title: str) -> list[str]:
    """Indented entries under `title:` in `ssh-keygen -L` output."""
    lines = listing.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title + ":"))
    entries = []
    for line in lines[start + 1:]:
        if not line.startswith("                "):  # entries are indented deeper than titles
            break
        entries.append(line.strip())
    return [e for e in entries if e]


def test_ssh_keygen_reads_user_certificate(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    cert = sign(
        ca, principals=["root@web-01", "root"], valid_after=T0 - dt.timedelta(seconds=30),
        valid_before=T0 + dt.timedelta(minutes=90), serial=987654321,
        permit_pty=True, permit_port_forwarding=False, permit_agent_forwarding=False,
    )
    listing = _keygen_list(tmp_path, cert)
    assert "ssh-ed25519-cert-v01@openssh.com user certificate" in listing
    assert 'Key ID: "grant-42"' in listing
    assert "Serial: 987654321" in listing
    assert "Valid: from 2026-11-21T11:59:30 to 2026-11-21T13:30:00" in listing
    assert _section(listing, "Principals") == ["root@web-01", "root"]
    assert _section(listing, "Extensions") == ["permit-pty"]
    assert "(none)" in listing.split("Critical Options:")[1].split("Extensions:")[0]
    fp_ca = subprocess.run(
        ["ssh-keygen", "-l", "-f", "/dev/stdin"], input=ca.public_key_line(), capture_output=True, text=True, timeout=10
    ).stdout.split()[1]
    assert f"Signing CA: ED25519 {fp_ca}" in listing


def test_ssh_keygen_reads_forwarding_and_force_command(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    cert = sign(
        ca, permit_pty=False, permit_port_forwarding=True, permit_agent_forwarding=True,
        force_command="/usr/bin/uptime --pretty",
    )
    listing = _keygen_list(tmp_path, cert)
    assert _section(listing, "Extensions") == ["permit-agent-forwarding", "permit-port-forwarding"]
    assert _section(listing, "Critical Options") == ["force-command /usr/bin/uptime --pretty"]
    none_allowed = _keygen_list(tmp_path, sign(ca, permit_pty=False))
    assert "permit-" not in none_allowed  # never X11, never user-rc, nothing not asked for


def test_valid_before_rounds_down_never_outliving_the_grant(ca: SSHCertificateAuthority) -> None:
    deadline = T0 + dt.timedelta(minutes=10, microseconds=999_999)
    info = parse_certificate(sign(ca, valid_before=deadline))
    assert info.valid_before == T0 + dt.timedelta(minutes=10)
    assert info.serial == 1234 and info.key_id == "grant-42"


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"principals": []}, "ssh.no_principals"),
        ({"principals": ["a,b"]}, "ssh.bad_field"),
        ({"principals": ["root "]}, "ssh.bad_field"),
        ({"key_id": ""}, "ssh.bad_field"),
        ({"key_id": "grant 1"}, "ssh.bad_field"),
        ({"serial": 0}, "ssh.bad_serial"),
        ({"serial": 2**64}, "ssh.bad_serial"),
        ({"valid_before": T0 - dt.timedelta(minutes=1)}, "ssh.bad_validity"),
        ({"valid_after": dt.datetime(2026, 11, 21, 12, 0)}, "ssh.naive_datetime"),
        ({"public_key": "ssh-ed25519 not-base64!"}, "ssh.bad_public_key"),
        ({"force_command": "a\x00b"}, "ssh.bad_field"),
    ],
)
def test_sign_refusals(ca: SSHCertificateAuthority, override: dict[str, object], code: str) -> None:
    with pytest.raises(CAError) as e:
        sign(ca, **override)
    assert e.value.code == code


def test_sign_refuses_a_certificate_and_weak_rsa_as_subject(ca: SSHCertificateAuthority) -> None:
    cert = sign(ca)
    with pytest.raises(CAError) as e:
        sign(ca, public_key=cert)
    assert e.value.code == "ssh.bad_public_key" and "certificate" in str(e.value)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(65537, 1024).public_key()
    line = weak.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    with pytest.raises(CAError) as e:
        sign(ca, public_key=line)
    assert e.value.code == "ssh.bad_public_key" and "1024" in str(e.value)


def test_rotation_keeps_old_key_until_its_last_certificate_expires(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    old_line = ca.public_key_line()
    old_cert = sign(ca, valid_before=T0 + dt.timedelta(minutes=30))
    sign(ca, valid_before=T0 + dt.timedelta(minutes=10))  # an earlier one does not shorten the window
    t_rot = T0 + dt.timedelta(minutes=1)
    new_line = ca.rotate(t_rot)
    assert new_line != old_line and ca.public_key_line() == new_line
    assert not (tmp_path / "ca" / "jitgate-user-ca-1.key").exists(), "rotated-out private key must be deleted"
    assert mode(tmp_path / "ca" / "jitgate-user-ca-2.key") == 0o600
    new_cert = sign(ca, valid_before=T0 + dt.timedelta(hours=2))
    assert parse_certificate(new_cert).signature_key_line.split()[1] == new_line.split()[1]

    during = T0 + dt.timedelta(minutes=20)
    assert ca.trusted_public_key_lines(during) == [new_line, old_line]
    assert sshd_trusted_ca_line(ca, during) == f"{new_line}\n{old_line}"
    verify_certificate(old_cert, ca.trusted_public_key_lines(during), during)
    verify_certificate(new_cert, ca.trusted_public_key_lines(during), during)

    # The state survives a restart.
    reloaded = SSHCertificateAuthority.load_or_create(tmp_path / "ca", PASS, "jitgate-user-ca", now=during)
    assert reloaded.trusted_public_key_lines(during) == [new_line, old_line]

    after = T0 + dt.timedelta(minutes=30)  # old_cert's valid_before: it is expired now
    assert ca.trusted_public_key_lines(after) == [new_line]
    assert sshd_trusted_ca_line(ca, after) == new_line


def test_last_valid_before_is_persisted_before_rotation(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    sign(ca, valid_before=T0 + dt.timedelta(hours=1))
    old_line = ca.public_key_line()
    restarted = SSHCertificateAuthority.load_or_create(tmp_path / "ca", PASS, "jitgate-user-ca")
    new_line = restarted.rotate(T0)
    assert restarted.trusted_public_key_lines(T0 + dt.timedelta(minutes=59)) == [new_line, old_line]


def test_rotation_of_unused_key_drops_it_at_once(ca: SSHCertificateAuthority) -> None:
    new_line = ca.rotate(T0)
    assert ca.trusted_public_key_lines(T0) == [new_line]
    sign(ca, valid_before=T0 + dt.timedelta(minutes=5))
    second = ca.rotate(T0 + dt.timedelta(minutes=1))
    third = ca.rotate(T0 + dt.timedelta(minutes=2))  # second signed nothing: gone; first-gen cert still out
    assert ca.trusted_public_key_lines(T0 + dt.timedelta(minutes=3)) == [third, new_line]
    assert second not in ca.trusted_public_key_lines(T0 + dt.timedelta(minutes=3))


def test_new_serial_is_random_nonzero_63_bit() -> None:
    serials = {new_serial() for _ in range(1000)}
    assert len(serials) == 1000
    assert all(0 < s < 2**63 for s in serials)


def test_old_key_trust_ends_within_a_minute_after_its_last_certificate(ca: SSHCertificateAuthority) -> None:
    last = T0 + dt.timedelta(minutes=7, seconds=13)
    cert = sign(ca, valid_before=last)
    old_line = ca.public_key_line()
    new_line = ca.rotate(T0)
    just_before = last - dt.timedelta(seconds=1)
    assert old_line in ca.trusted_public_key_lines(just_before)
    verify_certificate(cert, ca.trusted_public_key_lines(just_before), just_before)
    assert ca.trusted_public_key_lines(last + SIGNED_UNTIL_STEP) == [new_line]


def test_rotation_for_a_compromised_key_drops_it_at_once(ca: SSHCertificateAuthority) -> None:
    cert = sign(ca, valid_before=T0 + dt.timedelta(hours=1))
    new_line = ca.rotate(T0, keep_old_trusted=False)
    assert ca.trusted_public_key_lines(T0) == [new_line]
    with pytest.raises(CAError) as e:
        verify_certificate(cert, ca.trusted_public_key_lines(T0), T0)
    assert e.value.code == "cert.untrusted_ca"


def test_concurrent_signing_records_the_latest_valid_before(tmp_path: Path, ca: SSHCertificateAuthority) -> None:
    user_line = user_keypair()[1]

    def work(i: int) -> str:
        return ca.sign_user_certificate(
            user_line,
            f"grant-{i}",
            ["root"],
            T0,
            T0 + dt.timedelta(minutes=5, seconds=i),
            new_serial(),
            True,
            False,
            False,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        certs = list(pool.map(work, range(64)))
    assert len({parse_certificate(c).serial for c in certs}) == 64
    latest = T0 + dt.timedelta(minutes=5, seconds=63)
    old_line = ca.public_key_line()
    restarted = SSHCertificateAuthority.load_or_create(tmp_path / "ca", PASS, "jitgate-user-ca")
    restarted.rotate(T0)
    assert old_line in restarted.trusted_public_key_lines(latest - dt.timedelta(seconds=1))
