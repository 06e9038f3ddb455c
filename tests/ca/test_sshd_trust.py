"""A real OpenSSH sshd trusting the upstream CA through `TrustedUserCAKeys` (sshd_trusted_ca_line).

Proves the certificates work where it matters: sshd accepts them, honours
force-command and the window, refuses another CA's certificate, and keeps
accepting a rotated-out key's certificates until they expire.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ca.ssh import UPSTREAM_CA_NAME, USER_CA_NAME, SSHCertificateAuthority, new_serial, sshd_trusted_ca_line
from tests.ca.sshkeys import private_openssh, user_keypair
from tests.support import require, require_binary

PASS = b"sshd-trust-test-passphrase"
UTC = dt.UTC


@dataclass
class Sshd:
    port: int
    trusted_file: Path
    known_hosts: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    binary = require_binary("sshd")
    keygen = require_binary("ssh-keygen")
    require(os.geteuid() == 0, "root (sshd must run as root to log users in)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    host_key = tmp_path / "host_key"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True, timeout=10)
    trusted = tmp_path / "trusted_user_ca_keys"
    trusted.write_text("")
    port = _free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nTrustedUserCAKeys {trusted}\n"
        "AuthorizedKeysFile none\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPidFile none\nLogLevel VERBOSE\n"
        # a home of the test's own: the machine's shell rc files must not stall the session
        f"SetEnv HOME={tmp_path}\n"
    )
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the event, not a fixed sleep
            if "Server listening" in line:
                break
        else:
            pytest.fail(f"sshd exited with {proc.wait()} before listening")
        # Keep draining sshd's log so a full pipe never blocks it.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {(tmp_path / 'host_key.pub').read_text()}")
        yield Sshd(port, trusted, known)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ssh(sshd: Sshd, tmp_path: Path, cert: str, key_pem: bytes, command: str) -> subprocess.CompletedProcess[str]:
    ssh = require_binary("ssh")
    key = tmp_path / "id_test"
    key.write_bytes(key_pem)
    os.chmod(key, 0o600)
    (tmp_path / "id_test-cert.pub").write_text(cert + "\n")
    return subprocess.run(
        [ssh, "-F", "/dev/null", "-p", str(sshd.port), "-i", str(key),
         "-o", f"CertificateFile={tmp_path / 'id_test-cert.pub'}", "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={sshd.known_hosts}",
         "-o", "ConnectTimeout=10", "root@127.0.0.1", command],
        capture_output=True, text=True, timeout=20,
    )


def _issue(ca: SSHCertificateAuthority, now: dt.datetime, **kw: object) -> tuple[str, bytes]:
    key, line = user_keypair()
    args: dict[str, object] = dict(
        key_id="broker-session-1", principals=["root"], valid_after=now - dt.timedelta(minutes=1),
        valid_before=now + dt.timedelta(minutes=10), serial=new_serial(), permit_pty=False,
        permit_port_forwarding=False, permit_agent_forwarding=False,
    )
    args.update(kw)
    return ca.sign_user_certificate(line, **args), private_openssh(key)  # type: ignore[arg-type]


def test_sshd_trusts_upstream_ca_only_and_across_rotation(sshd: Sshd, tmp_path: Path) -> None:
    now = dt.datetime.now(UTC)
    upstream = SSHCertificateAuthority.load_or_create(tmp_path / "ca", PASS, UPSTREAM_CA_NAME)
    user_ca = SSHCertificateAuthority.load_or_create(tmp_path / "ca", PASS, USER_CA_NAME)
    sshd.trusted_file.write_text(sshd_trusted_ca_line(upstream) + "\n")

    cert, key = _issue(upstream, now)
    ok = _ssh(sshd, tmp_path, cert, key, "echo logged-in-as-$(id -un)")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "logged-in-as-root"

    # A user certificate (user CA) opens nothing on the target.
    foreign, fkey = _issue(user_ca, now)
    refused = _ssh(sshd, tmp_path, foreign, fkey, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr

    # An expired certificate of the trusted CA is refused by sshd too.
    old, okey = _issue(upstream, now, valid_after=now - dt.timedelta(hours=2), valid_before=now - dt.timedelta(hours=1))
    refused = _ssh(sshd, tmp_path, old, okey, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr

    # force-command wins over the command asked for.
    forced, fckey = _issue(upstream, now, force_command="echo forced")
    out = _ssh(sshd, tmp_path, forced, fckey, "echo asked")
    assert out.returncode == 0 and out.stdout.strip() == "forced", out.stderr

    # Rotation: the file lists both keys; the old key's certificate and the new one both log in.
    upstream.rotate(now)
    sshd.trusted_file.write_text(sshd_trusted_ca_line(upstream) + "\n")
    assert len(sshd.trusted_file.read_text().splitlines()) == 2
    new_cert, new_key = _issue(upstream, now)
    for c, k in ((cert, key), (new_cert, new_key)):
        res = _ssh(sshd, tmp_path, c, k, "true")
        assert res.returncode == 0, res.stderr
