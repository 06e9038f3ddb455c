"""Issue 13, item 3 (and the SSH half of item 7): an SSH session never runs unrecorded.

Before: with the recordings disk full, a `-W`/`-L` forward relayed 6 MB while its
recording held 4 KiB and was reported `client_exit` with an empty hash; a session
at a full disk was refused with "internal error in the broker"; nothing bounded
the bytes of one recording; exec input sat in the writer's buffer for up to a
second after it reached the target, so a kill -9 of the broker lost it.

The full disk is real: the broker's recordings directory is a small tmpfs
(tests/recorder/disk.py; mounting needs root), filled up with a filler file, so
the broker meets the kernel's own ENOSPC. The byte bound is the broker's
`--max-recording-bytes`. Real OpenSSH client, real broker, real sshd target.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.demo_target import free_port
from jitgate.v1 import types_pb2
from recorder import FileRecordingStore
from tests.broker.ssh.harness import SshStack, UserKey, ended_session, read_until, sessions_of, text, wait_for
from tests.recorder.disk import SmallDisk
from tests.support import require_binary

pytestmark = pytest.mark.timeout(120)

DISK = "16m"  # the recordings disk: room for every test's recordings, filled on purpose
LIMIT = 512 * 1024  # --max-recording-bytes for this broker: far below DISK
BUFFER = 256 * 1024  # the writer's buffer: how far relayed output may run ahead of the disk
BULK = 3_000_000  # what each session asks for: more than LIMIT, so only a cut stops it


class RecordingDiskStack(SshStack):
    """An SshStack whose broker records to a small tmpfs and bounds each recording to LIMIT."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, broker_args=("--max-recording-bytes", str(LIMIT)))
        self.disk = SmallDisk(self.broker_dir / "recordings", DISK)

    def start_broker(self) -> None:
        if not self.disk.mounted:
            self.broker_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.disk.mount()
        super().start_broker()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.disk.unmount()

    @contextlib.contextmanager
    def full_disk(self) -> Iterator[None]:
        self.disk.fill()
        try:
            yield
        finally:
            self.disk.free()


class BulkServer:
    """A TCP service on loopback: greets with `ready`, then sends BULK bytes on a line from the client."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(b"ready\n")
                while b"\n" not in conn.recv(100):
                    pass
                conn.sendall(b"z" * BULK)
            except OSError:
                pass  # cut by the broker: that is the point

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingDiskStack]:
    for binary in ("sshd", "ssh", "ssh-keygen"):
        require_binary(binary)
    with RecordingDiskStack(tmp_path_factory.mktemp("ssh-recording")) as s:
        yield s


@pytest.fixture(scope="module")
def bulk() -> Iterator[BulkServer]:
    server = BulkServer()
    yield server
    server.close()


@pytest.fixture
def key(stack: RecordingDiskStack) -> UserKey:
    """A fresh grant per test: its sessions are this test's only."""
    return stack.user_key("alice", stack.grant("alice", "web-01").id)


def the_session(stack: SshStack, key: UserKey) -> types_pb2.Session:
    """The grant's one session once it ended; no session of the grant is left live."""
    session = ended_session(stack, key.grant_id)[0]
    assert [s for s in sessions_of(stack, key.grant_id) if not s.end_reason] == []
    return session


