"""The sans-I/O PostgreSQL protocol and the relay's statement tracker, with byte strings."""
from __future__ import annotations

import json
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from broker.pg import protocol as p
from broker.pg.config import parse_user
from broker.pg.credentials import CredentialError, CredentialSource
from broker.pg.decode import SENT_PREFIX, decode_statement, statement_lines
from broker.pg.framing import Walker
from broker.pg.tracker import ANSWERED, QUICK, STARTED, StatementTracker
from tests.broker.pg.harness import LOCAL_PG, local_pg_available
from tests.support import require


def msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\x00"


# ---------------------------------------------------------------- startup


def test_startup_events_and_rest() -> None:
    r = p.StartupReader()
    r.receive_data(p.ssl_request()[:5])
    assert r.next_event() is None
    r.receive_data(p.ssl_request()[5:])
    assert isinstance(r.next_event(), p.SSLRequest)
    assert r.pending == 0
    r.receive_data(p.startup_message({"user": "readonly@orders", "database": "x"}) + b"extra")
    ev = r.next_event()
    assert isinstance(ev, p.StartupMessage)
    assert ev.params == {"user": "readonly@orders", "database": "x"} and ev.version == p.PROTOCOL_3_0
    assert r.take_rest() == b"extra"


def test_cancel_and_gssenc() -> None:
    r = p.StartupReader()
    r.receive_data(p.cancel_request(1234, 0xDEADBEEF) + struct.pack("!ii", 8, p.GSSENC_REQUEST_CODE))
    assert r.next_event() == p.CancelRequest(1234, 0xDEADBEEF)
    assert isinstance(r.next_event(), p.GSSENCRequest)


@pytest.mark.parametrize("packet, code", [
    (struct.pack("!i", 4), "08P01"),  # too short
    (struct.pack("!i", 20000) + b"x" * 8, "08P01"),  # over PostgreSQL's startup limit
    (struct.pack("!ii", 12, 2 << 16) + b"a\x00\x00\x00", "0A000"),  # protocol 2
    (struct.pack("!ii", 12, p.PROTOCOL_3_0) + b"user", "08P01"),  # not NUL-terminated
    (struct.pack("!ii", 19, p.PROTOCOL_3_0) + b"database\x00x\x00\x00", "28000"),  # no user
    (struct.pack("!ii", 12, p.SSL_REQUEST_CODE) + b"abcd", "08P01"),
])
def test_bad_startup_packets(packet: bytes, code: str) -> None:
    r = p.StartupReader()
    r.receive_data(packet)
    with pytest.raises(p.ProtocolError) as info:
        r.next_event()
    assert info.value.sqlstate == code


def test_message_reader_limits() -> None:
    r = p.MessageReader(max_length=100)
    r.receive_data(msg(b"p", b"tok\x00")[:3])
    assert r.next_message() is None
    r.receive_data(msg(b"p", b"tok\x00")[3:])
    assert r.next_message() == p.Message(b"p", b"tok\x00")
    r.receive_data(b"Q" + struct.pack("!I", 5000))
    with pytest.raises(p.ProtocolError) as info:
        r.next_message()
    assert info.value.sqlstate == "54000"


def test_error_and_notice_round_trip() -> None:
    raw = p.error_response("57P01", "access expired: bye", "FATAL", hint="jitgate extend x")
    r = p.MessageReader()
    r.receive_data(raw)
    m = r.next_message()
    assert m is not None and m.type == b"E"
    f = p.parse_error_fields(m.body)
    assert f["sqlstate"] == "57P01" and f["severity"] == "FATAL" and f["message"] == "access expired: bye"
    assert f["hint"] == "jitgate extend x"
    n = p.notice_response("ends soon")
    assert n[:1] == b"N" and p.parse_error_fields(n[5:])["severity"] == "WARNING"


