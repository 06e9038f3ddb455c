"""Credentials and the session gate: SSH certificates (real CA), database tokens, authorize_session."""
from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ca.ssh import UPSTREAM_CA_NAME, USER_CA_NAME, SSHCertificateAuthority
from ca.sshcert import parse_certificate
from controlplane.errors import JitError
from tests.controlplane.core.helpers import dev, prod

PASSPHRASE = b"test-passphrase-for-core-tests-0123456789"


def refused(code, fn, *args, **kw):
    with pytest.raises(JitError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value
    return info.value


@pytest.fixture
def cas(tmp_path):
    d = tmp_path / "ca"
    return (SSHCertificateAuthority.load_or_create(d, PASSPHRASE, USER_CA_NAME),
            SSHCertificateAuthority.load_or_create(d, PASSPHRASE, UPSTREAM_CA_NAME))


@pytest.fixture
def core(make_core, cas):
    return make_core(ssh_user_ca=cas[0], ssh_upstream_ca=cas[1])


def pubkey() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def refusals(core):
    return [e.data["code"] for e in core.audit.audit_events(type="session.refused", limit=1000)]


def test_ssh_certificate_fields(core, clock, cas):
    rec = dev(core, minutes=45)
    line, serial, valid_before, principals = core.credentials.issue_ssh_certificate("alice", rec.id, pubkey())
    info = parse_certificate(line)
    assert info.cert_type == "user"
    assert info.key_id == rec.id
    assert info.serial == serial
    assert list(info.principals) == principals == ["deploy@web-dev-01"]
    assert valid_before == rec.expires_at
    assert info.valid_before == rec.expires_at.replace(microsecond=0)
    assert info.valid_after == (clock.now - timedelta(seconds=60)).replace(microsecond=0)
    assert "permit-pty" in info.extensions                      # dev rule: pty true
    assert "permit-port-forwarding" not in info.extensions      # dev rule: port_forwarding false
    assert "permit-agent-forwarding" not in info.extensions
    assert info.signature_key_line.split()[:2] == cas[0].public_key_line().split()[:2]
    issued = core.audit.audit_events(type="credential.ssh_issued")
    assert issued[0].data["serial"] == serial and issued[0].subject == rec.id
    _, serial2, _, _ = core.credentials.issue_ssh_certificate("alice", rec.id, pubkey())
    assert serial2 != serial


def test_ssh_certificate_refusals(core):
    rec = dev(core)
    refused("permission.denied", core.credentials.issue_ssh_certificate, "dave", rec.id, pubkey())
    refused("invalid.argument", core.credentials.issue_ssh_certificate, "alice", rec.id, "ssh-ed25519 garbage")
    pending = prod(core)
    refused("grant.not_active", core.credentials.issue_ssh_certificate, "alice", pending.id, pubkey())
    db, _ = core.requests.create_request("alice", "dev-db", role="readonly", duration=timedelta(hours=1), reason="q")
    refused("invalid.argument", core.credentials.issue_ssh_certificate, "alice", db.id, pubkey())
    refused("request.not_found", core.credentials.issue_ssh_certificate, "alice", "nope", pubkey())


def test_authorize_ssh_session_checks_serial_grant_target_and_channel(core, clock):
    rec = dev(core, minutes=60)
    other = dev(core, minutes=60)
    _, serial, _, _ = core.credentials.issue_ssh_certificate("alice", rec.id, pubkey())
    sess, grant, res = core.sessions.authorize_session("broker-1", "ssh", "web-dev-01", login="deploy",
                                              ssh_key_id=rec.id, ssh_serial=serial,
                                              client_address="127.0.0.1:5000", channel="shell")
    assert sess.grant_id == rec.id and sess.user == "alice" and sess.ended_at is None
    assert grant.id == rec.id and res.name == "web-dev-01" and res.address == "10.0.1.5:22"
    started = core.audit.audit_events(type="session.started")
    assert started[0].subject == sess.id and started[0].data["serial"] == serial

    kw = dict(login="deploy", ssh_key_id=rec.id, ssh_serial=serial, channel="shell")
    refused("permission.denied", core.sessions.authorize_session, "alice", "ssh", "web-dev-01", **kw)
    refused("credential.invalid", core.sessions.authorize_session, "broker-1", "ssh", "web-dev-01",
            **{**kw, "ssh_serial": serial + 1})
    refused("credential.invalid", core.sessions.authorize_session, "broker-1", "ssh", "web-dev-01",
            **{**kw, "ssh_key_id": other.id})  # a serial of one grant presented for another
    refused("session.login_mismatch", core.sessions.authorize_session, "broker-1", "ssh", "web-dev-01",
            **{**kw, "login": "root"})
    refused("session.target_mismatch", core.sessions.authorize_session, "broker-1", "ssh", "web-prod-01", **kw)
    refused("session.channel_not_allowed", core.sessions.authorize_session, "broker-1", "ssh", "web-dev-01",
            **{**kw, "channel": "sftp"})  # dev rule: sftp false
    refused("session.channel_not_allowed", core.sessions.authorize_session, "broker-1", "ssh", "web-dev-01",
            **{**kw, "channel": "port_forwarding"})
    assert (
        core.sessions.authorize_session("broker-1", "ssh", "web-dev-01", **{**kw, "channel": "exec"})[0].channel
        == "exec"
    )
    assert refusals(core) == [
        "permission.denied",
        "credential.invalid",
        "credential.invalid",
        "session.login_mismatch",
        "session.target_mismatch",
        "session.channel_not_allowed",
        "session.channel_not_allowed",
    ]

    # revocation makes the serial revoked for brokers and for the gate
    core.grants.revoke("ada", rec.id, "done")
    assert serial in core.credentials.revoked_serials()
    assert core.audit.audit_events(type="grant.revoked")[0].data["revoked_serials"] == [serial]
    refused("credential.revoked", core.sessions.authorize_session, "broker-1", "ssh", "web-dev-01", **kw)


def test_authorize_refuses_after_expiry_even_before_the_sweep(core, clock):
    rec = dev(core, minutes=10)
    _, serial, _, _ = core.credentials.issue_ssh_certificate("alice", rec.id, pubkey())
    clock.advance(minutes=10)
    e = refused(
        "grant.not_active",
        core.sessions.authorize_session,
        "broker-1",
        "ssh",
        "web-dev-01",
        login="deploy",
        ssh_key_id=rec.id,
        ssh_serial=serial,
        channel="shell",
    )
    assert "expired" in e.message
    core.grants.sweep()
    refused(
        "grant.not_active",
        core.sessions.authorize_session,
        "broker-1",
        "ssh",
        "web-dev-01",
        login="deploy",
        ssh_key_id=rec.id,
        ssh_serial=serial,
        channel="shell",
    )


def test_database_token(core, clock, db_path):
    rec, _ = core.requests.create_request(
        "alice", "dev-db", role="readonly", duration=timedelta(minutes=30), reason="q"
    )
    token, expires_at = core.credentials.issue_database_token("alice", rec.id)
    assert expires_at == rec.expires_at and len(token) >= 43
    refused("permission.denied", core.credentials.issue_database_token, "dave", rec.id)
    ssh = dev(core)
    refused("invalid.argument", core.credentials.issue_database_token, "alice", ssh.id)

    sess, grant, res = core.sessions.authorize_session(
        "broker-1", "postgres", "dev-db", role="readonly", db_token=token, channel="pg"
    )
    assert grant.id == rec.id and sess.role == "readonly" and res.database == "dev"
    assert (
        core.sessions.authorize_session("broker-1", "postgres", "dev-db", db_token=token, channel="pg")[0].role
        == "readonly"
    )
    refused(
        "credential.invalid",
        core.sessions.authorize_session,
        "broker-1",
        "postgres",
        "dev-db",
        role="readonly",
        db_token=token[:-1] + ("A" if token[-1] != "A" else "B"),
        channel="pg",
    )
    refused(
        "credential.invalid",
        core.sessions.authorize_session,
        "broker-1",
        "postgres",
        "dev-db",
        role="readonly",
        db_token="",
        channel="pg",
    )
    refused(
        "session.role_mismatch",
        core.sessions.authorize_session,
        "broker-1",
        "postgres",
        "dev-db",
        role="readwrite",
        db_token=token,
        channel="pg",
    )

    # the token is stored hashed only and never reaches the audit log
    with sqlite3.connect(db_path) as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump
    assert all(token not in str(e.data) for e in core.audit.audit_events(limit=1000))

    clock.advance(minutes=30)
    refused(
        "grant.not_active",
        core.sessions.authorize_session,
        "broker-1",
        "postgres",
        "dev-db",
        role="readonly",
        db_token=token,
        channel="pg",
    )


def test_upstream_certificate_and_session_end(core, clock):
    rec = dev(core, minutes=60)
    _, serial, _, _ = core.credentials.issue_ssh_certificate("alice", rec.id, pubkey())
    sess, _, _ = core.sessions.authorize_session(
        "broker-1", "ssh", "web-dev-01", login="deploy", ssh_key_id=rec.id, ssh_serial=serial, channel="shell"
    )
    line, valid_before = core.credentials.issue_upstream_certificate("broker-1", sess.id, pubkey())
    info = parse_certificate(line)
    assert list(info.principals) == ["deploy"]
    assert valid_before <= rec.expires_at and valid_before > clock.now
    refused("permission.denied", core.credentials.issue_upstream_certificate, "alice", sess.id, pubkey())
    refused("session.not_found", core.credentials.issue_upstream_certificate, "broker-1", "nope", pubkey())
    # an upstream serial is not a user credential
    refused(
        "credential.invalid",
        core.sessions.authorize_session,
        "broker-1",
        "ssh",
        "web-dev-01",
        login="deploy",
        ssh_key_id=rec.id,
        ssh_serial=info.serial,
        channel="shell",
    )

    clock.advance(minutes=20)
    core.sessions.report_activity("broker-1", sess.id, clock.now, bytes_in=10, bytes_out=200)
    clock.advance(minutes=5)
    ended = core.sessions.end_session(
        "broker-1",
        sess.id,
        "client_exit",
        bytes_in=12,
        bytes_out=300,
        recording_ref="rec/1.cast",
        recording_hash="sha256:ab",
    )
    assert ended.ended_at == clock.now and ended.end_reason == "client_exit" and ended.bytes_out == 300
    again = core.sessions.end_session("broker-1", sess.id, "expired")
    assert again.end_reason == "client_exit"  # idempotent: the first report stands
    assert [e.type for e in core.audit.audit_events(subject=sess.id)] == [
        "session.started",
        "credential.upstream_issued",
        "session.ended",
    ]
    refused("session.ended", core.credentials.issue_upstream_certificate, "broker-1", sess.id, pubkey())
    assert core.sessions.get_session("alice", sess.id).recording_ref == "rec/1.cast"
    refused("permission.denied", core.sessions.get_session, "dave", sess.id)
    assert [s.id for s in core.sessions.list_sessions("alice")[0]] == [sess.id]
    assert core.sessions.list_sessions("dave")[0] == []
    assert core.sessions.list_sessions("ada", live_only=True)[0] == []


def test_broker_reported_refusal_is_audited(core):
    refused("permission.denied", core.sessions.record_refusal, "alice", "ssh", "x", "web-dev-01", "cert.expired", "old")
    core.sessions.record_refusal(
        "broker-1", "ssh", "root@nowhere", "nowhere", "target.unknown", "no such target", "1.2.3.4"
    )
    ev = core.audit.audit_events(type="session.refused")
    assert ev[-1].data["code"] == "target.unknown" and ev[-1].actor == "broker-1"