def records(stack: SshStack, ref: str) -> list[dict]:
    """The JSON lines of a recording's events file (a torn last line is skipped)."""
    out = []
    for line in (stack.broker_dir / "recordings" / ref / "events.jsonl").read_bytes().split(b"\n")[1:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def recorded_stdout(stack: SshStack, ref: str) -> int:
    """Bytes of stdout in an exec recording."""
    return sum(len(base64.b64decode(r["b64"])) for r in records(stack, ref) if r.get("type") == "stdout")


def assert_intact_up_to_the_reported_hash(stack: SshStack, session: types_pb2.Session) -> None:
    result = FileRecordingStore(stack.broker_dir).verify(session.recording_ref)
    assert result.intact and not result.sealed, result.problems
    assert session.recording_hash and result.final_hash == session.recording_hash


def marker() -> Path:
    return Path(f"/tmp/jitgate-ran-{uuid.uuid4().hex}")


# ------------------------------------------------------------------ the disk is full at the start


def test_a_session_at_a_full_disk_is_refused_plainly_and_nothing_runs(stack: RecordingDiskStack, key: UserKey) -> None:
    ran = marker()
    with stack.full_disk():
        r = stack.ssh(key, "web-01", f"touch {ran}")
    assert r.returncode == 1, text(r)
    assert ("jitgate: access refused: the broker cannot record this session: no space left on the recordings "
            "disk; nothing was run") in r.stderr.decode(), text(r)
    assert "internal error" not in r.stderr.decode()
    assert not ran.exists()
    assert the_session(stack, key).end_reason == "recording_failed"


@pytest.mark.parametrize("how", ["-W", "-L"])
def test_a_forward_whose_recording_cannot_be_created_is_refused(stack: RecordingDiskStack, key: UserKey,
                                                                bulk: BulkServer, how: str) -> None:
    before = bulk.connections
    with stack.full_disk():
        if how == "-W":
            r = stack.ssh(key, "web-01", extra=("-W", f"127.0.0.1:{bulk.port}"), input=b"")
            err = r.stderr.decode()
            assert r.returncode != 0 and not r.stdout, text(r)
        else:
            with local_forward(stack, key, bulk) as (proc, lport):
                with socket.create_connection(("127.0.0.1", lport), timeout=10) as sock:
                    assert sock.recv(100) == b""  # the forward is closed at once, nothing relayed
            err = proc.stderr.read().decode()  # type: ignore[union-attr]
    assert "jitgate: access refused: the broker cannot record this connection: no space left on the recordings disk" \
        in err, err
    assert bulk.connections == before  # never opened at the destination
    assert the_session(stack, key).end_reason == "recording_failed"  # and not left live


# ------------------------------------------------------------------ the disk fills up during a session


def test_an_exec_session_is_cut_when_the_disk_fills_up(stack: RecordingDiskStack, key: UserKey) -> None:
    proc = subprocess.Popen(stack.ssh_argv(key, "web-01", f"echo started; read go; head -c {BULK} /dev/zero"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = bytearray()
    read_until(proc, b"started\n", seen)
    with stack.full_disk():
        proc.stdin.write(b"go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        out, err = proc.communicate(timeout=30)
        session = the_session(stack, key)
    assert proc.returncode != 0
    assert ("jitgate: the broker can no longer record this session (no space left on the recordings disk); "
            "closing it") in err.decode(), err
    assert session.end_reason == "recording_failed"
    relayed = len(seen) + len(out) - len(b"started\n")
    assert relayed < BULK
    assert relayed - recorded_stdout(stack, session.recording_ref) <= BUFFER
    assert_intact_up_to_the_reported_hash(stack, session)


def test_a_terminal_session_is_cut_with_the_line_in_the_terminal(stack: RecordingDiskStack, key: UserKey) -> None:
    proc = subprocess.Popen(stack.ssh_argv(key, "web-01", extra=("-tt",)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = bytearray()
    proc.stdin.write(b"echo st$((1+1))rted\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    read_until(proc, b"st2rted", seen)
    with stack.full_disk():
        proc.stdin.write(f"head -c {BULK} /dev/zero | tr '\\0' x\n".encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        out, _ = proc.communicate(timeout=30)
        session = the_session(stack, key)
    assert b"jitgate: the broker can no longer record this session (no space left on the recordings disk)" in out
    assert out.count(b"x") < BULK
    assert session.end_reason == "recording_failed"


def is_listening(port: int) -> bool:
    """A TCP socket listens on loopback `port` (read from /proc: a probe connection would open a forward)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A" for row in rows)


def test_an_sftp_session_is_cut_and_no_file_is_written_through_an_unrecorded_open(
        stack: RecordingDiskStack, key: UserKey, tmp_path: Path) -> None:
    # A full disk still takes appends into the last block of a recording's files, so the
    # session runs a few operations on before a write fails: many puts, one after another.
    require_binary("sftp")
    src = tmp_path / "payload.bin"
    src.write_bytes(b"p" * 10_000)
    dests = [marker() for _ in range(100)]
    proc = subprocess.Popen(stack.sftp_argv(key, "web-01", Path("-")), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = bytearray()
    proc.stdin.write(b"pwd\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    read_until(proc, b"Remote working directory", seen)
    try:
        with stack.full_disk():
            batch = "".join(f"put {src} {d}\n" for d in dests).encode()
            _, err = proc.communicate(batch, timeout=60)
            session = the_session(stack, key)
        assert proc.returncode != 0
        assert b"jitgate: the broker can no longer record this session (no space left on the recordings disk)" \
            in err, err
        assert session.end_reason == "recording_failed"
        opened = {record.get("path") for record in records(stack, session.recording_ref) if record.get("op") == "open"}
        written = [str(d) for d in dests if d.exists()]
        assert len(written) < len(dests)  # cut before the batch ended
        assert set(written) <= opened  # a handle reached the client only once its open was on record
    finally:
        for d in dests:
            d.unlink(missing_ok=True)


@contextlib.contextmanager
def local_forward(stack: SshStack, key: UserKey, bulk: BulkServer) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`ssh -N -L LPORT:127.0.0.1:BULK_PORT` running; yields it and LPORT once it listens (killed
    on exit if still running: a refused channel does not end `ssh -N`)."""
    lport = free_port()
    proc = subprocess.Popen(
        stack.ssh_argv(key, "web-01", extra=("-N", "-L", f"127.0.0.1:{lport}:127.0.0.1:{bulk.port}")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        def listening() -> bool:
            assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
            return is_listening(lport)
        wait_for(listening, timeout=15)
        yield proc, lport
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("how", ["-W", "-L"])
def test_a_forward_is_cut_when_the_disk_fills_up(stack: RecordingDiskStack, key: UserKey, bulk: BulkServer,
                                                 how: str) -> None:
    got = bytearray()
    if how == "-W":
        proc = subprocess.Popen(stack.ssh_argv(key, "web-01", extra=("-W", f"127.0.0.1:{bulk.port}")),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        read_until(proc, b"ready\n", got)
        with stack.full_disk():
            proc.stdin.write(b"go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            out, err = proc.communicate(timeout=30)
            got += out
            session = the_session(stack, key)
    else:
        with local_forward(stack, key, bulk) as (proc, lport):
            with socket.create_connection(("127.0.0.1", lport), timeout=10) as sock:
                while b"ready\n" not in got:
                    got += sock.recv(100)
                with stack.full_disk():
                    sock.sendall(b"go\n")
                    while chunk := sock.recv(65536):
                        got += chunk
                    session = the_session(stack, key)
            assert proc.wait(timeout=30) != 0  # the broker disconnected it
        err = proc.stderr.read()  # type: ignore[union-attr]
    assert b"jitgate: the broker can no longer record this session (no space left on the recordings disk)" in err, err
    assert session.end_reason == "recording_failed"
    relayed = len(got) - len(b"ready\n")
    assert relayed < BULK
    assert relayed - recorded_stdout(stack, session.recording_ref) + len(b"ready\n") <= BUFFER
    assert_intact_up_to_the_reported_hash(stack, session)


# ------------------------------------------------------------------ the bound on one recording


def test_the_byte_bound_cuts_an_exec_session_and_its_recording_still_verifies(stack: RecordingDiskStack,
                                                                              key: UserKey) -> None:
    r = stack.ssh(key, "web-01", f"head -c {BULK} /dev/zero")
    assert r.returncode != 0
    assert "jitgate: this session reached the broker's recording limit of 512 KiB; closing it" in r.stderr.decode(), (
        text(r)[-500:]
    )
    assert len(r.stdout) < LIMIT  # recorded before relayed: nothing passed that is not on record
    session = the_session(stack, key)
    assert session.end_reason == "recording_limit"
    result = FileRecordingStore(stack.broker_dir).verify(session.recording_ref,
                                                         expected_final_hash=session.recording_hash)
    assert result.ok and result.seal.end_reason == "recording_limit", result.problems
    assert recorded_stdout(stack, session.recording_ref) == len(r.stdout)
    size = sum(p.stat().st_size for p in (stack.broker_dir / "recordings" / session.recording_ref).iterdir())
    assert size <= LIMIT + 4096


def test_the_byte_bound_cuts_a_forward(stack: RecordingDiskStack, key: UserKey, bulk: BulkServer) -> None:
    r = stack.ssh(key, "web-01", extra=("-W", f"127.0.0.1:{bulk.port}"), input=b"go\n")
    assert b"jitgate: this session reached the broker's recording limit of 512 KiB" in r.stderr, text(r)
    assert len(r.stdout) < LIMIT
    assert the_session(stack, key).end_reason == "recording_limit"


# ------------------------------------------------------------------ kill -9 (runs last: restarts the broker)


def test_exec_input_is_on_record_before_it_reaches_the_target(stack: RecordingDiskStack, key: UserKey) -> None:
    ran = marker()
    secret = f"touch {ran}  # on-record-{uuid.uuid4().hex}\n".encode()
    proc = subprocess.Popen(stack.ssh_argv(key, "web-01", "sh -c 'read -r line; eval \"$line\"; sleep 30'"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        live = wait_for(lambda: [s for s in sessions_of(stack, key.grant_id) if not s.end_reason])[0]
        proc.stdin.write(secret)  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        wait_for(ran.exists, timeout=10, interval=0.002)  # it ran on the target ...
        assert stack.broker_proc is not None
        os.kill(stack.broker_proc.pid, signal.SIGKILL)  # ... and the broker dies at once
        stack.broker_proc.wait()
        stack.broker_proc = None
    finally:
        proc.kill()
        proc.wait()
        ran.unlink(missing_ok=True)
    data = (stack.broker_dir / "recordings" / live.id / "events.jsonl").read_bytes()
    stdin = b"".join(base64.b64decode(json.loads(line)["b64"]) for line in data.splitlines()[1:]
                     if b'"type":"stdin"' in line)
    assert stdin == secret
    stack.start_broker()  # the restarted broker reports the crashed session
    assert ended_session(stack, key.grant_id)[0].end_reason == "error"
