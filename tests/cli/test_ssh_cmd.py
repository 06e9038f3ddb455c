"""`cli/ssh_cmd.py`: `jitgate ssh-config` through a real broker to a real sshd.

Before: `--ssh-dir RELATIVE` wrote relative paths into the config, which broke
when `ssh` ran from another directory; and one block (and one certificate
file) per target meant `root@web-01` and `nobody@web-01` could not both be used.
Now: absolute paths, one block per (target, login) named `LOGIN.TARGET`, plain
`TARGET` only where one login is active, a certificate file per (login, target).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from jitgate.v1 import access_pb2
from tests.broker.ssh.harness import SshStack
from tests.cluster import REPO


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshStack]:
    """The broker tests' stack, with `web-01` offering the logins root and nobody."""
    with SshStack(tmp_path_factory.mktemp("cli-ssh")) as s:
        doc = yaml.safe_load(s.policies.read_text())
        doc["resources"]["web-01"]["logins"] = ["root", "nobody"]
        s.policies.write_text(yaml.safe_dump(doc, sort_keys=False))
        ask = access_pb2.CreateRequestRequest(resource="web-01", login="nobody", reason="reload?", dry_run=True)
        ask.duration.FromSeconds(600)  # the stack's plane has no duration model to pick one
        deadline = time.monotonic() + 15
        while True:  # the control plane polls its policy file
            try:
                s.client("alice").access.CreateRequest(ask)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the policies with login `nobody` were not loaded"
                time.sleep(0.1)
        yield s


def jitgate(stack: SshStack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.cp.cli_env("alice"), "JITGATE_SSH_BROKER": f"127.0.0.1:{stack.broker_port}",
           "JITGATE_SSH_BROKER_HOST_KEY": str(stack.broker_dir / "ssh_host_ed25519_key.pub"),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "proto")])}
    env.pop("JITGATE_SSH_DIR", None)
    env.pop("SSH_AUTH_SOCK", None)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def plain_ssh(config: Path, host: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", host, *command], cwd="/",
                          capture_output=True, text=True, timeout=30, env={**os.environ, "SSH_AUTH_SOCK": ""})


def test_ssh_config_with_a_relative_dir_works_from_anywhere_one_block_per_login(
        stack: SshStack, tmp_path: Path) -> None:
    for login in ("root", "nobody"):
        stack.grant("alice", "web-01", login=login)
    stack.grant("alice", "web-02")
    work = tmp_path / "work"
    work.mkdir()
    made = jitgate(stack, work, "ssh-config", "--ssh-dir", "my ssh")  # relative, with a blank in it
    assert made.returncode == 0, made.stderr
    config = tmp_path / "config"
    config.write_text(made.stdout)
    ssh_dir = work / "my ssh"
    assert f'IdentityFile "{ssh_dir}/id_ed25519"' in made.stdout
    assert f'CertificateFile "{ssh_dir}/certs/nobody@web-01-cert.pub"' in made.stdout
    hosts = [line.split()[1:] for line in made.stdout.splitlines() if line.startswith("Host ")]
    assert sorted(hosts) == [["nobody.web-01"], ["root.web-01"], ["web-02", "root.web-02"]]

    root = plain_ssh(config, "root.web-01", "id", "-un")  # run from `/`: the paths still hold
    assert root.returncode == 0 and root.stdout == "root\n", text_of(root)
    nobody = plain_ssh(config, "nobody.web-01", "id", "-un")
    assert "This account is currently not available" in nobody.stdout + nobody.stderr, text_of(nobody)
    assert plain_ssh(config, "web-02", "echo", "one-login").stdout == "one-login\n"


def test_jitgate_ssh_keeps_a_certificate_per_login(stack: SshStack, tmp_path: Path) -> None:
    stack.grant("alice", "web-01", login="root")
    stack.grant("alice", "web-01", login="nobody")
    root = jitgate(stack, tmp_path, "ssh", "web-01", "--login", "root", "--ssh-dir", "rel", "--", "id", "-un")
    assert root.returncode == 0 and root.stdout == "root\n", text_of(root)
    nobody = jitgate(stack, tmp_path, "ssh", "web-01", "--login", "nobody", "--ssh-dir", "rel", "--", "id")
    assert "This account is currently not available" in text_of(nobody)  # in as nobody, whose shell refuses
    certs = sorted(p.name for p in (tmp_path / "rel" / "certs").glob("*-cert.pub"))
    assert certs == ["nobody@web-01-cert.pub", "root@web-01-cert.pub"]


def text_of(r: subprocess.CompletedProcess[str]) -> str:
    return r.stdout + r.stderr


