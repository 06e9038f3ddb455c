"""End to end: OpenSSH client -> jitgate SSH broker -> real sshd, with a real control plane.

One control plane, target and broker per module (see harness.SshStack). The
test policies auto-approve `web-01`/`web-02`, restrict `locked` to exec only
and pin a wrong host key for `badkey`; grace is 2 s so expiry tests are short.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import pwd
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from google.protobuf import duration_pb2

from ca import SSHCertificateAuthority, new_serial, parse_certificate
from jitgate.v1 import access_pb2, audit_pb2
from recorder import FileRecordingStore
from tests.broker.ssh.harness import (
    TARGET_USER,
    SshStack,
    UserKey,
    ended_session,
    read_until,
    sessions_of,
    text,
    wait_for,
)
from tests.support import require_binary

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> SshStack:
    for binary in ("sshd", "ssh", "scp", "sftp", "ssh-keygen"):
        require_binary(binary)
    # Every refused login audited one by one (see tests/security/test_refusal_flood.py).
    with SshStack(tmp_path_factory.mktemp("ssh-e2e"), broker_args=("--refusal-reports", "1000")) as s:
        yield s


@pytest.fixture(scope="module")
def alice(stack: SshStack) -> UserKey:
    grant = stack.grant("alice", "web-01")
    return stack.user_key("alice", grant.id)


def recordings(stack: SshStack) -> FileRecordingStore:
    return FileRecordingStore(stack.broker_dir)


def refusals(stack: SshStack) -> list[dict]:
    events = stack.client("admin").audit.ListEvents(audit_pb2.ListEventsRequest(type="session.refused", page_size=500))
    return [json.loads(e.data_json) for e in events.events]


def refusal_audited(stack: SshStack, code: str, **fields: str) -> bool:
    """Whether a refusal with `code` (and `fields`) reached the audit log; the broker reports a
    refused login when its connection ends, so this waits a little for it."""
    def seen() -> bool:
        return any(e["code"] == code and all(e.get(k) == v for k, v in fields.items()) for e in refusals(stack))
    return wait_for(seen)


# ------------------------------------------------------------------ relay


def test_exec_relays_stdin_stdout_stderr_and_exit_status(stack: SshStack, alice: UserKey) -> None:
    r = stack.ssh(alice, "web-01", "cat; echo to-stderr >&2; exit 7", input=b"hello through the broker\n")
    assert r.returncode == 7, text(r)
    assert r.stdout == b"hello through the broker\n"
    assert b"to-stderr" in r.stderr

    session = ended_session(stack, alice.grant_id)[0]
    assert session.end_reason == "client_exit"
    assert session.bytes_in >= len(b"hello through the broker\n")
    assert session.bytes_out >= len(b"hello through the broker\nto-stderr\n")
    store = recordings(stack)
    result = store.verify(session.recording_ref, expected_final_hash=session.recording_hash)
    assert result.ok, result.problems
    records = [json.loads(line) for line in
               (stack.broker_dir / "recordings" / session.recording_ref / "events.jsonl").read_text().splitlines()]
    by_type = {r.get("type"): r for r in records[1:]}
    assert records[0]["command"] == "cat; echo to-stderr >&2; exit 7"
    assert base64.b64decode(by_type["stdin"]["b64"]) == b"hello through the broker\n"
    assert base64.b64decode(by_type["stderr"]["b64"]) == b"to-stderr\n"
    assert by_type["exit"]["status"] == 7


def test_large_exec_output_arrives_whole(stack: SshStack, alice: UserKey) -> None:
    r = stack.ssh(alice, "web-01", "head -c 3000000 /dev/zero | tr '\\0' x")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == 3_000_000 and set(r.stdout) == {ord("x")}


def test_large_stdin_reaches_the_target_before_eof(stack: SshStack, alice: UserKey) -> None:
    payload = b"0123456789abcdef" * 400_000  # 6.4 MB
    r = stack.ssh(alice, "web-01", "wc -c", input=payload)
    assert r.returncode == 0, text(r)
    assert r.stdout.strip() == str(len(payload)).encode()


def test_pty_shell_with_input_from_a_pipe(stack: SshStack, alice: UserKey) -> None:
    before = len(sessions_of(stack, alice.grant_id))
    r = stack.ssh(alice, "web-01", extra=("-tt",), input=b"stty size; echo $((6*7))\nexit 3\n")
    assert r.returncode == 3, text(r)
    assert b"42" in r.stdout
    sessions = ended_session(stack, alice.grant_id, before + 1)
    session = max(sessions, key=lambda s: s.started_at.ToDatetime())
    store = recordings(stack)
    assert store.verify(session.recording_ref).ok
    header, events = cast_of(stack, session.recording_ref)
    assert header["version"] == 2
    outputs = "".join(data for _, code, data in events if code == "o")
    # What the terminal echoed is in the output; keystrokes themselves are not recorded.
    assert "42" in outputs and "echo $((6*7))" in outputs
    assert not [e for e in events if e[1] == "i"]
    assert store.info(session.recording_ref).bytes_in == len(b"stty size; echo $((6*7))\nexit 3\n")


def cast_of(stack: SshStack, ref: str) -> tuple[dict, list[list]]:
    """A terminal recording's asciicast header and events, read from its file."""
    cast = next(p for p in (stack.broker_dir / "recordings" / ref).iterdir() if p.suffix == ".cast")
    lines = cast.read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def test_a_password_typed_at_a_silent_prompt_is_not_recorded(stack: SshStack, alice: UserKey) -> None:
    before = len(sessions_of(stack, alice.grant_id))
    proc = subprocess.Popen(stack.ssh_argv(alice, "web-01", extra=("-tt",)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    seen = bytearray()
    try:
        # Typed as a person would: the secret only after the prompt (echo is off by then).
        proc.stdin.write(b"read -rs -p \"Secret$((1+1)): \" pw; echo; echo got ${#pw}\n")
        proc.stdin.flush()
        read_until(proc, b"Secret2: ", seen)
        proc.stdin.write(b"hunter2-secret\n")
        proc.stdin.flush()
        read_until(proc, b"got 14", seen)
        proc.stdin.write(b"exit\n")
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert b"hunter2-secret" not in seen  # the terminal did not echo it
    sessions = ended_session(stack, alice.grant_id, before + 1)
    session = max(sessions, key=lambda s: s.started_at.ToDatetime())
    data = b"".join(p.read_bytes() for p in (stack.broker_dir / "recordings" / session.recording_ref).iterdir())
    assert b"got 14" in data and b"hunter2" not in data


def test_scp_both_ways_and_sftp(stack: SshStack, alice: UserKey, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    src = tmp_path / "up.bin"
    src.write_bytes(payload)
    r = subprocess.run(stack.scp_argv(alice, str(src), stack.remote("web-01", "/tmp/jitgate-up.bin")),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, text(r)
    back = tmp_path / "down.bin"
    r = subprocess.run(stack.scp_argv(alice, stack.remote("web-01", "/tmp/jitgate-up.bin"), str(back)),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, text(r)
    assert back.read_bytes() == payload

    batch = tmp_path / "batch"
    batch.write_text("mkdir /tmp/jitgate-sftp-dir\nput {} /tmp/jitgate-sftp-dir/a\nrename /tmp/jitgate-sftp-dir/a "
                     "/tmp/jitgate-sftp-dir/b\nget /tmp/jitgate-sftp-dir/b {}\nrm /tmp/jitgate-sftp-dir/b\n"
                     "rmdir /tmp/jitgate-sftp-dir\n".format(src, tmp_path / "sftp-back.bin"))
    r = subprocess.run(stack.sftp_argv(alice, "web-01", batch), capture_output=True, timeout=30)
    assert r.returncode == 0, text(r)
    assert (tmp_path / "sftp-back.bin").read_bytes() == payload

    store = recordings(stack)
    infos = [i for i in store.list() if i.kind.value == "sftp"]
    assert len(infos) >= 3
    # The client may exit a moment before the broker seals the recording.
    wait_for(lambda: all(store.verify(i.ref).ok for i in infos))
    ops = []
    for info in infos:
        reader = store.open(info.ref)
        ops += [e for e in reader.events() if getattr(e, "type", "") == "sftp"]
    done = {(o.op, o.path, o.bytes) for o in ops if o.ok}
    assert ("close", "/tmp/jitgate-up.bin", len(payload)) in done
    assert ("mkdir", "/tmp/jitgate-sftp-dir", 0) in done
    assert any(o.op == "rename" and o.target == "/tmp/jitgate-sftp-dir/b" for o in ops)
    assert ("remove", "/tmp/jitgate-sftp-dir/b", 0) in done


def test_policy_options_are_enforced(stack: SshStack) -> None:
    grant = stack.grant("alice", "locked")
    key = stack.user_key("alice", grant.id)
    r = stack.ssh(key, "locked", "echo allowed")
    assert r.returncode == 0 and r.stdout == b"allowed\n", text(r)
    r = stack.ssh(key, "locked", "echo no", extra=("-tt",))
    # The certificate lacks permit-pty, so the pty request itself is refused.
    assert r.returncode != 0 and r.stdout == b"", text(r)
    assert b"PTY allocation request failed" in r.stderr or b"not allowed" in r.stderr
    r = subprocess.run(stack.scp_argv(key, stack.remote("locked", "/etc/hostname"), "/dev/null"),
                       capture_output=True, timeout=30)
    assert r.returncode != 0 and b"not allowed" in r.stderr


def test_wrong_pinned_host_key_is_refused(stack: SshStack) -> None:
    grant = stack.grant("alice", "badkey")
    key = stack.user_key("alice", grant.id)
    r = stack.ssh(key, "badkey", "echo should-not-run")
    assert r.returncode != 0
    assert b"should-not-run" not in r.stdout
    assert b"does not match its pinned key" in r.stderr


# ------------------------------------------------------------------ deadline


def test_warning_then_cut_at_expiry(stack: SshStack) -> None:
    grant = stack.grant("bob", "web-01", seconds=4)
    key = stack.user_key("bob", grant.id)
    r = stack.ssh(key, "web-01", "for i in $(seq 60); do echo tick; sleep 0.25; done", timeout=30)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert "jitgate: access to web-01 ends at" in err, err
    assert "jitgate: access to web-01 expired at" in err
    assert err.index("ends at") < err.index("expired at")
    assert r.stdout.count(b"tick") < 40  # cut long before the loop ends
    session = ended_session(stack, grant.id)[0]
    assert session.end_reason == "expired"
    result = recordings(stack).verify(session.recording_ref, expected_final_hash=session.recording_hash)
    assert result.ok and result.seal.end_reason == "expired"


def test_pty_sees_the_cut_line_in_the_terminal(stack: SshStack) -> None:
    grant = stack.grant("bob", "web-01", seconds=3)
    key = stack.user_key("bob", grant.id)
    r = stack.ssh(key, "web-01", "sleep 30", extra=("-tt",), timeout=30)
    assert b"ends at" in r.stdout and b"expired at" in r.stdout, text(r)
    assert r.stdout.index(b"ends at") < r.stdout.index(b"expired at")


def test_live_extension_moves_the_deadline(stack: SshStack) -> None:
    grant = stack.grant("bob", "web-02", seconds=4)
    key = stack.user_key("bob", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-02", "sleep 6; echo survived"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for(lambda: any(not s.end_reason for s in sessions_of(stack, grant.id)))
    d = duration_pb2.Duration(seconds=60)
    stack.client("bob").access.Extend(access_pb2.ExtendRequest(id=grant.id, duration=d, justification="need more"))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == b"survived\n"
    assert b"extended until" in err


def test_revocation_cuts_live_session(stack: SshStack) -> None:
    grant = stack.grant("bob", "web-02")
    key = stack.user_key("bob", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-02", "echo started; sleep 60"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n"  # relaying
    stack.client("admin").access.Revoke(access_pb2.RevokeRequest(id=grant.id, reason="incident 7"))
    revoked_at = time.monotonic()
    _out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - revoked_at
    assert proc.returncode != 0
    assert b"was revoked" in err and b"incident 7" in err, err
    session = ended_session(stack, grant.id)[0]
    assert session.end_reason == "revoked"
    print(f"revocation to disconnect: {elapsed * 1000:.0f} ms")


def connections_to(port: int) -> int:
    """ESTABLISHED TCP connections (IPv4 loopback) whose remote end is `port`, from /proc/net/tcp."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[2].endswith(f":{port:04X}") and row.split()[3] == "01")


def test_cut_closes_the_target_side_too(stack: SshStack) -> None:
    # The broker closes its own connection to the target after the user's cut went out
    # (so that a burst of cuts is not slowed by target teardowns); it must still close it.
    before = connections_to(stack.target.port)
    grant = stack.grant("bob", "web-02")
    key = stack.user_key("bob", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-02", "echo started; sleep 60"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
    assert connections_to(stack.target.port) == before + 1
    stack.client("admin").access.Revoke(access_pb2.RevokeRequest(id=grant.id, reason="target side"))
    proc.communicate(timeout=30)
    assert wait_for(lambda: connections_to(stack.target.port) == before, timeout=10)
    assert ended_session(stack, grant.id)[0].end_reason == "revoked"
    # The broker also sends `signal KILL` on the target channel; sshd refuses session signals for
    # root and logs so: the log shows the request (the non-root test below sees the command end).
    sshd_log = stack.target.directory / "sshd.log"
    assert wait_for(lambda: "session_signal_req" in sshd_log.read_text(errors="replace"), timeout=10)


def running_on_target(marker: str) -> list[str]:
    """PIDs of TARGET_USER's processes whose command line holds `marker`."""
    r = subprocess.run(["pgrep", "-u", TARGET_USER, "-f", marker], capture_output=True, text=True)
    return r.stdout.split()


def test_cut_stops_the_target_command(stack: SshStack) -> None:
    # Without a terminal, sshd closes a command's pipes when its channel closes but signals
    # nothing: `sleep` would run on after the cut. The cut's `signal KILL` must end it (sshd
    # kills the session's process group; it refuses for root, hence a non-root login).
    try:
        pwd.getpwnam(TARGET_USER)
    except KeyError:
        pytest.skip(f"no account {TARGET_USER} on this machine (scripts/setup.sh makes it)")
    marker = f"3600.{secrets.randbelow(10**6):06d}"  # a sleep no other process runs
    grant = stack.grant("bob", "web-02", login=TARGET_USER)
    key = stack.user_key("bob", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-02", f"echo started; sleep {marker}", login=TARGET_USER),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n", proc.stderr
    assert running_on_target(f"sleep {marker}")
    stack.client("admin").access.Revoke(access_pb2.RevokeRequest(id=grant.id, reason="stop the command"))
    _out, err = proc.communicate(timeout=30)
    assert b"was revoked" in err, err
    assert wait_for(lambda: not running_on_target(f"sleep {marker}"), timeout=10)


# ------------------------------------------------------------------ refusals


def refused(r: subprocess.CompletedProcess[bytes], words: str) -> None:
    assert r.returncode == 255, text(r)
    err = r.stderr.decode()
    assert "jitgate: access refused" in err and words in err, err
    assert b"should-not-run" not in r.stdout


def sign_with(ca: SSHCertificateAuthority, key: Path, key_id: str, principal: str,
              after: dt.datetime, before: dt.datetime) -> UserKey:
    line = ca.sign_user_certificate(public_key=key.with_suffix(".pub").read_text(), key_id=key_id,
                                    principals=[principal], valid_after=after, valid_before=before,
                                    serial=new_serial(), permit_pty=True, permit_port_forwarding=False,
                                    permit_agent_forwarding=False)
    cert = key.parent / (key.name + "-cert.pub")
    cert.write_text(line + "\n")
    return UserKey(key=key, cert=cert, grant_id=key_id)


def test_expired_certificate_is_refused(stack: SshStack, alice: UserKey) -> None:
    from controlplane.identity import open_ssh_cas

    user_ca, _ = open_ssh_cas(stack.cp.data)
    now = dt.datetime.now(dt.UTC)
    key = sign_with(user_ca, stack.new_key(), alice.grant_id, "root@web-01",
                    now - dt.timedelta(hours=2), now - dt.timedelta(hours=1))
    refused(stack.ssh(key, "web-01", "echo should-not-run"), "expired")
    assert refusal_audited(stack, "cert.expired")


def test_revoked_grant_certificate_is_refused(stack: SshStack) -> None:
    grant = stack.grant("alice", "web-02")
    key = stack.user_key("alice", grant.id)
    stack.client("admin").access.Revoke(access_pb2.RevokeRequest(id=grant.id, reason="test"))
    refused(wait_for(lambda: (r := stack.ssh(key, "web-02", "echo should-not-run")).returncode == 255 and r),
            "revoked")
    assert refusal_audited(stack, "cert.revoked")


def test_foreign_ca_certificate_is_refused(stack: SshStack, alice: UserKey, tmp_path: Path) -> None:
    foreign = SSHCertificateAuthority.load_or_create(tmp_path / "foreign", b"p" * 32, name="user-ca")
    now = dt.datetime.now(dt.UTC)
    key = sign_with(foreign, stack.new_key(), alice.grant_id, "root@web-01", now - dt.timedelta(minutes=1),
                    now + dt.timedelta(hours=1))
    refused(stack.ssh(key, "web-01", "echo should-not-run"), "untrusted CA")
    assert refusal_audited(stack, "cert.untrusted_ca")


def test_wrong_target_certificate_is_refused(stack: SshStack, alice: UserKey) -> None:
    refused(stack.ssh(alice, "web-02", "echo should-not-run"), "another target")
    assert refusal_audited(stack, "cert.principal_mismatch", resource="web-02")


def test_tampered_certificate_is_refused(stack: SshStack, alice: UserKey) -> None:
    import base64

    line = alice.cert.read_text().split()
    blob = bytearray(base64.b64decode(line[1]))
    info = parse_certificate(alice.cert.read_text())
    idx = blob.find(info.key_id.encode())
    blob[idx] ^= 0x01  # another grant id, same signature
    key = stack.new_key()
    (key.parent / (key.name + ".pub")).write_text(alice.key.with_suffix(".pub").read_text())
    key.write_bytes(alice.key.read_bytes())
    cert = key.parent / (key.name + "-cert.pub")
    cert.write_text(f"{line[0]} {base64.b64encode(bytes(blob)).decode()}\n")
    # OpenSSH's client checks the CA signature itself and drops the altered certificate, so
    # only the plain key reaches the broker (the broker's own signature check is in test_auth.py).
    refused(stack.ssh(UserKey(key, cert, alice.grant_id), "web-01", "echo should-not-run"), "certificate")


def test_plain_key_and_malformed_user_name_are_refused(stack: SshStack, alice: UserKey) -> None:
    refused(stack.ssh(stack.new_key(), "web-01", "echo should-not-run"), "certificate is required")
    r = subprocess.run(["ssh", "-p", str(stack.broker_port), *stack.ssh_options(alice), "root@127.0.0.1",
                        "echo should-not-run"], capture_output=True, timeout=30)
    refused(r, "LOGIN@RESOURCE")


def test_user_certificate_opens_nothing_on_the_target(stack: SshStack, alice: UserKey) -> None:
    known = stack.tmp / "target_known_hosts"
    known.write_text(f"[127.0.0.1]:{stack.target.port} {stack.target.host_key_line}\n")
    r = subprocess.run(["ssh", "-p", str(stack.target.port), "-F", "/dev/null", "-i", str(alice.key),
                        "-o", f"CertificateFile={alice.cert}", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                        "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                        "root@127.0.0.1", "echo should-not-run"], capture_output=True, timeout=30)
    assert r.returncode == 255 and b"Permission denied" in r.stderr
    assert b"should-not-run" not in r.stdout


# ------------------------------------------------------------------ recordings


def test_edited_recording_fails_verification(stack: SshStack, alice: UserKey, tmp_path: Path) -> None:
    import shutil

    before = len(sessions_of(stack, alice.grant_id))
    r = stack.ssh(alice, "web-01", "echo original-output")
    assert r.returncode == 0
    sessions = ended_session(stack, alice.grant_id, before + 1)
    session = max(sessions, key=lambda s: s.started_at.ToDatetime())
    copy = tmp_path / "copy"
    shutil.copytree(stack.broker_dir, copy, ignore=shutil.ignore_patterns("*.sock"))
    store = FileRecordingStore(copy)
    assert store.verify(session.recording_ref).ok
    data = next(p for p in (copy / "recordings" / session.recording_ref).iterdir() if p.suffix == ".jsonl")
    data.write_text(data.read_text().replace("original-output", "innocent-output"))
    result = store.verify(session.recording_ref)
    assert not result.ok and not result.intact


# ------------------------------------------------------------------ command line


def jitgate(stack: SshStack, user: str, ssh_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    import os
    import sys

    env = {**stack.cp.cli_env(user), "JITGATE_SSH_DIR": str(ssh_dir),
           "JITGATE_SSH_BROKER": f"127.0.0.1:{stack.broker_port}",
           "JITGATE_SSH_BROKER_HOST_KEY": str(stack.broker_dir / "ssh_host_ed25519_key.pub")}
    env.pop("SSH_AUTH_SOCK", None)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, timeout=60,
                          input=b"", cwd=os.getcwd())


def test_jitgate_ssh_finds_grant_and_refreshes_certificate_after_extension(stack: SshStack, tmp_path: Path) -> None:
    grant = stack.grant("alice", "web-02")
    ssh_dir = tmp_path / "ssh"
    r = jitgate(stack, "alice", ssh_dir, "ssh", "web-02", "--", "echo", "via-cli")
    assert r.returncode == 0 and r.stdout == b"via-cli\n", text(r)
    cert = ssh_dir / "certs" / "root@web-02-cert.pub"
    first = parse_certificate(cert.read_text())
    assert first.key_id == grant.id and oct(ssh_dir.joinpath("id_ed25519").stat().st_mode & 0o777) == "0o600"

    extended = stack.client("alice").access.Extend(access_pb2.ExtendRequest(
        id=grant.id, duration=duration_pb2.Duration(seconds=3600), justification="longer"))
    r = jitgate(stack, "alice", ssh_dir, "ssh", "web-02", "--", "true")
    assert r.returncode == 0, text(r)
    second = parse_certificate(cert.read_text())
    assert second.serial != first.serial
    assert second.valid_before == extended.expires_at.ToDatetime(tzinfo=dt.UTC).replace(microsecond=0)

    r = jitgate(stack, "alice", ssh_dir, "ssh-config")
    assert r.returncode == 0, text(r)
    config = tmp_path / "config"
    config.write_text(r.stdout.decode())
    assert "Host web-02" in config.read_text() and "User root@web-02" in config.read_text()
    plain = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "web-02", "echo", "plain-ssh"],
                           capture_output=True, timeout=30)
    assert plain.returncode == 0 and plain.stdout == b"plain-ssh\n", text(plain)


def test_jitgate_ssh_asks_for_a_grant_or_says_how(stack: SshStack, tmp_path: Path) -> None:
    r = jitgate(stack, "admin", tmp_path / "ssh", "ssh", "web-01", "--", "echo", "x")
    assert r.returncode == 1 and b"no active grant" in r.stderr and b"Traceback" not in r.stderr
    r = jitgate(stack, "admin", tmp_path / "ssh", "ssh", "web-01", "--login", "root", "--reason", "cli test",
                "--duration", "10m", "--", "echo", "granted")
    assert r.returncode == 0 and r.stdout == b"granted\n", text(r)
    assert b"access granted" in r.stderr


def test_window_change_and_signal_reach_the_target(stack: SshStack, alice: UserKey) -> None:
    import asyncio

    import asyncssh

    async def run() -> bytes:
        async with asyncssh.connect(
                "127.0.0.1", stack.broker_port, username="root@web-01", agent_path=None, config=[],
                client_keys=[(asyncssh.read_private_key(str(alice.key)), asyncssh.read_certificate(str(alice.cert)))],
                known_hosts=str(stack.known_hosts)) as conn:
            proc = await conn.create_process("read go; stty size; bash --norc -i", term_type="xterm",
                                             term_size=(80, 24), encoding=None)
            proc.change_terminal_size(132, 43)
            proc.stdin.write(b"go\n")
            out = await asyncio.wait_for(proc.stdout.readuntil(b"132\r\n"), 10)
            # One key without Enter reaches the target at once: the broker edits no lines.
            proc.stdin.write(b"read -n 1 k; echo got-$k\n")
            proc.stdin.write(b"q")
            out += await asyncio.wait_for(proc.stdout.readuntil(b"got-q"), 10)
            proc.send_signal("INT")
            proc.close()
            return out

    out = asyncio.run(run())
    assert b"43 132" in out
    # sshd refuses signals for root sessions ("requires privilege separation") but logs that one arrived.
    wait_for(lambda: "session_signal_req" in (stack.target.directory / "sshd.log").read_text())


def test_port_forwarding_only_when_the_grant_allows(stack: SshStack, alice: UserKey) -> None:
    # `ssh -W` opens a direct-tcpip channel; through the target to its own sshd port.
    dest = f"127.0.0.1:{stack.target.port}"
    r = stack.ssh(alice, "web-01", extra=("-W", dest), input=b"", timeout=30)
    assert r.stdout.startswith(b"SSH-2.0-OpenSSH"), text(r)
    store = recordings(stack)
    info = wait_for(lambda: [i for i in store.list() if i.command == f"direct-tcpip {dest}" and i.sealed])[0]
    assert store.verify(info.ref).ok
    assert any(getattr(e, "stream", "") == "stdout" and e.data.startswith(b"SSH-2.0-")
               for e in store.open(info.ref).events())
    grant = stack.grant("alice", "locked")  # port_forwarding: false
    key = stack.user_key("alice", grant.id)
    r = stack.ssh(key, "locked", extra=("-W", dest), input=b"", timeout=30)
    assert r.returncode != 0 and not r.stdout.startswith(b"SSH-"), text(r)
    assert b"prohibited" in r.stderr or b"not permitted" in r.stderr, r.stderr


def test_rsync_over_the_broker(stack: SshStack, alice: UserKey, tmp_path: Path) -> None:
    import shlex
    import shutil as sh

    require_binary("rsync")
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    ssh_cmd = shlex.join(["ssh", "-p", str(stack.broker_port), *stack.ssh_options(alice)])
    remote = stack.remote("web-01", "/tmp/jitgate-rsync/")
    r = subprocess.run(["rsync", "-a", "-e", ssh_cmd, f"{src}/", remote], capture_output=True, timeout=30)
    assert r.returncode == 0, text(r)
    back = tmp_path / "back"
    r = subprocess.run(["rsync", "-a", "-e", ssh_cmd, remote, f"{back}/"], capture_output=True, timeout=30)
    assert r.returncode == 0, text(r)
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    sh.rmtree("/tmp/jitgate-rsync", ignore_errors=True)


def test_sessions_watch_follows_a_live_session(stack: SshStack, tmp_path: Path) -> None:
    import sys

    grant = stack.grant("bob", "web-01")
    key = stack.user_key("bob", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-01", "echo watch-1; sleep 1; echo watch-2; sleep 1; echo watch-3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    live = wait_for(lambda: [s for s in sessions_of(stack, grant.id) if not s.end_reason])[0]
    watcher = subprocess.run([sys.executable, "-m", "cli.main", "sessions", "watch", live.id,
                              "--data-dir", str(stack.broker_dir)], env=stack.cp.cli_env("admin"),
                             capture_output=True, timeout=60)
    proc.communicate(timeout=30)
    assert watcher.returncode == 0, watcher.stderr
    out = watcher.stdout.decode()
    assert "watch-1" in out and "watch-3" in out and "[jitgate] exit 0" in out
    assert out.index("watch-1") < out.index("watch-3")
    # Someone who is neither admin nor approver of bob's grant is refused by the control plane.
    other = subprocess.run([sys.executable, "-m", "cli.main", "sessions", "watch", live.id,
                            "--data-dir", str(stack.broker_dir)], env=stack.cp.cli_env("alice"),
                           capture_output=True, timeout=60)
    assert other.returncode == 1 and b"watch-1" not in other.stdout, other.stderr


def test_two_brokers_share_one_control_plane(stack: SshStack, tmp_path: Path) -> None:
    import os
    import signal
    import sys

    from tests.cluster import REPO

    data = tmp_path / "broker-2"
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "ssh-broker", "--listen", "127.0.0.1:0",
                             "--identity", str(stack.cp.identity("broker")), "--server", stack.cp.address,
                             "--data-dir", str(data)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ})
    try:
        port = int(wait_for(lambda: (data / "listen.addr").exists() and (data / "listen.addr").read_text())
                   .strip().rsplit(":", 1)[1])
        known = tmp_path / "known_hosts_2"
        known.write_text(f"[127.0.0.1]:{port} {(data / 'ssh_host_ed25519_key.pub').read_text().strip()}\n")
        grant = stack.grant("alice", "web-01")
        key = stack.user_key("alice", grant.id)
        opts = [o if not o.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={known}"
                for o in stack.ssh_options(key)]

        def via_second(*cmd: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(["ssh", "-p", str(port), *opts, "root@web-01@127.0.0.1", *cmd],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        one = subprocess.Popen(stack.ssh_argv(key, "web-01", "echo started; sleep 60"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        two = via_second("echo started; sleep 60")
        for p in (one, two):
            assert p.stdout is not None and p.stdout.readline() == b"started\n"
        stack.client("admin").access.Revoke(access_pb2.RevokeRequest(id=grant.id, reason="both brokers"))
        for p in (one, two):
            _, err = p.communicate(timeout=30)
            assert b"was revoked" in err, err
        assert {s.end_reason for s in ended_session(stack, grant.id, 2)} == {"revoked"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_a_refused_channel_is_explained_from_the_refusal_code(stack: SshStack) -> None:
    # Legacy scp runs `scp -f` as a command: the control plane refuses it as `sftp`
    # (session.channel_not_allowed, read from ErrorInfo.reason) and the broker adds why.
    grant = stack.grant("alice", "locked")
    key = stack.user_key("alice", grant.id)
    argv = stack.scp_argv(key, stack.remote("locked", "/etc/hostname"), "/dev/null")
    r = subprocess.run([argv[0], "-O", *argv[1:]], capture_output=True, timeout=30)
    err = r.stderr.decode()
    assert r.returncode != 0 and "is not allowed by the policy" in err, err
    assert "scp -O, sftp-server and rsync transfer files, which is `sftp`" in err, err