def test_bind_parameters_text_binary_null() -> None:
    body = (cstr("") + cstr("s1") + struct.pack("!hhh", 2, 0, 1) + struct.pack("!h", 3)
            + struct.pack("!i", 2) + b"42" + struct.pack("!i", 2) + b"\x00\xff" + struct.pack("!i", -1)
            + struct.pack("!h", 0))
    assert p.parse_bind_parameters(body) == ["42", "\\x00ff", None]
    with pytest.raises(p.ProtocolError):
        p.parse_bind_parameters(body[:20])


# Values whose binary form (PostgreSQL's own *_send) is shown as PostgreSQL's text output.
BINARY_CASES = {
    1700: ["0", "1.50", "-1.50", "0.00001", "123456789012345678901234567890.123456789", "-0.5", "10000",
           "1e-20", "-99999999.99990000", "NaN", "Infinity", "-Infinity"],
    1082: ["2000-01-01", "1999-12-31", "0099-07-04", "9999-12-31", "infinity", "-infinity"],
    1114: ["2000-01-01 00:00:00", "2024-02-29 23:59:59.5", "1970-01-01 00:00:00.000001", "infinity"],
    1184: ["2024-02-29 23:59:59.123+00", "1960-06-01 12:00:00+00", "-infinity"],
    3802: ['{"a": [1, 2.5, null]}'],
}
TYPE_NAMES = {1700: "numeric", 1082: "date", 1114: "timestamp", 1184: "timestamptz", 3802: "jsonb"}


