"""Issue 13 (Low): session options mean what broker/ssh/options.py says, and hold.

Before: `exec: false` still ran commands piped into a shell without a pty, and
`sftp: false` still allowed `scp -O` (an exec of `scp -f`/`scp -t`). Real OpenSSH
client, real broker, real sshd. `locked` allows exec only; `termonly` allows a
terminal and sftp, not exec (tests/broker/ssh/harness.py).
"""
from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.broker.ssh.harness import SshStack, UserKey, sessions_of, text, wait_for
from tests.support import require_binary

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> SshStack:
    for binary in ("sshd", "ssh", "scp", "sftp", "ssh-keygen", "rsync"):
        require_binary(binary)
    with SshStack(tmp_path_factory.mktemp("ssh-options")) as s:
        yield s


@pytest.fixture(scope="module")
def termonly(stack: SshStack) -> UserKey:
    return stack.user_key("alice", stack.grant("alice", "termonly").id)


@pytest.fixture(scope="module")
def locked(stack: SshStack) -> UserKey:
    return stack.user_key("alice", stack.grant("alice", "locked").id)


def marker() -> Path:
    """A file on the target (a local sshd here) that exists only if a refused command ran."""
    return Path(f"/tmp/jitgate-should-not-exist-{uuid.uuid4().hex}")


def refused(r: subprocess.CompletedProcess[bytes], words: str) -> None:
    assert r.returncode != 0, text(r)
    assert "jitgate: access refused" in r.stderr.decode() and words in r.stderr.decode(), text(r)


def test_exec_false_refuses_commands_piped_into_a_shell_without_a_pty(stack: SshStack, termonly: UserKey) -> None:
    ran = marker()
    r = stack.ssh(termonly, "termonly", input=f"touch {ran}\n".encode(), extra=("-T",))
    # Refused by the control plane (the channel is `exec`), with the broker's word on why.
    refused(r, "`exec` is not allowed by the policy")
    assert "a shell without a terminal runs the commands piped into it" in r.stderr.decode()
    assert not ran.exists()
    r = stack.ssh(termonly, "termonly", f"touch {ran}")
    refused(r, "`exec` is not allowed")
    r = stack.ssh(termonly, "termonly", f"touch {ran}", extra=("-tt",))  # a command with a terminal: still exec
    assert r.returncode != 0 and b"`exec` is not allowed" in r.stdout + r.stderr, text(r)
    assert not ran.exists()
    # The control plane refused the channel itself (`exec`), or the broker did after it: never live.
    wait_for(lambda: all(s.end_reason for s in sessions_of(stack, termonly.grant_id)))


def test_exec_false_still_allows_an_interactive_terminal(stack: SshStack, termonly: UserKey) -> None:
    r = stack.ssh(termonly, "termonly", input=b"echo $((6*7))\nexit\n", extra=("-tt",))
    assert r.returncode == 0 and b"42" in r.stdout, text(r)


def test_sftp_false_refuses_legacy_scp_sftp_server_and_rsync(stack: SshStack, locked: UserKey,
                                                             tmp_path: Path) -> None:
    r = subprocess.run(stack.scp_argv(locked, "-O", stack.remote("locked", "/etc/hostname"), str(tmp_path / "h")),
                       capture_output=True, timeout=30)
    refused(r, "`sftp` is not allowed")
    assert "scp -O, sftp-server and rsync transfer files" in r.stderr.decode()
    assert not (tmp_path / "h").exists()
    up = tmp_path / "up.txt"
    up.write_text("payload\n")
    dest = marker()
    r = subprocess.run(stack.scp_argv(locked, "-O", str(up), stack.remote("locked", str(dest))),
                       capture_output=True, timeout=30)
    refused(r, "`sftp` is not allowed")
    assert not dest.exists()
    r = subprocess.run(stack.scp_argv(locked, stack.remote("locked", "/etc/hostname"), str(tmp_path / "h")),
                       capture_output=True, timeout=30)  # scp's default: the sftp subsystem
    refused(r, "`sftp` is not allowed")
    batch = tmp_path / "batch"
    batch.write_text("get /etc/hostname\n")
    argv = stack.sftp_argv(locked, "locked", batch)
    argv[-1:-1] = ["-s", "/usr/lib/openssh/sftp-server"]  # sftp-server as a command, not the subsystem
    r = subprocess.run(argv, capture_output=True, timeout=30, cwd=tmp_path)
    refused(r, "`sftp` is not allowed")
    assert not (tmp_path / "hostname").exists()
    r = stack.ssh(locked, "locked", "rsync", "--server", "--sender", "-e.LsfxCIvu", ".", "/etc/hostname")
    refused(r, "`sftp` is not allowed")
    r = stack.ssh(locked, "locked", "echo commands-still-run")  # exec itself stays allowed
    assert r.returncode == 0 and r.stdout == b"commands-still-run\n", text(r)


def test_legacy_scp_needs_exec_too(stack: SshStack, termonly: UserKey, tmp_path: Path) -> None:
    r = subprocess.run(stack.scp_argv(termonly, "-O", stack.remote("termonly", "/etc/hostname"), str(tmp_path / "h")),
                       capture_output=True, timeout=30)
    assert r.returncode != 0 and not (tmp_path / "h").exists(), text(r)
    assert b"not allowed" in r.stderr, text(r)
    r = subprocess.run(stack.scp_argv(termonly, stack.remote("termonly", "/etc/hostname"), str(tmp_path / "h")),
                       capture_output=True, timeout=30)  # over sftp: allowed on termonly
    assert r.returncode == 0 and (tmp_path / "h").read_bytes() == Path("/etc/hostname").read_bytes(), text(r)
