"""A real SSH stack for tests and the benchmark: control plane, target sshd, broker, OpenSSH client.

    with SshStack(tmp) as stack:
        grant = stack.grant("alice", "web-01", seconds=3600)
        user = stack.user_key("alice", grant.id)           # key + certificate files
        r = stack.ssh(user, "web-01", "echo hi")            # subprocess.CompletedProcess

The control plane is `tests.cluster.ControlPlane` (a `jitgate server`
subprocess over mTLS); the target is `broker.demo_target.DemoTarget` (a real
sshd trusting only the upstream CA); the broker is `jitgate ssh-broker` in a
subprocess with its own data directory.
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import duration_pb2

from broker.demo_target import DemoTarget
from jitgate.v1 import access_pb2, types_pb2
from tests.cluster import NO_MODEL, ControlPlane, spawn_broker, stop_process

GRACE = "2s"
# An unprivileged account on this machine for logins on the test target (scripts/setup.sh makes
# it): sshd refuses session signals for root, so what a cut does to a target's command can only
# be seen through a login like this one.
TARGET_USER = "jitgate-target"


def policy_text(target: DemoTarget) -> str:
    """Policies for the broker tests: auto-approved dev targets, one exec-only target (`locked`),
    one terminal-and-sftp-only target (`termonly`), grace 2 s; logins root and TARGET_USER."""
    ssh = {"kind": "ssh", "address": target.address, "host_key": target.host_key_line,
           "logins": ["root", TARGET_USER], "owners": ["group:sre"]}
    doc = {
        "version": 1,
        "settings": {"grace_period": GRACE, "pending_timeout": "1h", "default_max_extensions": 5,
                     "duration_step": "1m"},
        "users": {"alice": {"groups": ["sre"]}, "bob": {"groups": ["sre"]},
                  "admin": {"groups": ["admins"]}},
        "resources": {
            "web-01": {**ssh, "labels": {"env": "dev"}},
            "web-02": {**ssh, "labels": {"env": "dev"}},
            "locked": {**ssh, "labels": {"env": "locked"}},
            "termonly": {**ssh, "labels": {"env": "termonly"}},
            "badkey": {**ssh, "labels": {"env": "dev"},
                       "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
        },
        "rules": [
            {"name": "dev-auto", "when": 'resource.labels.env == "dev"', "approval": "auto", "max_duration": "8h"},
            {"name": "locked-auto", "when": 'resource.labels.env == "locked"', "approval": "auto",
             "max_duration": "1h", "session": {"pty": False, "exec": True, "sftp": False, "port_forwarding": False}},
            {"name": "termonly-auto", "when": 'resource.labels.env == "termonly"', "approval": "auto",
             "max_duration": "1h", "session": {"pty": True, "exec": False, "sftp": True, "port_forwarding": False}},
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class UserKey:
    """An OpenSSH key pair with its jitgate certificate on disk."""

    key: Path
    cert: Path
    grant_id: str
    serial: int = 0


class SshStack:
    """Control plane + target + broker for one test module."""

    def __init__(self, tmp: Path, broker_args: tuple[str, ...] = (), servers: Any = None,
                 cp_config: dict[str, Any] | None = None) -> None:
        self.tmp = Path(tmp)
        self.target = DemoTarget.create(self.tmp / "target")
        self.policies = self.tmp / "policies.yaml"
        self.cp: ControlPlane | None = None
        self.broker_proc: subprocess.Popen[bytes] | None = None
        self.broker_dir = self.tmp / "broker"
        self.broker_port = 0
        self.broker_host_key = ""
        self._broker_args = broker_args
        self.servers = servers  # control plane address -> the broker's --server value (a list)
        self.cp_config = {**NO_MODEL, **(cp_config or {})}  # server.yaml keys; every grant here names its duration
        self._keys = itertools.count(1)  # next() is atomic: the bench makes keys from many threads

    # -------------------------------------------------------- life cycle

    def start(self) -> SshStack:
        from controlplane.identity import open_ssh_cas

        self.start_target()
        self.policies.write_text(policy_text(self.target))
        self.cp = ControlPlane(self.tmp / "cp", policies=self.policies, admins=("admin",), brokers=("broker",),
                               config=self.cp_config)
        _, upstream = open_ssh_cas(self.cp.data)
        self.upstream_ca_line = upstream.public_key_line()
        self.target.set_trusted_ca([self.upstream_ca_line])  # sshd reads it at each login
        self.start_broker()
        return self

    def start_target(self) -> None:
        from broker.demo_target import free_port

        # The target runs first, on a port the policy then names; another process may take
        # a free port between the probe and sshd's bind, so try a few.
        for attempt in range(3):
            try:
                self.target.start(free_port())
                break
            except RuntimeError:
                self.target.stop()
                if attempt == 2:
                    raise

    def start_broker(self) -> None:
        assert self.cp is not None
        addr = self.broker_dir / "listen.addr"
        self.broker_log = self.tmp / "broker.log"
        cmd = [sys.executable, "-m", "cli.main", "ssh-broker", "--listen", "127.0.0.1:0",
               "--identity", str(self.cp.identity("broker")),
               "--server", self.servers(self.cp.address) if self.servers else self.cp.address,
               "--data-dir", str(self.broker_dir), *self._broker_args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.broker_proc, self.broker_port = spawn_broker(cmd, env, self.broker_log, addr, "broker", timeout=30)
        self.broker_host_key = (self.broker_dir / "ssh_host_ed25519_key.pub").read_text().strip()
        self.known_hosts = self.tmp / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.broker_port} {self.broker_host_key}\n")

    def stop_broker(self) -> int | None:
        if self.broker_proc is None:
            return None
        code = stop_process(self.broker_proc)
        self.broker_proc = None
        return code

    def stop(self) -> None:
        self.stop_broker()
        self.target.stop()
        if self.cp is not None:
            self.cp.stop()

    def __enter__(self) -> SshStack:
        try:
            return self.start()
        except BaseException:
            self.stop()  # what did start (target, control plane) must not outlive a failed start
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def broker_log_text(self) -> str:
        return self.broker_log.read_text(errors="replace")

    # -------------------------------------------------------- grants and keys

    def client(self, name: str) -> Any:
        assert self.cp is not None
        return self.cp.client(name)

    def grant(self, user: str, resource: str, seconds: float = 3600, login: str = "root") -> types_pb2.AccessRequest:
        """An ACTIVE grant (the test policies auto-approve)."""
        d = duration_pb2.Duration()
        d.FromTimedelta(dt.timedelta(seconds=seconds))
        resp = self.client(user).access.CreateRequest(access_pb2.CreateRequestRequest(
            resource=resource, login=login, duration=d, reason="broker test"))
        req = resp.request
        assert req.state == types_pb2.REQUEST_STATE_ACTIVE, req
        return req

    def new_key(self) -> Path:
        path = self.tmp / "keys" / f"id_{next(self._keys)}"
        path.parent.mkdir(exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        return path

    def user_key(self, user: str, grant_id: str) -> UserKey:
        """A fresh key pair certified for `grant_id` by the control plane (IssueSshCertificate)."""
        key = self.new_key()
        resp = self.client(user).access.IssueSshCertificate(access_pb2.IssueSshCertificateRequest(
            grant_id=grant_id, public_key=key.with_suffix(".pub").read_text().strip()))
        cert = key.parent / (key.name + "-cert.pub")
        cert.write_text(resp.certificate + "\n")
        return UserKey(key=key, cert=cert, grant_id=grant_id, serial=resp.serial)

    # -------------------------------------------------------- OpenSSH client

    def ssh_options(self, key: UserKey | Path) -> list[str]:
        k = key.key if isinstance(key, UserKey) else key
        opts = ["-F", "/dev/null", "-i", str(k), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"]
        if isinstance(key, UserKey):
            opts += ["-o", f"CertificateFile={key.cert}"]
        return opts

    def ssh_argv(self, key: UserKey | Path, resource: str, *command: str, login: str = "root",
                 extra: tuple[str, ...] = ()) -> list[str]:
        return ["ssh", "-p", str(self.broker_port), *self.ssh_options(key), *extra,
                f"{login}@{resource}@127.0.0.1", *command]

    def ssh(
        self,
        key: UserKey | Path,
        resource: str,
        *command: str,
        input: bytes | None = None,
        timeout: float = 30,
        login: str = "root",
        extra: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.ssh_argv(key, resource, *command, login=login, extra=extra), input=input,
                              capture_output=True, timeout=timeout)

    def scp_argv(self, key: UserKey, *paths: str) -> list[str]:
        return ["scp", "-P", str(self.broker_port), *self.ssh_options(key), *paths]

    def sftp_argv(self, key: UserKey, resource: str, batch: Path) -> list[str]:
        return ["sftp", "-P", str(self.broker_port), *self.ssh_options(key), "-b", str(batch),
                f"root@{resource}@127.0.0.1"]

    def remote(self, resource: str, path: str) -> str:
        return f"root@{resource}@127.0.0.1:{path}"


def sessions_of(stack: SshStack, grant_id: str) -> list[types_pb2.Session]:
    return list(stack.client("admin").access.ListSessions(access_pb2.ListSessionsRequest(grant_id=grant_id)).sessions)


def ended_session(stack: SshStack, grant_id: str, count: int = 1) -> list[types_pb2.Session]:
    """The grant's sessions once `count` of them have ended (ReportSessionEnd arrived)."""
    def done() -> list[types_pb2.Session]:
        ended = [s for s in sessions_of(stack, grant_id) if s.end_reason]
        return ended if len(ended) >= count else []
    return wait_for(done, timeout=15)


def text(r: subprocess.CompletedProcess[bytes]) -> str:
    return (r.stdout + r.stderr).decode(errors="replace")


def read_until(proc: subprocess.Popen[bytes], marker: bytes, seen: bytearray, timeout: float = 20) -> None:
    """Read the process's output into `seen` until `marker` is in it."""
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{marker!r} not seen in {bytes(seen)!r}"
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"output ended before {marker!r}: {bytes(seen)!r}"
            seen += chunk


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate()` until truthy (returns it) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
