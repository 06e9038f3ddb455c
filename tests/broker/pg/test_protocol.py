"""The sans-I/O PostgreSQL protocol, the user-name syntax and credentials, with byte strings."""
from __future__ import annotations

import struct

import pytest

from broker.pg import protocol as p
from broker.pg.config import parse_user
from broker.pg.credentials import CredentialError, CredentialSource
from tests.broker.pg.harness import LOCAL_PG, local_pg_available
from tests.broker.pg.wire import cstr, msg
from tests.support import require

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
                sent, text = conn.execute(
                    f"select {name}_send(%s::{name}), %s::{name}::text", (value, value)
                ).fetchone()
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


def test_negotiate_protocol_version_message() -> None:
    raw = p.negotiate_protocol_version(0, ["_pq_.x"])
    r = p.MessageReader()
    r.receive_data(raw)
    m = r.next_message()
    assert m is not None and m.type == b"v"
    assert struct.unpack_from("!ii", m.body) == (0, 1) and m.body[8:] == b"_pq_.x\x00"