def test_binary_parameters_read_as_postgresql_writes_them() -> None:
    require(local_pg_available(), "PostgreSQL on 127.0.0.1:5432 (trust, user postgres, db test)")
    import psycopg

    with psycopg.connect(**LOCAL_PG, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        for oid, values in BINARY_CASES.items():
            name = TYPE_NAMES[oid]
            for value in values:
                sent, text = conn.execute(f"select {name}_send(%s::{name}), %s::{name}::text", (value, value)).fetchone()
                shown = p.parse_bind_parameters(bind_body([bytes(sent)], binary=True), [oid])
                assert shown == [text], (name, value)
    # Malformed binary values are shown as hex, never raise.
    for oid, junk in ((1700, b"\x00\x01\x00\x00\x00\x00\x00\x00"), (1700, b"\x00\x01\x00\x00\x12\x34\x00\x00\x00\x01"),
                      (1700, b"\x00\x01\x00\x00\x00\x00\x00\x00\x27\x10"), (1082, b"\x00"),
                      (1700, struct.pack("!hhHH", 1, 30000, 0, 0) + b"\x00\x01"),  # 10**120000: not computed
                      (1114, b"\x7f" + b"\x00" * 7), (3802, b"\x02{}")):
        assert p.parse_bind_parameters(bind_body([junk], binary=True), [oid]) == ["\\x" + junk.hex()], junk


def bind_body(values: list[bytes], binary: bool) -> bytes:
    body = cstr("") + cstr("") + struct.pack("!hh", 1, 1 if binary else 0) + struct.pack("!h", len(values))
    for v in values:
        body += struct.pack("!i", len(v)) + v
    return body + struct.pack("!h", 0)


def test_rows_from_tag() -> None:
    assert p.rows_from_tag("INSERT 0 3") == 3
    assert p.rows_from_tag("SELECT 5") == 5
    assert p.rows_from_tag("BEGIN") is None
    assert p.rows_from_tag("COPY 10") == 10


def test_user_syntax() -> None:
    assert parse_user("readonly@orders-db") == ("readonly", "orders-db")
    assert parse_user("a@b@orders") == ("a@b", "orders")
    for bad in ("orders", "@orders", "readonly@"):
        with pytest.raises(ValueError, match="ROLE@RESOURCE"):
            parse_user(bad)


def test_credentials_resolution(tmp_path) -> None:
    env = {"ORDERS_DB_READONLY": "postgresql://ro:s%40cret@db:1/x?sslmode=require", "ORDERS_DB": "pw"}
    creds = tmp_path / "creds"
    (creds / "orders").mkdir(parents=True)
    source = CredentialSource(env_names=("ORDERS_DB",), directory=creds)
    ro = source.resolve("env:ORDERS_DB", "readonly", "db:1", env)
    assert (ro.user, ro.password, ro.sslmode) == ("ro", "s@cret", "require")
    assert "s@cret" not in repr(ro)
    rw = source.resolve("env:ORDERS_DB", "readwrite", "db:1", env)
    assert (rw.user, rw.password) == ("readwrite", "pw")
    (creds / "orders" / "readonly").write_text("filepw\n")
    assert source.resolve("file:orders", "readonly", "db:1").password == "filepw"
    assert source.resolve("", "readonly", "db:1").password is None
    with pytest.raises(CredentialError, match="not set"):
        CredentialSource(env_names=("NOPE",)).resolve("env:NOPE", "r", "db:1", {})
    with pytest.raises(CredentialError, match="cannot be read"):
        source.resolve("file:missing", "r", "db:1")
    with pytest.raises(CredentialError):
        source.resolve("vault:x", "r", "db:1")


def test_credentials_reach_only_what_the_broker_allows(tmp_path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (tmp_path / "broker-key.pem").write_text("-----BEGIN PRIVATE KEY-----")
    (creds / "escape").symlink_to(tmp_path / "broker-key.pem")
    (creds / "inside").write_text("pw")
    (creds / "alias").symlink_to(creds / "inside")  # links that stay inside are fine (Kubernetes secrets)
    env = {"JITGATE_CA_PASSPHRASE": "p", "DB_ORDERS": "pw", "AWS_SECRET": "s"}
    source = CredentialSource(env_prefixes=("DB_",), directory=creds)
    assert source.resolve("env:DB_ORDERS", "r", "db:1", env).password == "pw"
    assert source.resolve("file:alias", "r", "db:1").password == "pw"
    for ref, why in [("env:AWS_SECRET", "does not allow"), ("env:JITGATE_CA_PASSPHRASE", "does not allow"),
                     (f"file:{tmp_path}/broker-key.pem", "absolute"), ("file:../broker-key.pem", "`..`"),
                     ("file:escape", "outside"), ("file:inside/../../broker-key.pem", "`..`")]:
        with pytest.raises(CredentialError, match=why):
            source.resolve(ref, "r", "db:1", env)
    with pytest.raises(CredentialError, match="no --credentials-dir"):
        CredentialSource().resolve("file:inside", "r", "db:1")
    with pytest.raises(CredentialError, match="does not allow"):
        CredentialSource().resolve("env:DB_ORDERS", "r", "db:1", env)
    # The broker's own settings cannot be allowed, nor a directory over its keys.
    for bad in [dict(env_names=("JITGATE_CA_PASSPHRASE",)), dict(env_names=("JITGATE",)),
                dict(env_prefixes=("JIT",)), dict(env_prefixes=("",)), dict(env_prefixes=("A",)),
                dict(directory=tmp_path, protected=(creds,)), dict(directory=creds / "nope")]:
        with pytest.raises(ValueError):
            CredentialSource(**bad)
    # A URI that names its server binds the secret to it; cleartext only so bound.
    env = {"DB_X": "postgresql://u:pw@Db.example:6543/x?cleartext=allow"}
    login = source.resolve("env:DB_X", "r", "db.example:6543", env)
    assert login.allow_cleartext and login.bound_to == ("db.example", 6543)
    with pytest.raises(CredentialError, match="not for the resource's address evil:5432"):
        source.resolve("env:DB_X", "r", "evil:5432", env)
    with pytest.raises(CredentialError, match="names no host"):
        source.resolve("env:DB_X", "r", "db:1", {"DB_X": "postgresql://u:pw@/x?cleartext=allow"})


# ---------------------------------------------------------------- the walker


def _walk(chunks: list[bytes]) -> list[tuple[int, bytes]]:
    seen: list[tuple[int, bytes]] = []
    w = Walker(frozenset({ord("Q")}), frozenset({ord("S")}), lambda t, b: seen.append((t, bytes(b))),
               count_type=ord("D"))
    for c in chunks:
        w.feed(c)
    seen.append((-1, bytes([w.count])))
    return seen


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8))
@settings(max_examples=200, deadline=None)
def test_walker_same_result_for_any_split(cuts: list[int]) -> None:
    stream = (msg(b"Q", b"select 1\x00") + msg(b"D", b"x" * 50) + msg(b"S") + msg(b"T", b"y" * 30)
              + msg(b"D", b"") + msg(b"Q", b"q" * 70 + b"\x00"))
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks, prev = [], 0
    for c in points + [len(stream)]:
        chunks.append(stream[prev:c])
        prev = c
    assert _walk(chunks) == _walk([stream]) == [
        (ord("Q"), b"select 1\x00"), (ord("S"), b""), (ord("Q"), b"q" * 70 + b"\x00"), (-1, bytes([2]))]


