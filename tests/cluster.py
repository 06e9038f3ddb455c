"""A real control plane for tests: `jitgate server` as a subprocess over mTLS on loopback.

    from tests.cluster import ControlPlane

    with ControlPlane(tmp_path, policies="policies.yaml") as cp:
        stubs = cp.client("alice")                  # cli.client.Client: .access, .broker, ...
        stubs.access.WhoAmI(access_pb2.WhoAmIRequest())
        creds = cp.credentials("broker")            # grpc.ChannelCredentials (sync or aio channels)
        cp.kill(); cp.restart()                      # kill -9, then start again on the same port

Identities are issued in-process from the data directory's X.509 CA (the same
CA the server loads), into `<tmp>/identities/<name>`. Readiness is the gRPC
health service answering SERVING, never a sleep. Defaults: admins [`admin`]
(besides the policy group `admins`), brokers [`broker`].
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ca.keystore import PASSPHRASE_ENV
from cli.client import Client
from controlplane.identity import DataDir, issue_identity_bundle, open_x509_ca

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
# server.yaml keys for a plane whose tests need no duration model (config=NO_MODEL): each request
# they make names its duration, and the model's libraries (LightGBM imports scikit-learn and SciPy,
# ~2 s of CPU) would otherwise load at every start, hold up the first request (its risk score) and
# delay every graceful stop. Risk scores are then "unknown (off)"; tests/recommend covers them.
NO_MODEL: dict[str, Any] = {"recommender": False}


class ControlPlaneError(RuntimeError):
    """The server did not start or stop as asked; the message includes its log tail."""


class ControlPlane:
    """One `jitgate server` subprocess with its own data directory, config and port."""

    def __init__(
        self,
        tmp: Path,
        policies: str | os.PathLike[str] = REPO / "policies.yaml",
        *,
        admins: Iterable[str] = ("admin",),
        brokers: Iterable[str] = ("broker",),
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
        store: str | None = None,
        peer: ControlPlane | None = None,
    ) -> None:
        """`store`: a store URL (`postgresql://...`; see tests/pgstore.py) instead of SQLite in the
        data directory; the CA passphrase then comes from the environment, as a shared store needs.
        `peer`: another plane on the same store; this one's CAs come from the store (the peer's),
        and identities are the peer's."""
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.data = DataDir(self.tmp / "data")
        self.policies = Path(policies).resolve()
        self.config_path = self.tmp / "server.yaml"
        cfg: dict[str, Any] = {"admins": list(admins), "brokers": list(brokers), "policy_poll_seconds": 0.25}
        cfg.update(config or {})
        self.store = store or (peer.store if peer is not None else None)
        self.peer = peer
        if self.store:
            cfg["store"] = self.store
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.env = {**os.environ, **(env or {})}
        if self.store:  # every plane on one store gets the same passphrase (controlplane/scaleout/shared_ca.py)
            self.env[PASSPHRASE_ENV] = peer.env[PASSPHRASE_ENV] if peer is not None else secrets.token_hex(32)
        self.env.pop("JITGATE_IDENTITY", None)
        self.env.pop("JITGATE_SERVER", None)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._channels: list[grpc.Channel] = []
        self._ca = None
        self._lock = threading.Lock()
        if start:
            self.start()

    # -- life cycle -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.tmp / "server.log"

    def log(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = START_TIMEOUT) -> ControlPlane:
        """Start the server (port 0 the first time, the same port afterwards) and wait until SERVING."""
        if self.proc is not None and self.proc.poll() is None:
            raise ControlPlaneError("control plane already running")
        self.data.addr_path.unlink(missing_ok=True)
        # Creates the CA before the server's first start (a plane joining a store takes the store's
        # CAs instead); used for health checks.
        self.identity("admin")
        cmd = [
            sys.executable, "-m", "cli.main", "server", "--data-dir", str(self.data.root),
            "--policies", str(self.policies), "--listen", f"127.0.0.1:{self.port}",
            "--config", str(self.config_path),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.data.addr_path.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"control plane did not listen within {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.02)
        self.port = int(self.data.addr_path.read_text().strip().rsplit(":", 1)[1])
        channel = self.channel("admin")
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            while True:
                self._check_alive()
                try:
                    resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"control plane not SERVING within {timeout}s:\n{self.log()[-3000:]}")
                time.sleep(0.02)
        finally:
            channel.close()

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ControlPlaneError(f"control plane exited with {self.proc.returncode}:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (graceful); returns the exit code."""
        self._close_channels()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL (kill -9): no shutdown code runs."""
        self._close_channels()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, timeout: float = START_TIMEOUT) -> ControlPlane:
        """Stop gracefully if running, then start again on the same port."""
        self.stop()
        return self.start(timeout)

    def sighup(self) -> None:
        """Ask the server to reload its policies."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- identities and clients -----------------------------------------------------------

    @property
    def ca_pem(self) -> bytes:
        if self.peer is not None:
            return self.peer.ca_pem
        return open_x509_ca(self.data, self._passphrase()).ca_cert_pem

    def _passphrase(self) -> bytes | None:
        return self.env[PASSPHRASE_ENV].encode() if self.store else None

    def identity(self, name: str, days: int = 1) -> Path:
        """A client bundle (ca.pem, cert.pem, key.pem) for identity `name`, issued once and cached."""
        if self.peer is not None:
            return self.peer.identity(name, days)
        out = self.tmp / "identities" / name
        with self._lock:  # threads of one test may ask for the same identity at once
            if not (out / "key.pem").exists():
                if self._ca is None:
                    self._ca = open_x509_ca(self.data, self._passphrase())
                (self.tmp / "identities").mkdir(mode=0o700, exist_ok=True)
                issue_identity_bundle(self._ca, name, out, days)
        return out

    def credentials(self, name: str) -> grpc.ChannelCredentials:
        """mTLS channel credentials for identity `name` (works for grpc and grpc.aio channels)."""
        out = self.identity(name)
        return grpc.ssl_channel_credentials(
            root_certificates=(out / "ca.pem").read_bytes(), private_key=(out / "key.pem").read_bytes(),
            certificate_chain=(out / "cert.pem").read_bytes())

    def channel(self, name: str) -> grpc.Channel:
        """A sync mTLS channel as `name` (closed by stop()/kill())."""
        channel = grpc.secure_channel(self.address, self.credentials(name))
        self._channels.append(channel)
        return channel

    def client(self, name: str, timeout: float = 15.0) -> Client:
        """Stubs of every service as `name`: `.access`, `.broker`, `.policy`, `.audit`, `.admin`."""
        return Client(self.channel(name), timeout)

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cli_env(self, name: str) -> dict[str, str]:
        """Environment for running `jitgate` as `name` against this server."""
        return {**self.env, "JITGATE_IDENTITY": str(self.identity(name)), "JITGATE_SERVER": self.address}

    def _close_channels(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()


def spawn_broker(cmd: list[str], env: dict[str, str], log_path: Path, addr_file: Path, what: str,
                 timeout: float = START_TIMEOUT) -> tuple[subprocess.Popen[bytes], int]:
    """Start a broker subprocess (output appended to `log_path`) and wait for its `listen.addr`.

    Returns the process and the port it listens on; raises with the log tail if it does not start.
    """
    addr_file.unlink(missing_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not addr_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"{what} did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.02)
    return proc, int(addr_file.read_text().strip().rsplit(":", 1)[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM and wait; SIGKILL after `timeout`. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


__all__ = ["NO_MODEL", "REPO", "ControlPlane", "ControlPlaneError", "spawn_broker", "stop_process"]
