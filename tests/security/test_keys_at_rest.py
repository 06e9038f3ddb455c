"""Issue 13 (Low): the store file's mode, and where the key passphrase comes from.

- The SQLite store (and its -wal/-shm) is 0600 even under umask 022; it was 0644.
- The passphrase may come from a file outside the data directory or from a
  command's stdout (no shell, bounded time); the keys are then encrypted with
  it and no `passphrase` file lies beside them.
- A service whose passphrase file lies in its own data directory logs one
  warning at start saying what to do instead.
- A passphrase command that fails (status, no output, timeout, missing) stops
  the start with one plain line naming the command; nothing is created.
"""
from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ca.errors import KeyStoreError
from ca.keystore import (
    PASSPHRASE_COMMAND_ENV,
    PASSPHRASE_ENV,
    PASSPHRASE_FILE_ENV,
    load_private_key,
    passphrase_at_start,
    passphrase_from_command,
    resolve_passphrase,
    write_private_file,
)
from controlplane.store import open_store
from jitgate.v1 import access_pb2
from tests.cluster import NO_MODEL, REPO, ControlPlane
from tests.controlplane.api.conftest import duration

POLICIES = REPO / "tests" / "controlplane" / "api" / "policies.yaml"
WARNING = "inside the data directory whose keys it encrypts"
SOURCES = (PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, PASSPHRASE_COMMAND_ENV)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def no_passphrase_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SOURCES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which SQLite made the store 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def key_files(data: Path) -> list[Path]:
    return sorted([*data.glob("ca/**/*.key"), data / "server" / "key.pem"])


def assert_keys_encrypted_with(data: Path, passphrase: bytes) -> None:
    keys = key_files(data)
    assert len(keys) >= 4, keys  # X.509 CA, SSH user CA, SSH upstream CA, the server's TLS key
    for key in keys:
        assert mode(key) == 0o600, key
        assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), key
        load_private_key(key, passphrase)


def write_something(cp: ControlPlane) -> None:
    msg = access_pb2.CreateRequestRequest(resource="web-dev-01", login="deploy", reason="write to the store")
    msg.duration.CopyFrom(duration(600))  # asked for: the planes here run without the duration model
    cp.client("alice").access.CreateRequest(msg)


# -- the store --------------------------------------------------------------------------------------


def test_store_files_are_0600_and_the_default_passphrase_warns_once(
        tmp_path: Path, no_passphrase_env: pytest.MonkeyPatch, umask_022: None) -> None:
    with ControlPlane(tmp_path, POLICIES, config=NO_MODEL) as cp:
        write_something(cp)
        db = cp.data.db_path
        files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        for f in files:
            assert f.exists() and mode(f) == 0o600, (f, oct(mode(f)) if f.exists() else "missing")
        warnings = [line for line in cp.log().splitlines() if WARNING in line]
        assert len(warnings) == 1, cp.log()
        assert "WARNING" in warnings[0] and PASSPHRASE_FILE_ENV in warnings[0] and PASSPHRASE_COMMAND_ENV in warnings[0]
        assert (cp.data.ca_dir / "passphrase").exists()