def test_walker_refuses_bad_lengths() -> None:
    w = Walker(frozenset(), frozenset(), lambda t, b: None, max_length=1000)
    with pytest.raises(p.ProtocolError) as info:
        w.feed(b"Q" + struct.pack("!I", 5000))
    assert info.value.sqlstate == "54000"
    w2 = Walker(frozenset(), frozenset(), lambda t, b: None)
    with pytest.raises(p.ProtocolError):
        w2.feed(b"Q\x00\x00")
        w2.feed(b"\x00\x02")


# ---------------------------------------------------------------- the tracker

ROW = msg(b"D", struct.pack("!h", 1) + struct.pack("!i", 1) + b"1")


def ready() -> bytes:
    return msg(b"Z", b"I")


def test_simple_query_with_rows_and_error() -> None:
    clock = iter([10.0, 10.5, 20.0, 20.25]).__next__
    t = StatementTracker(clock=clock)
    t.from_client(msg(b"Q", cstr("select 1")))
    t.from_server(msg(b"T", b"...") + ROW + ROW + msg(b"C", cstr("SELECT 2")) + ready())
    t.from_client(msg(b"Q", cstr("insert into x values (1)")))
    t.from_server(msg(b"E", b"SERROR\x00C42501\x00Mpermission denied for table x\x00\x00") + ready())
    a, b = [decode_statement(r) for r in t.take_completed()]
    assert (a.text, a.rows, a.command_tag, a.protocol, a.duration_ms) == ("select 1", 2, "SELECT 2", "simple", 500.0)
    assert (b.error_sqlstate, b.error_message, b.rows) == ("42501", "permission denied for table x", None)
    assert t.in_flight == 0


def bind(stmt: str, *params: str, portal: str = "") -> bytes:
    body = cstr(portal) + cstr(stmt) + struct.pack("!h", 0) + struct.pack("!h", len(params))
    for v in params:
        body += struct.pack("!i", len(v)) + v.encode()
    return msg(b"B", body + struct.pack("!h", 0))


def execute(portal: str = "") -> bytes:
    return msg(b"E", cstr(portal) + struct.pack("!i", 0))


def test_extended_protocol_pipeline_and_error_skips_to_sync() -> None:
    t = StatementTracker()
    t.from_client(msg(b"P", cstr("s1") + cstr("select $1::int") + b"\x00\x00") + bind("s1", "7")
                  + msg(b"D", b"P\x00") + execute() + msg(b"S"))
    t.from_client(bind("s1", "8") + execute() + bind("s1", "9") + execute() + msg(b"S"))
    t.from_server(msg(b"1") + msg(b"2") + msg(b"T", b"..") + ROW + msg(b"C", cstr("SELECT 1")) + ready())
    # The second batch: the first execute fails, the backend skips the rest up to Sync.
    t.from_server(msg(b"2") + msg(b"E", b"SERROR\x00C22012\x00Mdivision by zero\x00\x00") + ready())
    recs = [decode_statement(r) for r in t.take_completed()]
    assert [(r.text, r.parameters, r.rows, r.error_sqlstate, r.protocol) for r in recs] == [
        ("select $1::int", ["7"], 1, None, "extended"),
        ("select $1::int", ["8"], None, "22012", "extended"),
    ]
    assert t.in_flight == 0


