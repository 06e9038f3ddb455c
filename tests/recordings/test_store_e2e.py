"""Recordings in S3-compatible storage, end to end through the real brokers (one stack per module).

The S3 server is s3rver (tests/recordings/s3server.py says what was looked for). Each test
drives plain OpenSSH or psycopg through the brokers, then reads with `jitgate` as a user
who has only an identity bundle and the server's address.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitgate.v1 import audit_pb2, recordings_pb2, recordings_pb2_grpc
from tests.broker.ssh.harness import read_until, sessions_of, wait_for
from tests.recordings.stack import BUCKET, RecordingStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingStack]:
    with RecordingStack(tmp_path_factory.mktemp("recstack")) as s:
        yield s


def rec_stub(stack: RecordingStack, who: str) -> recordings_pb2_grpc.RecordingServiceStub:
    assert stack.cp is not None
    return recordings_pb2_grpc.RecordingServiceStub(stack.cp.channel(who))


def recording(stack: RecordingStack, session_id: str) -> recordings_pb2.Recording | None:
    rows = rec_stub(stack, "admin").ListRecordings(recordings_pb2.ListRecordingsRequest(session_id=session_id))
    return rows.recordings[0] if rows.recordings else None


def complete(stack: RecordingStack, session_id: str, timeout: float = 30) -> recordings_pb2.Recording:
    return wait_for(lambda: (r if (r := recording(stack, session_id)) is not None and r.complete else None),
                    timeout=timeout, interval=0.1)


def live_session_id(stack: RecordingStack, grant_id: str) -> str:
    return wait_for(lambda: next((s.id for s in sessions_of(stack, grant_id) if not s.end_reason), ""),
                    timeout=20, interval=0.05)


def wait_file(path: Path) -> str:
    """A shell line that waits until the test creates `path` (no timing in the test)."""
    return f"while [ ! -e {path} ]; do sleep 0.05; done"


def slow_ssh(stack: RecordingStack, *script: str) -> tuple[subprocess.Popen[bytes], str]:
    grant = stack.grant("alice", "web-01")
    key = stack.user_key("alice", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-01", "; ".join(script)),  # one line for the remote shell
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, live_session_id(stack, grant.id)


def test_ssh_and_pg_recordings_survive_the_broker_disk_and_read_with_only_an_identity(stack: RecordingStack) -> None:
    import psycopg

    # SSH: uploaded while the session runs (a part is in the store before the end).
    go = stack.tmp / "go-first"
    proc, ssh_id = slow_ssh(stack, "echo ssh-rec-first", wait_file(go), "echo ssh-rec-last")
    early = wait_for(lambda: (r if (r := recording(stack, ssh_id)) is not None and r.size > 0 else None),
                     timeout=20, interval=0.1)
    assert proc.poll() is None and not early.sealed, "a part reached the store before the session ended"
    assert early.location.startswith(f"s3://{BUCKET}/jitgate/"), early.location
    go.write_text("go")
    out, _ = proc.communicate(timeout=30)
    assert b"ssh-rec-last" in out

    # PostgreSQL: likewise, the statement is in the store while the connection is still open.
    grant = stack.pg_grant("alice")
    with psycopg.connect(**stack.pg_dsn("alice", grant.id)) as conn:
        conn.execute("select 'pg-rec-marker' as m").fetchall()
        pg_id = live_session_id(stack, grant.id)
        early_pg = wait_for(lambda: (r if (r := recording(stack, pg_id)) is not None and r.size > 0 else None),
                            timeout=20, interval=0.1)
        assert not early_pg.sealed
    ssh_rec, pg_rec = complete(stack, ssh_id), complete(stack, pg_id)
    for rec in (ssh_rec, pg_rec):
        assert rec.sealed and rec.size > 0 and len(rec.sha256) == 64 and rec.final_hash and rec.user == "alice"

    # The brokers' disks lose their recordings: the store has them.
    shutil.rmtree(stack.broker_dir / "recordings")
    shutil.rmtree(stack.pg_dir / "recordings")

    r = stack.cli("alice", "replay", ssh_id, "--verify", "--output", "text")
    assert r.returncode == 0, r.stderr
    assert re.search(r"stdout\s+ssh-rec-first", r.stdout) and re.search(r"stdout\s+ssh-rec-last", r.stdout)
    assert "verified" in r.stderr
    r = stack.cli("alice", "replay", pg_id, "--verify", "--output", "text")
    assert r.returncode == 0, r.stderr
    assert "pg-rec-marker" in r.stdout
    r = stack.cli("audrey", "recordings", "verify", ssh_id)  # the auditors group sees everyone's
    assert r.returncode == 0 and "verified" in r.stdout, (r.stdout, r.stderr)
    r = stack.cli("audrey", "recordings", "search", "pg-rec-marker", "--output", "json")
    assert r.returncode == 0 and pg_id in r.stdout, r.stderr
    r = stack.cli("alice", "recordings", "list", "--output", "json")
    listed = {x["session_id"]: x for x in json.loads(r.stdout)["recordings"]}
    assert listed[ssh_id]["sha256"] == ssh_rec.sha256 and listed[ssh_id]["size"] == ssh_rec.size
    assert listed[pg_id]["location"] == pg_rec.location and listed[pg_id]["complete"]

    # Nobody else: bob is a user, not the owner, not an auditor.
    for args in (("replay", ssh_id, "--output", "text"), ("recordings", "verify", pg_id)):
        r = stack.cli("bob", *args)
        assert r.returncode == 1, r.stdout
        assert "no recording" in r.stderr and "ssh-rec-first" not in r.stdout
    r = stack.cli("bob", "recordings", "list", "--output", "json")
    assert ssh_id not in r.stdout and pg_id not in r.stdout
    r = stack.cli("bob", "recordings", "search", "ssh-rec", "--output", "json")
    assert ssh_id not in r.stdout

    # Every read is audited: who read what (refusals too).
    events = stack.client("admin").audit.ListEvents(audit_pb2.ListEventsRequest(type="recording.read")).events
    readers = {(e.actor, e.subject) for e in events}
    assert ("alice", ssh_id) in readers and ("audrey", ssh_id) in readers and ("alice", pg_id) in readers
    refused = stack.client("admin").audit.ListEvents(audit_pb2.ListEventsRequest(type="recording.refused")).events
    assert any(e.actor == "bob" for e in refused)


def upload_failures(stack: RecordingStack) -> int:
    """Upload attempts the broker's log says failed (paused for an outage, or refused)."""
    failed = r"recording upload paused|recording \S+ refused by the control plane"
    return len(re.findall(failed, stack.broker_log_text()))


