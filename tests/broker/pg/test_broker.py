"""The PostgreSQL broker end to end: real control plane, real broker process, real PostgreSQL, psql, psycopg."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.pg import protocol as p
from jitgate.v1 import access_pb2, audit_pb2, types_pb2
from tests.broker.pg.harness import PgStack, Token, local_pg_available, pg_bin
from tests.support import in_ci, require, require_binary

MAX_MESSAGE = 1 << 20
RECORD_BACKLOG = 256 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgStack]:
    require(local_pg_available(), "PostgreSQL on 127.0.0.1:5432 (trust, user postgres, db test)")
    require(pg_bin("initdb") is not None, "initdb (postgresql server binaries)")
    with PgStack(tmp_path_factory.mktemp("pg"), broker_args=("--max-message", str(MAX_MESSAGE),
                                                             "--record-backlog", str(RECORD_BACKLOG),
                                                             # every refusal audited one by one (see
                                                             # tests/security/test_refusal_flood.py)
                                                             "--refusal-reports", "1000")) as s:
        yield s


def connect(stack: PgStack, token: Token, **kw: Any) -> psycopg.Connection:
    return psycopg.connect(**stack.dsn(token, **kw))


def sessions_once(stack: PgStack, grant_id: str, settled: Callable[[Any], bool], timeout: float) -> list[Any]:
    """The grant's sessions, once there are some and every one is `settled`."""
    client = stack.client("admin")
    deadline = time.monotonic() + timeout
    while True:
        sessions = client.access.ListSessions(access_pb2.ListSessionsRequest(grant_id=grant_id)).sessions
        if sessions and all(settled(s) for s in sessions):
            return list(sessions)
        assert time.monotonic() < deadline, f"sessions of {grant_id} not settled: {sessions}"
        time.sleep(0.05)


def ended_sessions(stack: PgStack, grant_id: str, timeout: float = 20.0) -> list[Any]:
    """The grant's sessions once every one of them is reported ended."""
    return sessions_once(stack, grant_id, lambda s: s.end_reason, timeout)


def session_recording(stack: PgStack, grant_id: str, timeout: float = 15.0) -> list[Any]:
    """Statements of the (ended) sessions of a grant, from the broker's recordings; chain verified."""
    sessions = sessions_once(stack, grant_id, lambda s: s.recording_ref, timeout)
    store = stack.recordings()
    events: list[Any] = []
    for s in sorted(sessions, key=lambda s: s.started_at.ToNanoseconds()):
        result = store.verify(s.recording_ref, expected_final_hash=s.recording_hash)
        assert result.ok, result
        events += list(store.open(s.recording_ref).events())
    return events


def statements(events: list[Any]) -> list[Any]:
    return [e for e in events if getattr(e, "type", "") == "statement"]


# ---------------------------------------------------------------- clients that work


