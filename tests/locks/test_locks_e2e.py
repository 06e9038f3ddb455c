"""Locks through the real brokers: a lock on a user cuts their live SSH and PostgreSQL sessions,
refuses anything new under it (request, credential, session), survives a control plane
restart, and is lifted; a user it does not name is untouched."""
from __future__ import annotations

import subprocess

import grpc
import pytest
from google.protobuf import duration_pb2

from jitgate.status import reason_of
from jitgate.v1 import access_pb2, audit_pb2, locks_pb2
from tests.broker.ssh.harness import wait_for
from tests.locks.stack import TwoBrokers

pytestmark = pytest.mark.timeout(120)


def _refused(call, *args, **kwargs) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code(), reason_of(info.value), info.value.details()


def _pg_connect(stack: TwoBrokers, user: str, grant_id: str):
    import psycopg

    tok = stack.pg.token(user, grant_id)
    return psycopg.connect(**stack.pg.dsn(tok), autocommit=True)


def test_a_lock_on_a_user_cuts_both_brokers_refuses_new_survives_restart_and_is_lifted(stack) -> None:
    import psycopg

    admin = stack.client("admin")
    alice = stack.client("alice")
    ssh_grant = stack.ssh.grant("alice", "web-01")
    key = stack.ssh.user_key("alice", ssh_grant.id)
    pg_grant = stack.pg.grant("alice", "testdb", stack.pg.ro)
    bob_grant = stack.ssh.grant("bob", "web-02")
    bob_key = stack.ssh.user_key("bob", bob_grant.id)

    live = subprocess.Popen(stack.ssh.ssh_argv(key, "web-01", "echo started; sleep 60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    bob_live = subprocess.Popen(stack.ssh.ssh_argv(bob_key, "web-02", "echo started; sleep 60"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert live.stdout is not None and bob_live.stdout is not None
    assert live.stdout.readline() == b"started\n" and bob_live.stdout.readline() == b"started\n"
    db = _pg_connect(stack, "alice", pg_grant.id)
    assert db.execute("select 1").fetchone() == (1,)

    # Only admins lock.
    code, reason, _ = _refused(alice.locks.CreateLock,
                               locks_pb2.CreateLockRequest(target="user", value="bob", reason="no"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "permission.denied"

    locks = admin.locks
    resp = locks.CreateLock(locks_pb2.CreateLockRequest(target="user", value="alice", reason="laptop stolen"))
    assert set(resp.ended_grants) == {ssh_grant.id, pg_grant.id}
    lock_id = resp.lock.id

    # Both brokers cut alice's live sessions, each saying why.
    _, err = live.communicate(timeout=30)
    assert live.returncode != 0 and b"revoked" in err and b"laptop stolen" in err, err
    with pytest.raises(psycopg.OperationalError) as info:
        db.execute("select pg_sleep(20)")
    assert info.value.sqlstate == "57P01" and "laptop stolen" in str(info.value)
    db.close()
    # Bob is not under the lock.
    assert bob_live.poll() is None

    # Nothing new under the lock: request, and the session of a credential issued before.
    d = duration_pb2.Duration(seconds=600)
    code, reason, detail = _refused(alice.access.CreateRequest, access_pb2.CreateRequestRequest(
        resource="web-01", login="root", duration=d, reason="again"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "lock.active" and "laptop stolen" in detail
    r = stack.ssh.ssh(key, "web-01", "echo should-not-run")
    # (the broker already knows the serial is revoked: it refuses before asking the control plane)
    assert r.returncode != 0 and b"should-not-run" not in r.stdout and b"revoked" in r.stderr, r.stderr

    # Survives a control plane restart.
    assert stack.cp is not None
    stack.cp.stop()
    stack.cp.start()
    admin, alice = stack.client("admin"), stack.client("alice")
    locks = admin.locks
    listed = locks.ListLocks(locks_pb2.ListLocksRequest()).locks
    assert [lk.id for lk in listed] == [lock_id] and listed[0].active and listed[0].target == "user"
    code, reason, _ = _refused(alice.access.CreateRequest, access_pb2.CreateRequestRequest(
        resource="testdb", role=stack.pg.ro, duration=d, reason="again"))
    assert reason == "lock.active"

    # Lifted: alice may ask again and connect through both brokers; the lock's history stays listed.
    lifted = locks.DeleteLock(locks_pb2.DeleteLockRequest(id=lock_id, reason="laptop found"))
    assert not lifted.active and lifted.lifted_by == "admin"
    assert locks.ListLocks(locks_pb2.ListLocksRequest()).locks == []
    assert [lk.id for lk in locks.ListLocks(locks_pb2.ListLocksRequest(include_inactive=True)).locks] == [lock_id]
    code, reason, _ = _refused(locks.DeleteLock, locks_pb2.DeleteLockRequest(id=lock_id))
    assert reason == "lock.not_active"
    again = stack.ssh.grant("alice", "web-01")
    key2 = stack.ssh.user_key("alice", again.id)
    r = wait_for(lambda: (res := stack.ssh.ssh(key2, "web-01", "echo back")).returncode == 0 and res,
                 timeout=30, interval=0.3)
    assert r.stdout == b"back\n"
    with _pg_connect(stack, "alice", stack.pg.grant("alice", "testdb", stack.pg.ro).id) as db2:
        assert db2.execute("select 2").fetchone() == (2,)

    # Audited: the lock, the grants it ended (with its id), the refusal, the lift.
    events = admin.audit.ListEvents(audit_pb2.ListEventsRequest(page_size=1000)).events
    types = [e.type for e in events]
    assert "lock.created" in types and "lock.lifted" in types
    revoked = [e for e in events if e.type == "grant.revoked" and lock_id in e.data_json]
    assert {e.subject for e in revoked} == {ssh_grant.id, pg_grant.id}
    assert any(e.type == "request.refused" and "lock.active" in e.data_json for e in events)
    bob_live.kill()
    bob_live.communicate(timeout=10)


def test_locks_on_a_resource_and_a_login_and_bad_input(stack) -> None:
    admin = stack.client("admin")
    locks = admin.locks
    for bad, why in [(locks_pb2.CreateLockRequest(target="user", reason="x"), "name the user"),
                     (locks_pb2.CreateLockRequest(target="host", value="a", reason="x"), "not `host`"),
                     (locks_pb2.CreateLockRequest(target="user", value="a", reason=" "), "needs a reason"),
                     (locks_pb2.CreateLockRequest(target="user", value="a", reason="x" * 5000), "limit")]:
        code, _, detail = _refused(locks.CreateLock, bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and why in detail, detail
    past = locks_pb2.CreateLockRequest(target="all", reason="freeze")
    past.until.FromSeconds(1000)
    assert _refused(locks.CreateLock, past)[0] == grpc.StatusCode.INVALID_ARGUMENT

    pg_grant = stack.pg.grant("bob", "testdb", stack.pg.ro)
    ssh_grant = stack.ssh.grant("bob", "web-02")
    lock = locks.CreateLock(locks_pb2.CreateLockRequest(target="resource", value="testdb", reason="incident"))
    assert pg_grant.id in lock.ended_grants and ssh_grant.id not in lock.ended_grants  # web-02 untouched
    code, reason, _ = _refused(stack.client("bob").access.IssueDatabaseToken,
                               access_pb2.IssueDatabaseTokenRequest(grant_id=pg_grant.id))
    assert reason in ("lock.active", "grant.not_active")
    stack.ssh.user_key("bob", ssh_grant.id)  # another resource: still served
    locks.DeleteLock(locks_pb2.DeleteLockRequest(id=lock.lock.id))

    login_lock = locks.CreateLock(locks_pb2.CreateLockRequest(target="login", value="root", reason="rotate"))
    assert ssh_grant.id in login_lock.ended_grants
    code, reason, _ = _refused(stack.client("bob").access.CreateRequest, access_pb2.CreateRequestRequest(
        resource="web-01", login="root", duration=duration_pb2.Duration(seconds=60), reason="x"))
    assert reason == "lock.active"
    locks.DeleteLock(locks_pb2.DeleteLockRequest(id=login_lock.lock.id))