def test_parse_error_recorded_and_client_messages_skipped_until_sync() -> None:
    t = StatementTracker()
    t.from_client(msg(b"P", cstr("") + cstr("selec oops") + b"\x00\x00"))
    t.from_server(msg(b"E", b"SERROR\x00C42601\x00Msyntax error\x00\x00"))
    t.from_client(bind("") + execute() + msg(b"S"))  # ignored by the backend until Sync
    t.from_server(ready())
    [r] = [decode_statement(x) for x in t.take_completed()]
    assert (r.text, r.error_sqlstate) == ("selec oops", "42601")
    assert t.in_flight == 0


def test_copy_in_and_out() -> None:
    t = StatementTracker()
    t.from_client(msg(b"Q", cstr("copy t from stdin")))
    t.from_server(msg(b"G", b"\x00\x00\x00"))
    t.from_client(msg(b"d", b"1\n2\n") + msg(b"c"))
    t.from_server(msg(b"C", cstr("COPY 2")) + ready())
    t.from_client(msg(b"Q", cstr("copy t to stdout")))
    t.from_server(msg(b"H", b"\x00\x00\x00") + msg(b"d", b"1\n") + msg(b"d", b"2\n") + msg(b"c")
                  + msg(b"C", cstr("COPY 2")) + ready())
    recs = [decode_statement(r) for r in t.take_completed()]
    assert [(r.text, r.protocol, r.rows) for r in recs] == [
        ("copy t from stdin", "copy", 2), ("copy t to stdout", "copy", 2)]


def test_portal_suspended_and_empty_query() -> None:
    t = StatementTracker()
    t.from_client(msg(b"P", cstr("") + cstr("select 1") + b"\x00\x00") + bind("", portal="c1")
                  + execute("c1") + msg(b"S"))
    t.from_server(msg(b"1") + msg(b"2") + ROW + msg(b"s") + ready())
    t.from_client(msg(b"P", cstr("") + cstr("") + b"\x00\x00") + bind("") + execute() + msg(b"S"))
    t.from_server(msg(b"1") + msg(b"2") + msg(b"I") + ready())
    a, b = [decode_statement(r) for r in t.take_completed()]
    assert (a.rows, a.command_tag) == (1, "SUSPENDED")
    assert (b.text, b.rows) == ("", None)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_tracker_never_fails_on_random_server_bytes(data: bytes) -> None:
    t = StatementTracker()
    t.from_client(msg(b"Q", cstr("select 1")) + bind("x") + execute() + msg(b"S"))
    try:
        t.from_server(data)
    except p.ProtocolError:
        pass
    for r in t.take_completed():
        decode_statement(r)


def test_closed_statements_are_forgotten() -> None:
    t = StatementTracker()
    t.from_client(msg(b"P", cstr("s9") + cstr("select 9") + b"\x00\x00") + msg(b"S"))
    t.from_server(msg(b"1") + ready())
    assert b"s9" in t._statements
    t.from_client(msg(b"C", b"S" + cstr("s9")) + msg(b"S"))
    t.from_server(msg(b"3") + ready())
    assert b"s9" not in t._statements and t.in_flight == 0


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks, prev = [], 0
    for c in points + [len(stream)]:
        chunks.append(stream[prev:c])
        prev = c
    return [c for c in chunks if c]


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=10),
       st.lists(st.integers(min_value=0, max_value=400), max_size=10))
