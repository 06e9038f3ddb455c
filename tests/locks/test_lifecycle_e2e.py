"""Grant life cycle through the real SSH broker: on first use (the clock starts at the first
session; unused, the grant lapses as CLAIM_EXPIRED), single use (a second session is refused;
the grant ends with its session), and release by the requester (live sessions are cut)."""
from __future__ import annotations

import subprocess
import time

import grpc
import pytest

from jitgate.status import reason_of
from jitgate.v1 import access_pb2, lifecycle_pb2, types_pb2
from tests.broker.ssh.harness import wait_for
from tests.locks.conftest import CLAIM_WITHIN

pytestmark = pytest.mark.timeout(120)


def _get(stack, grant_id: str) -> types_pb2.AccessRequest:
    return stack.client("admin").access.GetRequest(access_pb2.GetRequestRequest(id=grant_id))


def _ts(t) -> float:
    return t.seconds + t.nanos / 1e9


def test_on_first_use_the_clock_starts_at_the_first_session_and_an_unused_grant_lapses(stack) -> None:
    used = stack.ssh.grant("alice", "firstuse-01", seconds=3)
    unused = stack.ssh.grant("bob", "firstuse-01", seconds=3)
    approved = _ts(used.activated_at)
    # Approved, waiting: the deadline is the claim deadline, and the decision says so.
    assert abs(_ts(used.expires_at) - (approved + CLAIM_WITHIN)) < 1
    key = stack.ssh.user_key("alice", used.id)  # the credential does not start the clock
    time.sleep(1)
    assert abs(_ts(_get(stack, used.id).expires_at) - (approved + CLAIM_WITHIN)) < 1

    live = subprocess.Popen(stack.ssh.ssh_argv(key, "firstuse-01", "echo started; sleep 60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert live.stdout is not None and live.stdout.readline() == b"started\n"
    claimed = _get(stack, used.id)
    assert _ts(claimed.activated_at) >= approved + 1  # the session started the clock
    assert abs(_ts(claimed.expires_at) - _ts(claimed.activated_at) - 3) < 0.01
    assert _ts(claimed.expires_at) > approved + CLAIM_WITHIN  # past the claim deadline: its own window

    # Nobody used the other grant within its claim window: CLAIM_EXPIRED, and its credential is refused.
    lapsed = wait_for(lambda: (g := _get(stack, unused.id)).state != types_pb2.REQUEST_STATE_ACTIVE and g,
                      timeout=15, interval=0.2)
    assert lapsed.state == types_pb2.REQUEST_STATE_CLAIM_EXPIRED, lapsed
    with pytest.raises(grpc.RpcError) as info:
        stack.client("bob").access.IssueSshCertificate(access_pb2.IssueSshCertificateRequest(
            grant_id=unused.id, public_key=stack.ssh.new_key().with_suffix(".pub").read_text().strip()))
    assert reason_of(info.value) == "grant.not_active"

    # The claimed grant runs its own 3 s and is cut at its end, not at the claim deadline.
    _, err = live.communicate(timeout=30)
    assert live.returncode != 0 and b"expired at" in err, err
    assert time.time() >= _ts(claimed.expires_at) - 0.5


def test_a_single_use_grant_refuses_a_second_session_and_ends_with_its_session(stack) -> None:
    grant = stack.ssh.grant("alice", "single-01")
    key = stack.ssh.user_key("alice", grant.id)
    first = subprocess.Popen(stack.ssh.ssh_argv(key, "single-01", "echo first; sleep 2"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert first.stdout is not None and first.stdout.readline() == b"first\n"
    second = stack.ssh.ssh(key, "single-01", "echo second")
    assert second.returncode != 0 and b"second" not in second.stdout
    assert b"all were used (single use)" in second.stderr, second.stderr
    first.communicate(timeout=30)
    assert first.returncode == 0
    ended = wait_for(lambda: (g := _get(stack, grant.id)).state != types_pb2.REQUEST_STATE_ACTIVE and g, timeout=10)
    assert ended.state == types_pb2.REQUEST_STATE_EXPIRED and "used" in ended.end_reason, ended
    third = stack.ssh.ssh(key, "single-01", "echo third")
    assert third.returncode != 0 and b"third" not in third.stdout


def test_release_ends_the_grant_and_cuts_its_sessions(stack) -> None:
    grant = stack.ssh.grant("alice", "web-02")
    key = stack.ssh.user_key("alice", grant.id)
    live = subprocess.Popen(stack.ssh.ssh_argv(key, "web-02", "echo started; sleep 60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert live.stdout is not None and live.stdout.readline() == b"started\n"
    with pytest.raises(grpc.RpcError) as info:  # only its requester releases it
        stack.client("bob").lifecycle.Release(lifecycle_pb2.ReleaseRequest(id=grant.id))
    assert reason_of(info.value) == "permission.denied"
    released = stack.client("alice").lifecycle.Release(lifecycle_pb2.ReleaseRequest(id=grant.id))
    assert released.state == types_pb2.REQUEST_STATE_EXPIRED and released.end_reason == "released by alice"
    _, err = live.communicate(timeout=30)
    assert live.returncode != 0 and b"closing the session" in err, err
    with pytest.raises(grpc.RpcError) as info:
        stack.client("alice").lifecycle.Release(lifecycle_pb2.ReleaseRequest(id=grant.id))
    assert reason_of(info.value) == "grant.not_active"


def test_a_scheduled_window_activates_on_time_and_its_sessions_are_cut_at_its_end(stack) -> None:
    from google.protobuf import duration_pb2, timestamp_pb2

    alice = stack.client("alice")
    start = timestamp_pb2.Timestamp(seconds=int(time.time()) + 2)  # whole seconds: the store keeps microseconds
    resp = alice.access.CreateRequest(access_pb2.CreateRequestRequest(
        resource="window-01", login="root", duration=duration_pb2.Duration(seconds=3), reason="window",
        start=start))
    grant = resp.request
    # Approved now (auto) for the window: it begins at its start and lasts its duration from there.
    assert grant.state == types_pb2.REQUEST_STATE_ACTIVE and grant.start == start
    assert grant.activated_at == start and _ts(grant.expires_at) == pytest.approx(_ts(start) + 3)
    key = stack.ssh.new_key()
    ask = access_pb2.IssueSshCertificateRequest(grant_id=grant.id,
                                                public_key=key.with_suffix(".pub").read_text().strip())
    with pytest.raises(grpc.RpcError) as info:
        alice.access.IssueSshCertificate(ask)
    assert reason_of(info.value) == "grant.not_started" and "starts at" in info.value.details()
    # Too far ahead, or in the past: refused with the reason.
    far = timestamp_pb2.Timestamp(seconds=int(time.time()) + 8 * 86400)
    denied = alice.access.CreateRequest(access_pb2.CreateRequestRequest(
        resource="window-01", login="root", duration=duration_pb2.Duration(seconds=60), reason="w", start=far))
    assert denied.request.state == types_pb2.REQUEST_STATE_DENIED and "max_schedule_ahead" in denied.request.message
    with pytest.raises(grpc.RpcError) as info:
        alice.access.CreateRequest(access_pb2.CreateRequestRequest(
            resource="window-01", login="root", duration=duration_pb2.Duration(seconds=60), reason="w",
            start=timestamp_pb2.Timestamp(seconds=int(time.time()) - 3600)))
    assert reason_of(info.value) == "invalid.argument" and "in the past" in info.value.details()

    cert = wait_for(lambda: _try_cert(alice, ask), timeout=10, interval=0.1)
    assert time.time() >= _ts(start) - 0.05
    certfile = key.parent / (key.name + "-cert.pub")
    certfile.write_text(cert.certificate + "\n")
    from tests.broker.ssh.harness import UserKey

    live = subprocess.Popen(stack.ssh.ssh_argv(UserKey(key, certfile, grant.id), "window-01", "echo in; sleep 60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert live.stdout is not None and live.stdout.readline() == b"in\n"
    _, err = live.communicate(timeout=30)
    assert live.returncode != 0 and b"expired at" in err, err
    assert time.time() >= _ts(grant.expires_at) - 0.5


def _try_cert(client, ask):
    try:
        return client.access.IssueSshCertificate(ask)
    except grpc.RpcError as e:
        if reason_of(e) != "grant.not_started":
            raise
        return None
