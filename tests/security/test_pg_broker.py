"""Issue 13 against the PostgreSQL broker: real control plane, real broker process, real PostgreSQL.

- a policy cannot make the broker send its own secrets anywhere (item 6);
- a statement sent upstream is on record even when the broker is killed (item 7);
- startup parameters that reach upstream are recorded; a bad message length is
  answered, noted and ends as `protocol_error` (Low);
- a session's recording is bounded, and one that cannot be written cuts the session (item 3).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from broker.demo_target import free_port
from broker.pg import protocol as p
from jitgate.v1 import access_pb2
from policy.policyset import PolicyLoadError, load_policy_text
from tests.broker.pg.harness import LOCAL_PG, PgStack, local_pg_available
from tests.broker.pg.test_broker import (
    ended_sessions,
    raw_login,
    read_all,
    recording_process,
    refusal,
    session_recording,
    statements,
)
from tests.support import require

RECORD_MAX = 64 * 1024  # the smallest bound the broker takes: the limit test reaches it quickly


class RogueServer:
    """A server at a policy-chosen address that asks for a cleartext password and keeps what it gets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self.received: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(3)
                try:
                    conn.recv(10000)  # the startup message
                    conn.sendall(p.auth_request(p.AUTH_CLEARTEXT))
                    self.received.append(conn.recv(65536))  # the password, or b"" when the broker hangs up
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture(scope="module")
def rogue() -> Iterator[RogueServer]:
    server = RogueServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def creds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pg-credentials")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, rogue: RogueServer, creds_dir: Path) -> Iterator[PgStack]:
    require(local_pg_available(), "PostgreSQL on 127.0.0.1:5432 (trust, user postgres, db test)")
    rogue_at = f"127.0.0.1:{rogue.port}"
    db = {"kind": "postgres", "address": rogue_at, "database": "test", "labels": {"env": "dev"},
          "roles": ["app"], "owners": ["group:sre"]}
    resources = {
        # Shapes the policy loader accepts; the broker still refuses what its config does not allow.
        "env-broker-secret": {**db, "credentials": "env:BROKER_OWN_SECRET"},
        "env-unlisted": {**db, "credentials": "env:HOME"},
        "file-escape": {**db, "credentials": "file:identity-key"},
        "rogue-cleartext": {**db, "credentials": "env:JGT_SEC_PLAIN"},
        "rogue-redirected": {**db, "credentials": "env:JGT_SEC_BOUND"},
        "rogue-allowed": {**db, "credentials": "env:JGT_SEC_ALLOWED"},
    }
    tmp = tmp_path_factory.mktemp("pg-sec")
    broker_env = {"BROKER_OWN_SECRET": "the-brokers-own-passphrase", "JGT_SEC_PLAIN": "plain-secret",
                  "JGT_SEC_BOUND": "postgresql://app:bound-secret@127.0.0.1:5432/x?cleartext=allow",
                  "JGT_SEC_ALLOWED": f"postgresql://app:allowed-secret@{rogue_at}/x?cleartext=allow"}
    with PgStack(tmp, private=False, resources=resources, broker_env=broker_env,
                 broker_args=("--credentials-env-prefix", "JGT_SEC_", "--credentials-dir", str(creds_dir),
                              "--max-recording-bytes", str(RECORD_MAX))) as s:
        yield s


def statement_events(stack: PgStack, grant_id: str) -> list[Any]:
    return session_recording(stack, grant_id)


def notes(events: list[Any]) -> list[str]:
    return [e.text for e in events if getattr(e, "type", "") == "note"]


def end_reason(stack: PgStack, grant_id: str) -> str:
    [session] = ended_sessions(stack, grant_id)
    return session.end_reason


# ---------------------------------------------------------------- item 6: the broker's own secrets