@settings(max_examples=200, deadline=None)
def test_tracker_same_records_for_any_chunking(client_cuts: list[int], server_cuts: list[int]) -> None:
    client = (msg(b"Q", cstr("select 1")) + msg(b"P", cstr("s") + cstr("select $1") + b"\x00\x00")
              + bind("s", "5") + execute() + msg(b"S") + msg(b"Q", cstr("bad")))
    server = (msg(b"T", b"x" * 40) + ROW + msg(b"C", cstr("SELECT 1")) + ready()
              + msg(b"1") + msg(b"2") + ROW + ROW + msg(b"C", cstr("SELECT 2")) + ready()
              + msg(b"E", b"SERROR\x00C42601\x00Msyntax error at or near \"bad\"\x00\x00") + ready())

    def run(cc: list[bytes], sc: list[bytes]) -> list[tuple]:
        t = StatementTracker(clock=lambda: 1.0)
        for c in cc:
            t.from_client(c)
        for c in sc:
            t.from_server(c)
        return [(r.text, r.parameters, r.rows, r.command_tag, r.error_sqlstate)
                for r in map(decode_statement, t.take_completed())]

    expected = [("select 1", None, 1, "SELECT 1", None), ("select $1", ["5"], 2, "SELECT 2", None),
                ("bad", None, None, None, "42601")]
    assert run([client], [server]) == expected
    assert run(_split(client, client_cuts), _split(server, server_cuts)) == expected


def test_negotiate_protocol_version_message() -> None:
    raw = p.negotiate_protocol_version(0, ["_pq_.x"])
    r = p.MessageReader()
    r.receive_data(raw)
    m = r.next_message()
    assert m is not None and m.type == b"v"
    assert struct.unpack_from("!ii", m.body) == (0, 1) and m.body[8:] == b"_pq_.x\x00"


def test_unanswered_statements_are_recorded_when_the_session_ends() -> None:
    t = StatementTracker()
    t.from_client(msg(b"Q", cstr("select pg_sleep(60)")))
    t.abandon("57P01", "cut")
    [r] = [decode_statement(x) for x in t.take_completed()]
    assert (r.text, r.error_sqlstate, r.error_message) == ("select pg_sleep(60)", "57P01", "cut")
    assert t.in_flight == 0


def sent_texts(t: StatementTracker) -> list[str]:
    return [json.loads(line)["text"] for line, _ in statement_lines(t.take_sent(), 0.0)]


def test_statements_sent_are_handed_over_once_before_their_answer() -> None:
    t = StatementTracker(clock=lambda: 5.0)
    t.from_client(msg(b"Q", cstr("insert into t select 1 from pg_sleep(4)")))  # the Query kept aside
    assert sent_texts(t) == [SENT_PREFIX + "insert into t select 1 from pg_sleep(4)"]
    assert sent_texts(t) == []  # once
    t.from_client(msg(b"Q", cstr("select 2")))  # queues the first (already handed over) behind nothing
    assert sent_texts(t) == [SENT_PREFIX + "select 2"]
    t.from_client(msg(b"P", cstr("") + cstr("insert into t values ($1)") + b"\x00\x00") + bind("", "42")
                  + execute() + msg(b"S"))
    assert sent_texts(t) == [SENT_PREFIX + 'insert into t values ($1) parameters: ["42"]']
    t.from_server(msg(b"C", cstr("INSERT 0 1")) + ready() + msg(b"T", b"..") + ROW + msg(b"C", cstr("SELECT 1"))
                  + ready())
    assert sent_texts(t) == [] and t.in_flight == 4  # Parse, Bind, Execute, Sync still wait
    t.from_server(msg(b"1") + msg(b"2") + msg(b"C", cstr("INSERT 0 1")) + ready())
    assert [decode_statement(r).text for r in t.take_completed()] == [
        "insert into t select 1 from pg_sleep(4)", "select 2", "insert into t values ($1)"]
    assert t.take_sent() == [] and t.in_flight == 0
    # The note sits at the statement's start in the recording.
    t.from_client(msg(b"Q", cstr("select 3")))
    [(line, text_bytes)] = statement_lines(t.take_sent(), 2.0)
    assert json.loads(line) == {"t": 3.0, "type": "note", "text": SENT_PREFIX + "select 3"} and text_bytes == 0