def test_a_store_left_readable_is_tightened(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "jitgate.db"
    store = open_store(str(db))
    with store.write():
        pass
    store.close()
    for f in (db, db.with_name("jitgate.db-wal")):
        f.touch()
        os.chmod(f, 0o644)
    reopened = open_store(str(db))
    try:
        assert mode(db) == 0o600 and mode(db.with_name("jitgate.db-wal")) == 0o600
    finally:
        reopened.close()


# -- the passphrase's sources -----------------------------------------------------------------------


def test_passphrase_from_a_file_outside_the_data_dir(tmp_path: Path, no_passphrase_env: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secrets" / "jitgate-passphrase"
    secret.parent.mkdir(mode=0o700)
    write_private_file(secret, b"file-passphrase-0123456789abcdefghijklmnop\n")
    no_passphrase_env.setenv(PASSPHRASE_FILE_ENV, str(secret))
    with ControlPlane(tmp_path / "cp", POLICIES, config=NO_MODEL) as cp:
        write_something(cp)
        assert WARNING not in cp.log()
        assert not (cp.data.ca_dir / "passphrase").exists()
        assert_keys_encrypted_with(cp.data.root, b"file-passphrase-0123456789abcdefghijklmnop")


def test_passphrase_from_a_command(tmp_path: Path, no_passphrase_env: pytest.MonkeyPatch) -> None:
    store = tmp_path / "vault"
    store.write_text("command-passphrase-0123456789abcdefghijklm\n")
    no_passphrase_env.setenv(PASSPHRASE_COMMAND_ENV, f"cat '{store}'")
    with ControlPlane(tmp_path / "cp", POLICIES, config=NO_MODEL) as cp:
        write_something(cp)
        assert WARNING not in cp.log()
        assert not (cp.data.ca_dir / "passphrase").exists()
        assert_keys_encrypted_with(cp.data.root, b"command-passphrase-0123456789abcdefghijklm")


def test_the_command_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert passphrase_from_command(f"echo pw; touch {marker}") == f"pw; touch {marker}".encode()
    assert not marker.exists()


def run_server(tmp_path: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SOURCES}
    env[PASSPHRASE_COMMAND_ENV] = command
    return subprocess.run([sys.executable, "-m", "cli.main", "server", "--data-dir", str(tmp_path / "data"),
                           "--policies", str(POLICIES), "--listen", "127.0.0.1:0"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command, said", [
    ("sh -c 'echo vault is sealed >&2; exit 3'", "exited with status 3: 'vault is sealed'"),
    ("true", "printed nothing"),
    ("/nonexistent/get-passphrase", "cannot run passphrase command"),
])
def test_a_failing_command_fails_closed(tmp_path: Path, command: str, said: str) -> None:
    proc = run_server(tmp_path, command)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], proc.stderr
    assert f"`{command}`" in lines[0] or "printed nothing" in said
    data = tmp_path / "data"
    assert not (data / "server.addr").exists() and not list(data.glob("ca/**/*.key"))
    assert not (data / "ca" / "passphrase").exists()


def test_a_hanging_command_times_out() -> None:
    with pytest.raises(KeyStoreError) as e:
        passphrase_from_command("sleep 30", timeout=0.2)
    assert e.value.code == "ca.passphrase_command" and "did not finish within 0.2 s" in e.value.message


def test_oversized_output_and_two_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError) as e:
        passphrase_from_command(f"{sys.executable} -c \"print('x' * 5000)\"")
    assert "over the 4096-byte limit" in e.value.message
    with pytest.raises(KeyStoreError) as e:
        resolve_passphrase(tmp_path / "keys", {PASSPHRASE_ENV: "a", PASSPHRASE_COMMAND_ENV: "echo b"})
    assert e.value.code == "ca.passphrase_ambiguous"


def test_the_brokers_warn_when_the_file_lies_in_their_data_dir(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    # A broker's keys live in DATA_DIR/keys (and its host or TLS key in DATA_DIR): a
    # JITGATE_CA_PASSPHRASE_FILE pointed into DATA_DIR is as close to them as the default.
    data = tmp_path / "ssh-broker"
    inside = data / "pp"
    data.mkdir(mode=0o700)
    write_private_file(inside, b"p" * 40)
    outside = tmp_path / "pp"
    write_private_file(outside, b"q" * 40)
    with caplog.at_level(logging.WARNING, logger="jitgate.keys"):
        assert passphrase_at_start(data / "keys", {PASSPHRASE_FILE_ENV: str(inside)}) == b"p" * 40
        assert passphrase_at_start(data / "keys", {PASSPHRASE_FILE_ENV: str(outside)}) == b"q" * 40
        assert passphrase_at_start(data / "keys", {PASSPHRASE_COMMAND_ENV: "echo r"}) == b"r"
    assert [r.getMessage() for r in caplog.records if WARNING in r.getMessage()] == [
        next(r.getMessage() for r in caplog.records if str(inside) in r.getMessage())]


def test_pg_broker_passphrase_options_fail_closed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SOURCES}
    proc = subprocess.run([sys.executable, "-m", "cli.main", "pg-broker", "--data-dir", str(tmp_path / "pg"),
                           "--listen", "127.0.0.1:0", "--passphrase-command", "sh -c 'exit 7'"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: passphrase command `sh -c 'exit 7'` exited with status 7"
    assert not list((tmp_path / "pg").glob("**/*.pem"))