def test_policy_check_and_load_refuse_credentials_outside_the_brokers_reach(tmp_path: Path) -> None:
    text = ("version: 1\n"
            "resources:\n"
            "  a: {kind: postgres, address: 'db:5432', roles: [ro], credentials: 'file:/etc/jitgate/key.pem'}\n"
            "  b: {kind: postgres, address: 'db:5432', roles: [ro], credentials: 'file:../pg-broker/keys/x'}\n"
            "  c: {kind: postgres, address: 'db:5432', roles: [ro], credentials: 'env:$(id)'}\n"
            "  d: {kind: postgres, address: 'db:5432', roles: [ro], credentials: 'env:JITGATE_CA_PASSPHRASE'}\n")
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(text, "policies.yaml")
    found = {(e.line, e.code) for e in info.value.errors}
    assert {(line, "policy.credentials") for line in (3, 4, 5, 6)} <= found, found
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "cli.main",
                          "policy", "check", str(path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NO_COLOR": "1"})
    assert out.returncode != 0
    assert f"{path}:3:" in out.stderr + out.stdout and f"{path}:4:" in out.stderr + out.stdout
    assert "relative to the broker's credentials directory" in out.stderr + out.stdout


def test_credentials_the_broker_does_not_allow_are_refused_before_any_connection(
        stack: PgStack, rogue: RogueServer, creds_dir: Path) -> None:
    # A link in the credentials directory to the broker's own mTLS key (the attack).
    identity_key = stack.cp.identity("broker") / "key.pem"  # type: ignore[union-attr]
    (creds_dir / "identity-key").symlink_to(identity_key)
    before = rogue.connections
    for resource, why in [("env-broker-secret", "does not allow"), ("env-unlisted", "does not allow"),
                          ("file-escape", "leads outside"), ("rogue-redirected", "not for the resource's address")]:
        token = stack.login("alice", resource, "app")
        err = refusal(stack, token.user, token.token)
        assert err["sqlstate"] == "28000" and why in err["message"], (resource, err)
        assert "the-brokers-own-passphrase" not in err["message"] and "PRIVATE KEY" not in err["message"]
    assert rogue.connections == before, "the broker connected to the server with a refused credential"
    log = stack.broker_log_text()
    assert log.count("refused: credentials of") >= 4


def test_a_cleartext_password_goes_only_where_the_credential_allows(stack: PgStack, rogue: RogueServer) -> None:
    token = stack.login("alice", "rogue-cleartext", "app")
    err = refusal(stack, token.user, token.token)
    assert err["sqlstate"] == "28000" and "asks for the password in cleartext" in err["message"], err
    deadline = time.monotonic() + 5
    while rogue.connections == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    assert not any(b"plain-secret" in chunk for chunk in rogue.received)
    assert "asks for the password in cleartext" in stack.broker_log_text()
    # The operator allowed cleartext for this very address in the credential: then it is sent.
    token = stack.login("alice", "rogue-allowed", "app")
    refusal(stack, token.user, token.token)  # the rogue server never finishes the login
    deadline = time.monotonic() + 5
    while not any(b"allowed-secret" in chunk for chunk in rogue.received):
        assert time.monotonic() < deadline, "a credential allowing cleartext for this address was not sent"
        time.sleep(0.05)


# ---------------------------------------------------------------- Low: startup parameters, bad lengths


def test_startup_options_that_reach_upstream_are_recorded(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    with psycopg.connect(**stack.dsn(token, options="-c default_transaction_read_only=on"),
                         autocommit=True) as conn:
        assert conn.execute("show default_transaction_read_only").fetchone() == ("on",)  # it did reach upstream
    events = statement_events(stack, token.grant_id)
    [startup] = [n for n in notes(events) if n.startswith("startup parameters sent upstream: ")]
    assert '"options": "-c default_transaction_read_only=on"' in startup
    assert events.index(next(e for e in events if getattr(e, "text", "") == startup)) < \
        events.index(statements(events)[0])  # on record before the first statement


def test_a_huge_message_length_after_login_is_answered_noted_and_ends_as_protocol_error(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    tls, msgs = raw_login(stack, token.user, token.token)
    assert msgs[-1].type == b"Z"
    tls.sendall(b"Q" + struct.pack("!I", 0x7FFFFFFF))
    reply = p.MessageReader()
    reply.receive_data(read_all(tls))
    m = reply.next_message()
    assert m is not None and m.type == b"E", m
    fields = p.parse_error_fields(m.body)
    assert fields["severity"] == "FATAL" and "2147483647" in fields["message"], fields
    tls.close()
    assert end_reason(stack, token.grant_id) == "protocol_error"
    assert any("protocol error from the client" in n and "2147483647" in n
               for n in notes(statement_events(stack, token.grant_id)))


# ---------------------------------------------------------------- item 3: recording bound and failure


def test_a_session_over_its_recording_bound_is_cut(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    text = "x" * 4000
    ran = 0
    deadline = time.monotonic() + 30  # the recording process runs at the lowest priority: give it time
    with psycopg.connect(**stack.dsn(token), autocommit=True) as conn:
        with pytest.raises(psycopg.OperationalError) as info:
            while time.monotonic() < deadline:
                conn.execute(f"select '{text}'")
                ran += 1
    assert info.value.sqlstate == "54000" and f"limit of {RECORD_MAX} bytes" in str(info.value), info.value
    assert end_reason(stack, token.grant_id) == "recording_limit"
    events = statement_events(stack, token.grant_id)
    assert any("reached its limit" in n for n in notes(events))
    # Up to the bound statements are whole; past it, until the cut landed, each is cut short.
    texts = [e.text for e in statements(events)]
    whole = [t for t in texts if t == f"select '{text}'"]
    assert ran <= len(texts) <= ran + 1 and len(whole) <= RECORD_MAX // len(text) + 1, (len(whole), ran)
    assert all("the rest is not recorded" in t and len(t) < 400 for t in texts[len(whole):])
    [session] = ended_sessions(stack, token.grant_id)
    size = sum(f.stat().st_size for f in (stack.broker_dir / "recordings").rglob("*") if f.is_file()
               and session.recording_ref in str(f))
    assert RECORD_MAX < size < RECORD_MAX + 1024 * (len(texts) - len(whole) + 8), (size, ran)


@pytest.fixture
def small_disk(stack: PgStack) -> Iterator[Path]:
    """A 2 MiB filesystem under the broker's recordings (the broker is running)."""
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "root and mount (a small tmpfs)")
    where = stack.broker_dir / "recordings"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> None:
    with open(where / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_a_full_disk_refuses_a_session_at_start_and_cuts_a_live_one(stack: PgStack, small_disk: Path) -> None:
    live = stack.login("alice", "testdb", stack.ro)
    conn = psycopg.connect(**stack.dsn(live), autocommit=True)
    try:
        assert conn.execute("select 'recorded'").fetchone() == ("recorded",)
        fill(small_disk)
        with pytest.raises(psycopg.OperationalError) as info:
            # Small statements, slowly: the next write fails on the full disk long before they
            # add up to the module's 64 KiB recording bound, however loaded the machine is.
            for _ in range(2000):
                conn.execute("select 'unrecordable'")
                time.sleep(0.01)
        assert info.value.sqlstate == "58030", info.value
        assert "can no longer record" in str(info.value) and "no space left" in str(info.value).lower()
    finally:
        conn.close()
    assert end_reason(stack, live.grant_id) == "recording_failed"
    # At start: a plain message that says why, not an internal error.
    token = stack.login("alice", "testdb", stack.ro)
    err = refusal(stack, token.user, token.token)
    assert err["sqlstate"] == "58030" and "cannot record this session" in err["message"], err
    assert "no space left" in err["message"].lower() and "internal" not in err["message"]


# ---------------------------------------------------------------- item 7: what ran is on record


def test_a_statement_sent_is_on_record_when_the_broker_and_its_recorder_are_killed(stack: PgStack) -> None:
    assert stack.broker_proc is not None
    with psycopg.connect(**LOCAL_PG, autocommit=True) as admin:
        admin.execute(f"create table if not exists {stack.schema}.killed (n int)")
        admin.execute(f"grant insert, select on {stack.schema}.killed to {stack.rw}")
    token = stack.login("alice", "testdb", stack.rw)
    conn = psycopg.connect(**stack.dsn(token), autocommit=True)
    statement = f"insert into {stack.schema}.killed select 7 from pg_sleep(4)"
    failed: list[BaseException] = []

    def run() -> None:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            failed.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        with psycopg.connect(**LOCAL_PG, autocommit=True) as admin:
            deadline = time.monotonic() + 10
            while not admin.execute("select 1 from pg_stat_activity where query = %s and state = 'active'",
                                    (statement,)).fetchone():
                assert time.monotonic() < deadline, "the statement never reached the database"
                time.sleep(0.02)
        time.sleep(0.5)  # running upstream, far from its answer (a broker batches every 50 ms)
        recorder = recording_process(stack)
        os.kill(stack.broker_proc.pid, signal.SIGKILL)  # nothing of either process's shutdown runs
        os.kill(recorder, signal.SIGKILL)
        stack.broker_proc.wait()
        stack.broker_proc = None
        worker.join(15)
        assert failed, "the statement's connection should have broken with the broker"
        with psycopg.connect(**LOCAL_PG, autocommit=True) as admin:  # it ran: the row committed upstream
            deadline = time.monotonic() + 10
            while not admin.execute(f"select 1 from {stack.schema}.killed where n = 7").fetchone():
                assert time.monotonic() < deadline, "the insert did not commit upstream"
                time.sleep(0.1)
        [live] = stack.client("admin").access.ListSessions(
            access_pb2.ListSessionsRequest(grant_id=token.grant_id)).sessions
        events = list(stack.recordings().open(live.id).events())
        assert any(n.endswith(statement) and "sent upstream" in n for n in notes(events)), notes(events)
    finally:
        conn.close()
        if stack.broker_proc is None:
            stack.start_broker()