def test_query_kept_aside_keeps_its_place_among_pipelined_and_split_answers() -> None:
    # The hot path keeps a lone simple Query aside; anything else must queue it first.
    t = StatementTracker(clock=lambda: 1.0)
    t.from_client(msg(b"Q", cstr("update a set x = 1")))
    assert t.in_flight == 1
    t.from_client(msg(b"Q", cstr("select 2")))  # sent before the first is answered
    assert t.in_flight == 2
    t.from_server(msg(b"C", cstr("UPDATE 3")) + ready())
    t.from_server(msg(b"T", b"...") + ROW)  # the second answer, in two chunks
    t.from_server(msg(b"C", cstr("SELECT 1")) + ready())
    t.from_client(msg(b"Q", cstr("update b set y = 2")))
    t.from_server(msg(b"C", cstr("UPDATE 1")) + ready())  # the quick way
    t.from_client(msg(b"Q", cstr("select pg_sleep(9)")))
    t.abandon("57P01", "cut")  # the session ends with it unanswered
    raws = t.take_completed()
    assert [r[0] for r in raws] == [ANSWERED, ANSWERED, QUICK, ANSWERED]
    assert [(r.text, r.rows, r.command_tag, r.error_sqlstate) for r in map(decode_statement, raws)] == [
        ("update a set x = 1", 3, "UPDATE 3", None), ("select 2", 1, "SELECT 1", None),
        ("update b set y = 2", 1, "UPDATE 1", None), ("select pg_sleep(9)", None, None, "57P01")]
    assert t.in_flight == 0


_ANSWER_PARTS = {"T": msg(b"T", b"x" * 30), "D": ROW, "C": msg(b"C", cstr("SELECT 2")),
                 "SHOW": msg(b"C", cstr("SHOW")),  # a tag without a count: the rows are the DataRows
                 "Z": msg(b"Z", b"I"), "N": msg(b"N", b"SNOTICE\x00Mhi\x00\x00"), "bad": b"D\x00\x00\x00\x02"}


@given(st.lists(st.sampled_from(sorted(_ANSWER_PARTS)), max_size=8))
@example(["C", "Z"])
@example(["D", "D", "C", "Z"])
@example(["D", "D", "D", "SHOW", "Z"])
@example(["SHOW", "Z"])
@example(["D", "bad", "C", "Z"])
@example(["D", "N", "SHOW", "Z"])
@example(["D", "C", "Z", "Z"])
@example(["D", "T", "C", "Z"])
@settings(max_examples=300, deadline=None)
def test_a_lone_query_answered_in_one_chunk_is_recorded_as_when_split(parts: list[str]) -> None:
    # A small SELECT's whole answer in one chunk takes a quick way (RowDescription, DataRows,
    # CommandComplete, ReadyForQuery); anything else, or the same bytes split, the general walk.
    # Both must give the same records, and refuse the same malformed answers.
    answer = _ANSWER_PARTS["T"] + b"".join(_ANSWER_PARTS[k] for k in parts)

    def run(chunks: list[bytes]) -> tuple[list[tuple], bool]:
        t = StatementTracker(clock=lambda: 1.0)
        t.from_client(msg(b"Q", cstr("select x from t")))
        try:
            for c in chunks:
                t.from_server(c)
        except p.ProtocolError:
            return [], True
        return [(r.text, r.rows, r.command_tag) for r in map(decode_statement, t.take_completed())], False

    whole, split = run([answer]), run([answer[i:i + 1] for i in range(len(answer))])
    assert whole == split
    if parts in (["C", "Z"], ["D", "C", "Z"], ["D", "D", "C", "Z"]):
        assert whole == ([("select x from t", 2, "SELECT 2")], False)
    if parts == ["D", "D", "D", "SHOW", "Z"]:
        assert whole == ([("select x from t", 3, "SHOW")], False)
    if "bad" in parts:
        assert whole[1]


def test_a_small_select_answered_at_once_is_a_quick_statement() -> None:
    t = StatementTracker(clock=lambda: 1.0)
    t.from_client(msg(b"Q", cstr("select 1")))
    t.from_server(msg(b"T", b"x" * 30) + ROW + msg(b"C", cstr("SELECT 1")) + ready())
    [raw] = t.take_completed()
    assert raw[0] == QUICK and t.in_flight == 0
    r = decode_statement(raw)
    assert (r.text, r.rows, r.command_tag) == ("select 1", 1, "SELECT 1")


