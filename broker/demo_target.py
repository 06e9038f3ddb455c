"""A local SSH target for the demo and the tests: a real OpenSSH sshd with its own config.

The target trusts only the SSH upstream CA (`TrustedUserCAKeys`), so only the
broker gets in; `AuthorizedKeysFile none`, `UsePAM no`, `PermitRootLogin
prohibit-password`. Its host key is made first, so its public line can go
into the resource's `host_key` before the target (or the control plane) runs,
and the trusted CA lines can be written later (`set_trusted_ca`): sshd reads
that file at each login. When no sshd is installed an asyncssh server plays
the target (same trust rules, shell/exec/sftp), in a child process either way.

    target = DemoTarget.create(Path("/tmp/t"))         # host key made here
    print(target.host_key_line)                          # -> resources.NAME.host_key
    target.set_trusted_ca([upstream_ca_line])
    target.start()                                       # free port unless given
    ... target.address  # "127.0.0.1:PORT"
    target.stop()

Command line: `python -m broker.demo_target --dir D [--port P] [--trusted-ca-file F]`.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST_KEY = "ssh_host_ed25519_key"
TRUSTED_CA = "trusted_user_ca_keys"
CONFIG = "sshd_config"
LOG = "sshd.log"


def find_sshd() -> str | None:
    """Path of OpenSSH's sshd, or None."""
    for path in (shutil.which("sshd"), "/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _sftp_server() -> str:
    for path in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server"):
        if os.path.exists(path):
            return path
    return "internal-sftp"


def make_host_key(path: Path) -> str:
    """Write an Ed25519 host key (OpenSSH format, 0600) unless present; its public line."""
    from cryptography.hazmat.primitives import serialization

    from ca.keystore import new_openssh_key

    if not path.exists():
        return new_openssh_key(path)
    key = serialization.load_ssh_private_key(path.read_bytes(), None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def sshd_config(directory: Path, port: int, host: str = "127.0.0.1") -> str:
    return "\n".join([
        f"Port {port}",
        f"ListenAddress {host}",
        f"HostKey {directory / HOST_KEY}",
        f"PidFile {directory / 'sshd.pid'}",
        f"TrustedUserCAKeys {directory / TRUSTED_CA}",
        "AuthorizedKeysFile none",
        "AuthorizedPrincipalsFile none",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "StrictModes no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "MaxStartups 2000",
        "MaxSessions 100",
        "LogLevel VERBOSE",
        # A home of its own for sessions: the machine's login scripts (root's ~/.bashrc runs
        # `pyenv init`, which takes a lock; a session cut at expiry can leave it stale) stay out.
        f"SetEnv HOME={directory / 'home'}",
        f"Subsystem sftp {_sftp_server()}",
        # Sessions start in a home of the target's own, so a login shell's rc files
        # on this machine (pyenv's rehash lock, say) never stall or change them.
        f"SetEnv HOME={directory / 'home'}",
        "",
    ])


@dataclass
class DemoTarget:
    """A target sshd (or its asyncssh stand-in) running in a child process."""

    directory: Path
    host_key_line: str
    host: str = "127.0.0.1"
    port: int = 0
    implementation: str = ""  # "sshd" or "asyncssh"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, directory: Path, host: str = "127.0.0.1") -> DemoTarget:
        """Prepare the directory (0700) and host key; nothing runs yet."""
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        (directory / "home").mkdir(exist_ok=True)
        line = make_host_key(directory / HOST_KEY)
        (directory / "home").mkdir(mode=0o700, exist_ok=True)
        trusted = directory / TRUSTED_CA
        if not trusted.exists():
            trusted.write_text("")
        return cls(directory=directory, host_key_line=line, host=host)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def set_trusted_ca(self, lines: list[str]) -> None:
        """The CA key lines the target trusts for user certificates (the upstream CA)."""
        tmp = self.directory / (TRUSTED_CA + ".tmp")
        tmp.write_text("".join(line.strip() + "\n" for line in lines if line.strip()))
        os.replace(tmp, self.directory / TRUSTED_CA)

    def start(self, port: int = 0, prefer_sshd: bool = True, timeout: float = 10.0) -> DemoTarget:
        """Start the target on `port` (a free one when 0) and wait until it accepts connections."""
        self.port = port or free_port(self.host)
        sshd = find_sshd() if prefer_sshd else None
        log = open(self.directory / LOG, "ab")
        if sshd is not None:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True) if os.geteuid() == 0 else None
            (self.directory / CONFIG).write_text(sshd_config(self.directory, self.port, self.host))
            cmd = [sshd, "-D", "-e", "-f", str(self.directory / CONFIG)]
            self.implementation = "sshd"
        else:
            cmd = [sys.executable, "-m", "broker.demo_target", "--dir", str(self.directory),
                   "--port", str(self.port), "--host", self.host, "--asyncssh"]
            self.implementation = "asyncssh"
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"target exited at start: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"target did not start on {self.address}: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.directory / LOG
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> DemoTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- asyncssh stand-in


async def _run_asyncssh_target(directory: Path, host: str, port: int) -> None:
    import asyncssh

    trusted_path = directory / TRUSTED_CA

    class TargetServer(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def public_key_auth_supported(self) -> bool:
            return True

        def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
            # Re-read at each login, as sshd does.
            trusted = [
                asyncssh.import_public_key(line) for line in trusted_path.read_text().splitlines() if line.strip()
            ]
            return any(key.public_data == t.public_data for t in trusted)

        def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
            return False  # certificates only

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        argv = ["/bin/sh", "-c", command] if command else ["/bin/sh", "-i"]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        await process.redirect(stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr)
        process.exit(await proc.wait())

    server = await asyncssh.create_server(
        TargetServer, host, port, server_host_keys=[str(directory / HOST_KEY)],
        process_factory=handle, encoding=None, line_editor=False,
        sftp_factory=True, allow_scp=True, agent_forwarding=False, x11_forwarding=False)
    print(f"asyncssh demo target on {host}:{port}", flush=True)
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local SSH demo target that trusts only the upstream CA.")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--trusted-ca-file", type=Path)
    parser.add_argument("--asyncssh", action="store_true", help="serve in this process with asyncssh")
    args = parser.parse_args(argv)
    target = DemoTarget.create(args.dir, args.host)
    if args.trusted_ca_file:
        target.set_trusted_ca(args.trusted_ca_file.read_text().splitlines())
    if args.asyncssh:
        try:
            asyncio.run(_run_asyncssh_target(target.directory, args.host, args.port or free_port(args.host)))
        except KeyboardInterrupt:
            pass
        return 0
    target.start(args.port)
    print(f"{target.implementation} target on {target.address}, host key: {target.host_key_line}", flush=True)
    try:
        assert target.process is not None
        return target.process.wait()
    except KeyboardInterrupt:
        target.stop()
        return 0


if __name__ == "__main__":
    sys.exit(main())