def test_the_object_store_stopped_mid_session_loses_nothing(stack: RecordingStack) -> None:
    go = stack.tmp / "go-outage"
    proc, sid = slow_ssh(stack, "echo outage-before", wait_file(go), "seq 1 3000 | sed s/^/outage-line-/",
                         "sleep 1", "echo outage-after")
    wait_for(lambda: (r if (r := recording(stack, sid)) is not None and r.size > 0 else None), timeout=20)
    tried = upload_failures(stack)
    stack.s3.stop()  # the session is still waiting for `go`: the rest happens while the store is away
    go.write_text("go")
    try:
        out, _ = proc.communicate(timeout=30)
        assert b"outage-after" in out
        # The broker tries (its log says the upload failed), the store is away: not complete.
        wait_for(lambda: upload_failures(stack) > tried, timeout=30)
        rec = recording(stack, sid)
        assert rec is not None and not rec.complete
    finally:
        stack.s3.start()
    rec = complete(stack, sid, timeout=60)
    r = stack.cli("admin", "replay", sid, "--verify", "--output", "text")
    assert r.returncode == 0, r.stderr
    assert re.search(r"stdout\s+outage-before", r.stdout) and re.search(r"stdout\s+outage-after", r.stdout)
    assert {int(n) for n in re.findall(r"outage-line-(\d+)", r.stdout)} == set(range(1, 3001))


def test_a_live_session_is_watched_through_the_control_plane(stack: RecordingStack) -> None:
    grant = stack.grant("alice", "web-01")
    key = stack.user_key("alice", grant.id)
    trigger = Path(stack.tmp / "watch-go")
    proc = subprocess.Popen(stack.ssh_argv(key, "web-01",
                                           f"echo watch-start; while [ ! -e {trigger} ]; do sleep 0.1; done; "
                                           "echo watch-live-line; sleep 1; echo watch-end"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sid = live_session_id(stack, grant.id)
    wait_for(lambda: recording(stack, sid), timeout=20)
    assert stack.cp is not None
    env = {k: v for k, v in stack.cp.cli_env("audrey").items() if not k.startswith("AWS_")}
    env.pop("JITGATE_DATA_DIR", None)
    import sys

    watcher = subprocess.Popen([sys.executable, "-m", "cli.main", "sessions", "watch", sid], env=env,
                               cwd=stack.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = bytearray()
        read_until(watcher, b"watch-start", seen, timeout=30)
        trigger.write_text("go")  # output appears only now, while the watcher follows
        read_until(watcher, b"watch-live-line", seen, timeout=30)
        proc.communicate(timeout=30)
        assert watcher.wait(30) == 0
    finally:
        for p in (proc, watcher):
            if p.poll() is None:
                p.kill()
                p.wait(5)
    bob = stack.cli("bob", "sessions", "watch", sid)
    assert bob.returncode == 1
    events = stack.client("admin").audit.ListEvents(audit_pb2.ListEventsRequest(type="recording.watched")).events
    assert any(e.actor == "audrey" and e.subject == sid for e in events)


def test_a_tampered_stored_recording_is_a_clear_warning(stack: RecordingStack) -> None:
    import boto3

    proc, sid = slow_ssh(stack, "echo tamper-me-please")
    proc.communicate(timeout=30)
    rec = complete(stack, sid)
    s3 = boto3.client("s3", endpoint_url=stack.s3.endpoint, region_name="us-east-1",
                      aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER")
    key = f"jitgate/{rec.ref}/data/{0:016d}"
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert b"tamper-me-please" in body
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.replace(b"tamper-me-please", b"tamper-me-PLEASE"))
    r = stack.cli("admin", "recordings", "verify", sid)
    assert r.returncode == 1 and "tampered" in r.stderr, (r.stdout, r.stderr)
    r = stack.cli("admin", "replay", sid, "--output", "text")
    assert "tamper-me-PLEASE" in r.stdout and "WARNING" in r.stderr and "did not verify" in r.stderr