def test_feed_times_each_chunk_by_when_it_passed_and_stops_at_a_refused_one() -> None:
    # The broker keeps relayed chunks and feeds them in batches, with the times they passed.
    t = StatementTracker(clock=lambda: 99.0)
    refused = t.feed([(msg(b"Q", cstr("update a set x = 1")), True, 10.0),
                      (msg(b"C", cstr("UPDATE 2")) + ready(), False, 10.5),
                      (msg(b"Q", cstr("select 1")), True, 11.0),
                      (msg(b"T", b"x" * 30), False, 11.2),
                      (ROW + msg(b"C", cstr("SELECT 1")) + ready(), False, 11.7)])
    assert refused is None
    assert [(r.text, r.started_at, round(r.duration_ms, 6), r.rows) for r in map(decode_statement, t.take_completed())] == [
        ("update a set x = 1", 10.0, 500.0, 2), ("select 1", 11.0, 700.0, 1)]
    t.from_client(msg(b"Q", cstr("select 2")))  # one at a time again: the tracker's own clock
    t.abandon("57P01", "cut")
    assert [r.started_at for r in map(decode_statement, t.take_completed())] == [99.0]
    bad = b"Q\x00\x00\x00\x02"
    refused = t.feed([(msg(b"Q", cstr("select 3")), True, 12.0), (bad, True, 12.1),
                      (msg(b"Q", cstr("never walked")), True, 12.2)])
    assert refused is not None and refused[0] is True and "invalid message length" in refused[1].message
    server_bad = t.feed([(b"C\x00\x00\x00\x01", False, 13.0)])
    assert server_bad is not None and server_bad[0] is False


def test_statement_lines_are_the_lines_of_decoded_statements() -> None:
    # The recording process writes `statement_lines`; replay reads them as DbStatements.
    # Every shape of statement must come out as `decode_statement(raw).to_line()` would.
    t = StatementTracker()
    t.from_client(msg(b"Q", cstr("select 1")))
    t.from_server(msg(b"T", b"...") + ROW + ROW + msg(b"C", cstr("SELECT 2")) + ready())
    t.from_client(msg(b"Q", cstr("begin")))
    t.from_server(msg(b"C", cstr("BEGIN")) + ready())
    t.from_client(msg(b"Q", cstr("fetch 2 from c")))  # a tag without a count: the DataRows count
    t.from_server(ROW + ROW + msg(b"C", cstr("FETCH")) + ready())
    t.from_client(msg(b"Q", cstr("select 'é\"\\\n'; update x set a = 1")))  # two commands, escapes
    t.from_server(ROW + msg(b"C", cstr("SELECT 1")) + msg(b"C", cstr("UPDATE 3")) + ready())
    t.from_client(msg(b"Q", cstr("insert into x values (1)")))
    t.from_server(msg(b"E", b"SERROR\x00C42501\x00Mpermission denied\x00\x00") + ready())
    t.from_client(msg(b"Q", cstr("copy t from stdin")))
    t.from_server(msg(b"G", b"\x00\x00\x00"))
    t.from_client(msg(b"d", b"1\n") + msg(b"c"))
    t.from_server(msg(b"C", cstr("COPY 1")) + ready())
    t.from_client(msg(b"P", cstr("s1") + cstr("select $1::int") + b"\x00\x00") + bind("s1", "7") + execute()
                  + msg(b"S"))
    t.from_server(msg(b"1") + msg(b"2") + ROW + msg(b"C", cstr("SELECT 1")) + ready())
    raws = t.take_completed()
    assert len(raws) == 7
    start = raws[0][STARTED] - 2.5
    lines = list(statement_lines(raws, start))
    for raw, (line, text_len) in zip(raws, lines):
        event = decode_statement(raw)
        event.t = max(0.0, event.started_at - start)
        assert line == event.to_line().encode("utf-8")
        assert text_len == len(event.text.encode("utf-8"))