def test_psql_verify_full_simple_protocol(stack: PgStack) -> None:
    psql = require_binary("psql")
    token = stack.login("alice", "testdb", stack.ro)
    env = {**os.environ, "PGPASSWORD": token.token}
    conninfo = (f"host=localhost port={stack.broker_port} user={token.user} dbname={token.database} "
                f"sslmode=verify-full sslrootcert={stack.ca_file}")
    out = subprocess.run([psql, conninfo, "-XAtc", "select current_user, 40 + 2"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{stack.ro}|42"
    [rec] = statements(session_recording(stack, token.grant_id))
    assert (rec.text, rec.protocol, rec.rows, rec.command_tag) == (
        "select current_user, 40 + 2",
        "simple",
        1,
        "SELECT 1",
    )
    # The broker's certificate does not name 127.0.0.2: verify-full must fail there (TLS is really checked).
    bad = subprocess.run([psql, conninfo.replace("host=localhost", "host=127.0.0.2 hostaddr=127.0.0.1"), "-Xc",
                          "select 1"], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "does not match" in bad.stderr


def test_the_brokers_tls_key_is_encrypted_at_rest(stack: PgStack) -> None:
    key = stack.broker_dir / "tls" / "key.pem"
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600


def test_a_tls_key_it_cannot_use_stops_the_broker_with_one_plain_line(stack: PgStack, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from controlplane.identity import open_x509_ca

    assert stack.cp is not None
    bundle = open_x509_ca(stack.cp.data).issue_server_certificate(["localhost"], [])
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(bundle.cert_pem)
    private = serialization.load_pem_private_key(bundle.key_pem, password=None)
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(b"another passphrase")))

    def broker(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "pg-broker", "--listen", "127.0.0.1:0", "--data-dir",
             str(tmp_path / "data"), "--identity", str(tmp_path / "none"), "--server", "127.0.0.1:1",
             "--tls-cert", str(cert), "--tls-key", str(key), *extra],
            env={**os.environ, "JITGATE_CA_PASSPHRASE": "the brokers passphrase"}, capture_output=True, text=True,
            timeout=60)

    os.chmod(key, 0o600)
    wrong = broker()
    assert wrong.returncode == 1 and "cannot load the TLS certificate" in wrong.stderr, wrong.stderr
    os.chmod(key, 0o644)
    loose = broker()
    assert loose.returncode == 1 and "has mode 0644" in loose.stderr, loose.stderr
    for out in (wrong, loose):
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_psycopg_extended_protocol_transaction_and_recording(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.rw)
    with connect(stack, token) as conn:
        conn.execute("create table items (id int primary key, name text)")
        with conn.transaction():
            conn.execute("insert into items values (%s, %s), (%s, %s)", (1, "one", 2, "two"))
        with pytest.raises(psycopg.errors.UniqueViolation):
            with conn.transaction():
                conn.execute("insert into items values (%s, %s)", (3, "three"))
                conn.execute("insert into items values (%s, %s)", (1, "dup"))
        rows = conn.execute("select id, name from items where id >= %s order by id", (1,)).fetchall()
        assert rows == [(1, "one"), (2, "two")]  # the failed transaction was rolled back
        assert conn.execute("select %s::bytea", (b"\x00\x01",), binary=True).fetchone() == (b"\x00\x01",)
        for i in range(8):  # psycopg prepares a named statement from the 5th execution on
            assert conn.execute("select %s::int + 1", (i,)).fetchone() == (i + 1,)
        conn.commit()
    recs = statements(session_recording(stack, token.grant_id))
    by_text = {(r.text, tuple(r.parameters or ())): r for r in recs}
    ins = by_text[("insert into items values ($1, $2), ($3, $4)", ("1", "one", "2", "two"))]
    assert ins.protocol == "extended" and ins.rows == 2 and ins.command_tag == "INSERT 0 2"
    dup = by_text[("insert into items values ($1, $2)", ("1", "dup"))]
    assert dup.error_sqlstate == "23505" and "duplicate key" in (dup.error_message or "")
    sel = by_text[("select id, name from items where id >= $1 order by id", ("1",))]
    assert sel.rows == 2 and sel.duration_ms >= 0 and sel.started_at > 1.7e9
    assert any(r.text == "create table items (id int primary key, name text)" for r in recs)
    assert any(r.text == "COMMIT" or r.command_tag == "COMMIT" for r in recs)
    prepared = [r for r in recs if r.text == "select $1::int + 1"]
    assert [r.parameters for r in prepared] == [[str(i)] for i in range(8)]
    assert all(r.rows == 1 and r.protocol == "extended" for r in prepared)


def test_pipeline_mode_with_an_error_inside(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    with connect(stack, token, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline():
                first = conn.execute("select %s::int * 2", (21,))
                conn.execute("select 1 / %s::int", (0,))
                conn.execute("select %s::text", ("skipped after the error",))
        assert first.fetchone() == (42,)
        assert conn.execute("select 'after'").fetchone() == ("after",)
    recs = statements(session_recording(stack, token.grant_id))
    assert [(r.text, r.parameters, r.error_sqlstate) for r in recs if r.protocol == "extended"] == [
        ("select $1::int * 2", ["21"], None), ("select 1 / $1::int", ["0"], "22012")]


def test_asyncpg_binary_extended_protocol(stack: PgStack) -> None:
    asyncpg = pytest.importorskip("asyncpg") if not in_ci() else __import__("asyncpg")
    token = stack.login("alice", "testdb", stack.ro)

    async def run() -> list[Any]:
        tls = ssl.create_default_context(cafile=str(stack.ca_file))
        conn = await asyncpg.connect(host="localhost", port=stack.broker_port, user=token.user,
                                     password=token.token, database=token.database, ssl=tls)
        try:
            rows = await conn.fetch("select g, g * $1::int8 as twice from generate_series(1, 3) g", 2)
            one = await conn.fetchval("select $1::text || '!'", "asyncpg")
            async with conn.transaction():
                await conn.execute("select 1")
            return [[tuple(r) for r in rows], one]
        finally:
            await conn.close()

    rows, one = asyncio.run(run())
    assert rows == [(1, 2), (2, 4), (3, 6)] and one == "asyncpg!"
    recs = statements(session_recording(stack, token.grant_id))
    twice = [r for r in recs if r.text.startswith("select g, g * $1::int8")]
    assert [(r.parameters, r.rows) for r in twice] == [(["2"], 3)]
    assert any(r.text == "select $1::text || '!'" and r.parameters == ["asyncpg"] for r in recs)


PGJDBC = "/usr/share/java/postgresql.jar"  # Debian's libpostgresql-jdbc-java (scripts/setup.sh installs it)


def test_jdbc_batch_transaction_and_prepared_statements(stack: PgStack) -> None:
    java = require_binary("java")
    require(Path(PGJDBC).is_file(), f"the PostgreSQL JDBC driver ({PGJDBC})")
    token = stack.login("alice", "testdb", stack.rw)
    url = (f"jdbc:postgresql://localhost:{stack.broker_port}/{token.database}"
           f"?sslmode=verify-full&sslrootcert={stack.ca_file}")
    out = subprocess.run([java, "-cp", PGJDBC, str(Path(__file__).with_name("JdbcClient.java")), url, token.user],
                         env={**os.environ, "JGT_TOKEN": token.token}, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [f"user {token.user}", "batch 3", "names item-1 item-2 item-3",
                                       "error 23505", "count 3"]
    recs = statements(session_recording(stack, token.grant_id))
    inserts = [r for r in recs if r.text == "insert into jdbc_items values ($1, $2, $3)"]
    assert [(r.parameters, r.rows, r.error_sqlstate) for r in inserts] == [
        (["1", "item-1", "1.50"], 1, None), (["2", "item-2", "2.50"], 1, None), (["3", "item-3", "3.50"], 1, None),
        (["1", "duplicate", "1"], None, "23505")]
    assert all(r.protocol == "extended" for r in inserts)
    selects = [r for r in recs if r.text == "select name from jdbc_items where id = $1"]
    assert [(r.parameters, r.rows) for r in selects] == [(["1"], 1), (["2"], 1), (["3"], 1)]
    assert any(r.command_tag == "COMMIT" for r in recs) and any(r.command_tag == "ROLLBACK" for r in recs)


def test_copy_in_and_out(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.rw)
    with connect(stack, token, autocommit=True) as conn:
        conn.execute("create table copied (n int, s text)")
        with conn.cursor() as cur:
            with cur.copy("copy copied from stdin") as copy:
                for i in range(500):
                    copy.write_row((i, f"row {i}"))
            out = bytearray()
            with cur.copy("copy (select * from copied order by n) to stdout") as copy:
                for chunk in copy:
                    out += chunk
        assert out.count(b"\n") == 500 and out.startswith(b"0\trow 0\n")
        assert conn.execute("select count(*) from copied").fetchone() == (500,)
    recs = statements(session_recording(stack, token.grant_id))
    copies = [r for r in recs if r.protocol == "copy"]
    assert [(r.text, r.rows) for r in copies] == [
        ("copy copied from stdin", 500), ("copy (select * from copied order by n) to stdout", 500)]


def test_query_cancel_reaches_the_upstream_backend(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    with connect(stack, token) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(20)")
        assert time.monotonic() - started < 15
        conn.rollback()
        assert conn.execute("select 1").fetchone() == (1,)  # the session goes on


def test_readonly_role_cannot_write(stack: PgStack) -> None:
    rw = stack.login("alice", "testdb", stack.rw)
    with connect(stack, rw, autocommit=True) as conn:
        conn.execute("create table ledger (v int)")
    ro = stack.login("alice", "testdb", stack.ro)
    with connect(stack, ro, autocommit=True) as conn:
        assert conn.execute("select current_user").fetchone() == (stack.ro,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute("insert into ledger values (1)")
        assert conn.execute("select count(*) from ledger").fetchone() == (0,)
    recs = statements(session_recording(stack, ro.grant_id))
    assert any(r.text == "insert into ledger values (1)" and r.error_sqlstate == "42501" for r in recs)


def test_scram_and_md5_credential_injection(stack: PgStack) -> None:
    assert stack.private is not None
    for role, upstream_tls in ((stack.scram_role, True), (stack.md5_role, False)):
        token = stack.login("alice", "scramdb", role)
        with connect(stack, token) as conn:
            assert conn.execute("select current_user").fetchone() == (role,)
            # The broker's own upstream connection: TLS verify-full for the SCRAM role (its URI asks so).
            assert conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone() == (
                upstream_tls,
            )
    # The private cluster really demands the password: the role cannot log in without it.
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host="127.0.0.1", port=stack.private.port, user=stack.scram_role, dbname="postgres",
                        password="wrong", connect_timeout=5)
    kinds = stack.private.psql(f"select rolname, left(rolpassword, 5) from pg_authid where rolname in "
                               f"('{stack.scram_role}', '{stack.md5_role}') order by 1")
    assert "SCRAM" in kinds and "md5" in kinds


# ---------------------------------------------------------------- refusals


def refused(stack: PgStack, token: Token, **kw: Any) -> psycopg.OperationalError:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(**stack.dsn(token, **kw)).close()
    return info.value


def refusal(stack: PgStack, user: str, password: str) -> dict[str, str]:
    """The ErrorResponse fields a hand-made client gets for this user and password."""
    tls, msgs = raw_login(stack, user, password)
    tls.close()
    assert msgs and msgs[-1].type == b"E", msgs
    return p.parse_error_fields(msgs[-1].body)


def test_refusals_are_readable_errors_with_sqlstate_and_audited(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    bad = refusal(stack, token.user, "not-a-token")
    assert bad["sqlstate"] == "28P01" and bad["severity"] == "FATAL" and "jitgate refused access" in bad["message"]
    for user in (f"{stack.ro}@otherdb", f"{stack.rw}@testdb"):  # another resource, another role
        other = refusal(stack, user, token.token)
        assert other["sqlstate"] in ("28000", "28P01") and "jitgate refused access" in other["message"], other
    syntax = refusal(stack, "just-a-name", token.token)
    assert syntax["sqlstate"] == "28000" and "ROLE@RESOURCE" in syntax["message"]
    # libpq shows the same messages to people.
    assert "jitgate refused access" in str(refused(stack, Token("not-a-token", token.user, "test", "")))
    plain = refused(stack, token, sslmode="disable")
    assert "requires TLS" in str(plain)
    # A grant that ran out: its token no longer opens anything.
    short = stack.login("alice", "testdb", stack.ro, seconds=1)
    client = stack.client("alice")
    deadline = time.monotonic() + 15
    while client.access.GetRequest(access_pb2.GetRequestRequest(id=short.grant_id)).state != \
            types_pb2.REQUEST_STATE_EXPIRED:
        assert time.monotonic() < deadline, "the grant did not expire"
        time.sleep(0.1)
    expired = refusal(stack, short.user, short.token)
    assert expired["sqlstate"] in ("28000", "28P01") and "jitgate refused access" in expired["message"], expired
    # A revoked grant too.
    stack.client("admin").access.Revoke(access_pb2.RevokeRequest(id=token.grant_id, reason="test"))
    assert "jitgate refused access" in str(refused(stack, token))
    # Every refusal is in the audit log, the broker's own (TLS) included.
    events = stack.client("admin").audit.ListEvents(audit_pb2.ListEventsRequest(type="session.refused",
                                                                                page_size=1000)).events
    codes = {json.loads(e.data_json).get("code") for e in events}
    assert "tls.required" in codes and "user.malformed" in codes and len(events) >= 6, codes


def raw_login(stack: PgStack, user: str, password: str) -> tuple[ssl.SSLSocket, list[p.Message]]:
    """A hand-made client: SSLRequest, TLS, startup, password; returns the socket and the messages read."""
    sock = socket.create_connection(("127.0.0.1", stack.broker_port), timeout=10)
    sock.sendall(p.ssl_request())
    assert sock.recv(1) == b"S"
    ctx = ssl.create_default_context(cafile=str(stack.ca_file))
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    tls.sendall(p.startup_message({"user": user, "database": "test"}))
    reader = p.MessageReader(max_length=1 << 20)
    msgs = read_until(tls, reader, b"R")
    if msgs[-1].type == b"E":
        return tls, msgs
    assert p.parse_auth(msgs[-1].body)[0] == p.AUTH_CLEARTEXT
    tls.sendall(p.password_message(password.encode() + b"\x00"))
    return tls, read_until(tls, reader, b"Z")


def read_until(sock: socket.socket, reader: p.MessageReader, kind: bytes) -> list[p.Message]:
    out: list[p.Message] = []
    while True:
        m = reader.next_message()
        if m is not None:
            out.append(m)
            if m.type in (kind, b"E"):
                return out
            continue
        data = sock.recv(65536)
        if not data:
            return out
        reader.receive_data(data)


def read_all(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (OSError, ssl.SSLError):
        pass
    return out


def test_startup_phase_guards(stack: PgStack) -> None:
    # Bytes after SSLRequest and before the handshake: dropped without an answer.
    with socket.create_connection(("127.0.0.1", stack.broker_port), timeout=10) as s:
        s.sendall(p.ssl_request() + p.startup_message({"user": "x@y"}))
        assert read_all(s) == b""
    # GSSENCRequest is declined, the connection continues with SSLRequest.
    with socket.create_connection(("127.0.0.1", stack.broker_port), timeout=10) as s:
        s.sendall(struct.pack("!ii", 8, p.GSSENC_REQUEST_CODE))
        assert s.recv(1) == b"N"
        s.sendall(p.ssl_request())
        assert s.recv(1) == b"S"
    # An unknown CancelRequest is ignored; the connection just closes.
    with socket.create_connection(("127.0.0.1", stack.broker_port), timeout=10) as s:
        s.sendall(p.cancel_request(1, 2))
        assert read_all(s) == b""


def test_newer_protocol_minor_is_negotiated_down_to_3_0(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    sock = socket.create_connection(("127.0.0.1", stack.broker_port), timeout=10)
    sock.sendall(p.ssl_request())
    assert sock.recv(1) == b"S"
    tls = ssl.create_default_context(cafile=str(stack.ca_file)).wrap_socket(sock, server_hostname="localhost")
    tls.sendall(p.startup_message({"user": token.user, "database": "test", "_pq_.future": "1"},
                                  version=(3 << 16) | 2))
    reader = p.MessageReader()
    msgs = read_until(tls, reader, b"R")
    assert [m.type for m in msgs] == [b"v", b"R"]
    assert struct.unpack_from("!ii", msgs[0].body) == (0, 1) and b"_pq_.future" in msgs[0].body
    tls.sendall(p.password_message(token.token.encode() + b"\x00"))
    assert read_until(tls, reader, b"Z")[-1].type == b"Z"
    tls.close()


def test_backend_key_is_the_brokers_and_oversized_message_ends_only_that_client(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    tls, msgs = raw_login(stack, token.user, token.token)
    kinds = [m.type for m in msgs]
    assert kinds[0] == b"R" and b"S" in kinds and kinds[-1] == b"Z"
    [key] = [m for m in msgs if m.type == b"K"]
    pid, secret = p.parse_backend_key_data(key.body)
    tls.sendall(p.message(b"Q", b"select pg_backend_pid()\x00"))
    rows = read_until(tls, p.MessageReader(), b"Z")
    data_row = next(m for m in rows if m.type == b"D")
    assert int(data_row.body[6:]) == pid  # the upstream's real pid, with the broker's own secret
    assert secret != 0
    tls.sendall(b"Q" + struct.pack("!I", MAX_MESSAGE + 100))
    reply = p.MessageReader()
    reply.receive_data(read_all(tls))
    m = reply.next_message()
    assert m is not None and m.type == b"E" and p.parse_error_fields(m.body)["sqlstate"] == "54000"
    # The broker still serves everyone else.
    other = stack.login("alice", "testdb", stack.ro)
    with connect(stack, other) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


# ---------------------------------------------------------------- deadline, extension, revocation


def test_warning_then_cut_at_expiry(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro, seconds=3)
    notices: list[str] = []
    with connect(stack, token, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(f"{d.severity}: {d.message_primary}"))
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("select pg_sleep(20)")
        assert info.value.sqlstate == "57P01"
        assert "access expired" in str(info.value)
    assert any(n.startswith("WARNING: jitgate: access to testdb ends at") for n in notices), notices
    events = session_recording(stack, token.grant_id)
    notes = [e.text for e in events if getattr(e, "type", "") == "note"]
    assert any("ends at" in n for n in notes) and any("expired" in n for n in notes)
    [cut] = [e for e in statements(events) if e.text == "select pg_sleep(20)"]  # cut mid-way, still recorded
    assert cut.error_sqlstate == "57P01" and "before the statement completed" in (cut.error_message or "")


def test_extension_and_revocation_on_live_connections(stack: PgStack) -> None:
    extended = stack.grant("alice", "testdb", stack.ro, seconds=3)
    revoked = stack.grant("bob", "testdb", stack.ro, seconds=3600)
    with connect(stack, stack.token("alice", extended.id), autocommit=True) as a, \
            connect(stack, stack.token("bob", revoked.id), autocommit=True) as b:
        notices: list[str] = []
        a.add_notice_handler(lambda d: notices.append(d.message_primary))
        from google.protobuf import duration_pb2

        more = duration_pb2.Duration(seconds=600)
        stack.client("alice").access.Extend(access_pb2.ExtendRequest(id=extended.id, duration=more,
                                                                       justification="need more"))
        stack.client("admin").access.Revoke(access_pb2.RevokeRequest(id=revoked.id, reason="incident over"))
        with pytest.raises(psycopg.OperationalError) as info:
            b.execute("select pg_sleep(20)")
        assert info.value.sqlstate == "57P01" and "access revoked" in str(info.value)
        a.execute("select pg_sleep(4)")  # past the first deadline: still alive
        assert a.execute("select 1").fetchone() == (1,)
        assert any("extended until" in n for n in notices), notices


# ---------------------------------------------------------------- fuzz


@pytest.fixture(scope="module")
def fuzz_token(stack: PgStack) -> Token:
    return stack.login("alice", "testdb", stack.ro)


@settings(max_examples=25, deadline=None)
@given(data=st.binary(min_size=1, max_size=200), as_startup=st.booleans())
def test_fuzz_random_bytes_leave_the_broker_serving(stack: PgStack, fuzz_token: Token, data: bytes,
                                                    as_startup: bool) -> None:
    if as_startup:  # random bytes instead of a startup packet
        with socket.create_connection(("127.0.0.1", stack.broker_port), timeout=10) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            read_all(s)
    else:  # random bytes inside an authorized session
        tls, msgs = raw_login(stack, fuzz_token.user, fuzz_token.token)
        assert msgs[-1].type == b"Z", msgs
        tls.sendall(data)
        tls.sendall(p.message(b"Q", b"select 1\x00"))
        tls.settimeout(5)
        read_all(tls)
        tls.close()


def test_still_serving_after_fuzz(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    with connect(stack, token) as conn:
        assert conn.execute("select 'alive'").fetchone() == ("alive",)
    assert stack.broker_proc is not None and stack.broker_proc.poll() is None
    assert "Traceback" not in stack.broker_log_text()



# ---------------------------------------------------------------- the user's commands


def test_jitgate_db_connect_and_psql(stack: PgStack, tmp_path_factory: pytest.TempPathFactory) -> None:
    require_binary("psql")
    assert stack.cp is not None
    home = tmp_path_factory.mktemp("home")
    env = {**stack.cp.cli_env("alice"), "HOME": str(home)}
    jitgate = [sys.executable, "-m", "cli.main"]
    broker = f"127.0.0.1:{stack.broker_port}"
    # No grant yet and no reason: a plain refusal, exit 1.
    none = subprocess.run([*jitgate, "db-connect", "otherdb", "--broker", broker], env=env, capture_output=True,
                          text=True, timeout=60)
    assert none.returncode == 1 and "no active grant" in none.stderr and "Traceback" not in none.stderr
    # With a reason it asks for one (auto-approved here) and prints the connection settings.
    out = subprocess.run([*jitgate, "db-connect", "otherdb", "--role", stack.ro, "--reason", "incident 42",
                          "--duration", "10m", "--broker", broker, "--output", "json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["user"] == f"{stack.ro}@otherdb" and info["sslmode"] == "verify-full"
    assert Path(info["sslrootcert"]).read_bytes() == stack.cp.ca_pem
    with psycopg.connect(info["uri"]) as conn:
        assert conn.execute("select current_user").fetchone() == (stack.ro,)
    # `jitgate psql` finds that grant and runs psql with verify-full.
    ran = subprocess.run([*jitgate, "psql", "otherdb", "--broker", broker, "--", "-XAtc", "select 'via jitgate'"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "via jitgate"


# ---------------------------------------------------------------- failing closed


def test_recording_process_death_cuts_live_sessions_then_recovers(stack: PgStack) -> None:
    assert stack.broker_proc is not None
    token = stack.login("alice", "testdb", stack.ro)
    with connect(stack, token, autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        children = subprocess.run(["pgrep", "-P", str(stack.broker_proc.pid), "-f", "broker.pg.recordproc"],
                                  capture_output=True, text=True).stdout.split()
        assert len(children) == 1, children
        # It keeps the memory its batches free for the next ones (see broker/pg/recording.py).
        environ = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\x00")
        assert any(v.startswith(b"GLIBC_TUNABLES=") and b"malloc.trim_threshold=" in v for v in environ)
        os.kill(int(children[0]), 9)
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("select pg_sleep(10)")
        assert info.value.sqlstate == "58030" and "can no longer record" in str(info.value)
    # A new recording process took over: new sessions are recorded again.
    deadline = time.monotonic() + 15
    while True:
        try:
            with connect(stack, stack.login("alice", "testdb", stack.ro)) as conn:
                assert conn.execute("select 'recorded again'").fetchone() == ("recorded again",)
            break
        except psycopg.OperationalError as exc:
            assert "cannot record" in str(exc) and time.monotonic() < deadline, exc
            time.sleep(0.1)


def test_control_plane_down_refuses_logins_and_comes_back(stack: PgStack) -> None:
    assert stack.cp is not None
    token = stack.login("alice", "testdb", stack.ro)
    with connect(stack, token, autocommit=True) as live:
        stack.cp.kill()
        try:
            down = refusal(stack, token.user, token.token)
            assert down["sqlstate"] == "57P03" and "cannot reach its control plane" in down["message"]
            assert live.execute("select 'still relayed'").fetchone() == ("still relayed",)
        finally:
            stack.cp.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            with connect(stack, stack.login("alice", "testdb", stack.ro)) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
            break
        except psycopg.OperationalError as exc:
            assert time.monotonic() < deadline, exc
            time.sleep(0.2)
    log = stack.broker_log_text()
    assert "Traceback" not in log and "Check failed" not in log


def recording_process(stack: PgStack) -> int:
    assert stack.broker_proc is not None
    pid = stack.broker_proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    [rec] = [int(c) for c in children if b"broker.pg.recordproc" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return rec


def test_a_recording_process_that_falls_behind_pauses_clients_and_loses_nothing(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    rec = recording_process(stack)
    assert os.getpriority(os.PRIO_PROCESS, rec) == 19  # recording yields to the relay and the database
    done = [0]
    stop = threading.Event()
    conn = connect(stack, token, autocommit=True)
    conn.execute("select 'backlog'")  # the session and its recording are open before the recorder stops
    done[0] += 1

    def client() -> None:
        while not stop.is_set():
            conn.execute("select 'backlog'")
            done[0] += 1

    def stalls(within: float) -> bool:
        """True once the client made no progress for a second."""
        deadline = time.monotonic() + within
        last, since = done[0], time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if done[0] != last:
                last, since = done[0], time.monotonic()
            elif time.monotonic() - since >= 1.0:
                return True
        return False

    os.kill(rec, signal.SIGSTOP)  # the recorder falls behind, as on a machine too busy to run it
    worker = threading.Thread(target=client, daemon=True)
    try:
        worker.start()
        assert stalls(within=30), f"the client went on while nothing was recorded ({done[0]} statements)"
        held = done[0]
        assert held > 100  # it ran until the backlog filled
    finally:
        os.kill(rec, signal.SIGCONT)
    deadline = time.monotonic() + 20
    while done[0] < held + 200:  # caught up: the client is read again
        assert time.monotonic() < deadline, "the client stayed paused after recording caught up"
        time.sleep(0.05)
    stop.set()
    worker.join(15)
    conn.close()
    recorded = [r for r in statements(session_recording(stack, token.grant_id)) if r.text == "select 'backlog'"]
    assert len(recorded) == done[0]
    log = stack.broker_log_text()
    assert "recording is behind" in log and "recording caught up" in log


def test_a_session_end_survives_a_control_plane_outage_and_a_broker_restart(stack: PgStack) -> None:
    assert stack.cp is not None
    token = stack.login("alice", "testdb", stack.ro)
    with connect(stack, token, autocommit=True) as conn:
        assert conn.execute("select 'ended during the outage'").fetchone() == ("ended during the outage",)
        [live] = (
            stack.client("admin").access.ListSessions(access_pb2.ListSessionsRequest(grant_id=token.grant_id)).sessions
        )
        stack.cp.kill()
    spooled = stack.broker_dir / "pending-ends" / f"{live.id}.json"
    try:
        deadline = time.monotonic() + 15
        while not spooled.exists():  # the end is on disk before it is sent
            assert time.monotonic() < deadline, "the session end was not spooled"
            time.sleep(0.05)
        assert stack.stop_broker() == 0
        assert json.loads(spooled.read_text())["reason"] == "client_exit"
    finally:
        stack.cp.start()
        stack.start_broker()
    [session] = ended_sessions(stack, token.grant_id)
    assert session.end_reason == "client_exit" and session.recording_ref
    assert any(
        e.text == "select 'ended during the outage'" for e in statements(session_recording(stack, token.grant_id))
    )
    deadline = time.monotonic() + 5
    while spooled.exists():  # acknowledged, so no longer kept
        assert time.monotonic() < deadline, "an acknowledged end stayed in the spool"
        time.sleep(0.05)


def test_an_end_missed_during_an_outage_is_sent_once_the_control_plane_is_back(stack: PgStack) -> None:
    assert stack.cp is not None
    token = stack.login("alice", "testdb", stack.ro)
    with connect(stack, token, autocommit=True):
        [live] = (
            stack.client("admin").access.ListSessions(access_pb2.ListSessionsRequest(grant_id=token.grant_id)).sessions
        )
        stack.cp.kill()
    spooled = stack.broker_dir / "pending-ends" / f"{live.id}.json"
    try:
        deadline = time.monotonic() + 15
        while not spooled.exists():
            assert time.monotonic() < deadline, "the session end was not spooled"
            time.sleep(0.05)
    finally:
        stack.cp.start()
    # Sent when the grant stream re-syncs, not at the next activity round (30 s away).
    [session] = ended_sessions(stack, token.grant_id, timeout=20)
    assert session.end_reason == "client_exit" and session.recording_ref


def test_a_killed_broker_reports_its_open_sessions_ended_in_error_at_restart(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    store = stack.recordings()
    conn = connect(stack, token, autocommit=True)
    try:
        assert conn.execute("select 'before the crash'").fetchone() == ("before the crash",)
        [live] = (
            stack.client("admin").access.ListSessions(access_pb2.ListSessionsRequest(grant_id=token.grant_id)).sessions
        )
        deadline = time.monotonic() + 10
        while not any(getattr(e, "text", "") == "select 'before the crash'" for e in store.open(live.id).events()):
            assert time.monotonic() < deadline, "the statement did not reach the recording"
            time.sleep(0.1)
        assert stack.broker_proc is not None
        stack.broker_proc.kill()  # SIGKILL: no shutdown path runs
        stack.broker_proc.wait()
        stack.broker_proc = None
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
    finally:
        conn.close()
        stack.start_broker()
    [session] = ended_sessions(stack, token.grant_id)
    assert session.id == live.id and session.end_reason == "error" and session.recording_ref
    result = store.verify(session.recording_ref)
    assert result.intact and not result.sealed  # as far as it got: unsealed, not tampered
    assert result.final_hash == session.recording_hash
    # Recovered once: a second restart leaves it be.
    assert stack.stop_broker() == 0
    stack.start_broker()
    assert stack.broker_log_text().count(f"session {live.id} was open when this broker last stopped") == 1


def test_broker_shutdown_cuts_sessions_with_a_reason_and_seals_recordings(stack: PgStack) -> None:
    token = stack.login("alice", "testdb", stack.ro)
    conn = connect(stack, token, autocommit=True)
    try:
        assert conn.execute("select 'before shutdown'").fetchone() == ("before shutdown",)
        assert stack.stop_broker() == 0
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute("select 1")
        assert "shutting down" in str(info.value)
    finally:
        conn.close()
        stack.start_broker()
    events = session_recording(stack, token.grant_id)
    assert any(getattr(e, "text", "") == "select 'before shutdown'" for e in events)
    [session] = (
        stack.client("admin").access.ListSessions(access_pb2.ListSessionsRequest(grant_id=token.grant_id)).sessions
    )
    assert session.end_reason == "broker_shutdown"
    # Whatever the earlier tests did to it, the broker never let an error go unhandled.
    log = stack.broker_log_text()
    assert "Traceback" not in log and "never retrieved" not in log and "Check failed" not in log
