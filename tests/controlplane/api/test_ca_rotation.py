"""`jitgate admin rotate-ssh-ca`: a new signing key, the old one still trusted, audited, never beside a live server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ca.sshcert import parse_certificate
from controlplane.identity import DataDir, open_ssh_cas
from controlplane.server import DataDirLock, open_core

REPO = Path(__file__).resolve().parents[3]


def _jitgate(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JITGATE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def _user_key(tmp_path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    return (tmp_path / "id.pub").read_text().strip()


def test_rotation_keeps_old_key_trusted_and_is_audited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old_user_ca, _ = open_ssh_cas(DataDir(data))
    old_key = old_user_ca.public_key_line()
    now = datetime.now(UTC)
    cert = old_user_ca.sign_user_certificate(_user_key(tmp_path), "g1", ["root@web"], now - timedelta(minutes=1),
                                             now + timedelta(hours=1), 7, True, False, False)

    done = _jitgate(data, "admin", "rotate-ssh-ca", "--output", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ca"] == old_user_ca.name
    assert out["new_key"] != old_key
    assert out["new_key"] in out["trusted"] and old_key in out["trusted"]

    user_ca, _ = open_ssh_cas(DataDir(data))
    assert user_ca.public_key_line() == out["new_key"]
    assert parse_certificate(cert).signature_key_line.split()[:2] == old_key.split()[:2]

    core = open_core(DataDir(data), None, None, with_recommender=False)
    try:
        rotated = core.audit.audit_events(type="ca.rotated")
        assert len(rotated) == 1 and rotated[0].data["new_key"] == out["new_key"]
        assert "PRIVATE" not in json.dumps(rotated[0].data)
        ok, _count, problems = core.audit.verify_audit()
        assert ok and not problems
    finally:
        core.ledger.store.close()


def test_drop_old_stops_trusting_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, old_upstream = open_ssh_cas(DataDir(data))
    old_key = old_upstream.public_key_line()
    done = _jitgate(data, "admin", "rotate-ssh-ca", "--upstream", "--drop-old", "--output", "json")
    assert done.returncode == 0, done.stderr
    assert old_key not in json.loads(done.stdout)["trusted"]


def test_rotation_refused_while_a_server_holds_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_ssh_cas(DataDir(data))
    lock = DataDirLock.acquire(DataDir(data))
    try:
        done = _jitgate(data, "admin", "rotate-ssh-ca")
    finally:
        lock.release()
    assert done.returncode == 1
    assert "stop the server before rotating" in done.stderr
    assert "Traceback" not in done.stderr
