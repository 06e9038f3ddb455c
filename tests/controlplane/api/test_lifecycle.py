"""The life of a request over real gRPC + mTLS, from a Python client: happy paths and refusals."""
from __future__ import annotations

import threading

import grpc

from controlplane.errors import grpc_status_name
from jitgate.v1 import access_pb2, audit_pb2, types_pb2
from tests.controlplane.api.conftest import duration, refused, wait_state

S = types_pb2
# The status the core's one error table gives a vote on a request no longer pending.
NOT_PENDING = grpc.StatusCode[grpc_status_name("approval.not_pending")]
PROD = dict(resource="web-prod-01", login="deploy", reason="rotate certificates", ticket="OPS-7")


def create(client, **kw) -> types_pb2.AccessRequest:
    seconds = kw.pop("seconds", 1800)
    msg = access_pb2.CreateRequestRequest(**kw)
    msg.duration.CopyFrom(duration(seconds))
    return client.access.CreateRequest(msg).request


def approve(client, id_: str, comment: str = "") -> types_pb2.AccessRequest:
    return client.access.Approve(access_pb2.DecideRequest(id=id_, comment=comment))


def test_multi_level_approval_with_every_refusal(cp):
    alice, bob, sam, sara, dave = (cp.client(n) for n in ("alice", "bob", "sam", "sara", "dave"))
    req = create(alice, **PROD)
    assert req.state == S.REQUEST_STATE_PENDING
    assert [list(lv.approvers) for lv in req.decision.approval.levels] == [["manager", "owner"], ["group:security"]]
    assert req.decision.rules == ["prod-needs-manager-and-security"]
    assert req.decision.policy_version.startswith("sha256:")
    assert req.current_level == 0

    detail = refused(lambda: approve(alice, req.id), grpc.StatusCode.PERMISSION_DENIED)
    assert "own" in detail
    refused(lambda: approve(dave, req.id), grpc.StatusCode.PERMISSION_DENIED)
    # sam (security) is eligible only for the second level, which is not open yet.
    detail = refused(lambda: approve(sam, req.id), grpc.StatusCode.PERMISSION_DENIED)
    assert "level" in detail

    after_first = approve(sara, req.id, "owner ok")  # sara: owner (level 1) and security (level 2)
    assert after_first.state == S.REQUEST_STATE_PENDING
    assert after_first.current_level == 1
    # Nobody counts for two levels of one request.
    refused(lambda: approve(sara, req.id), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: approve(bob, req.id), grpc.StatusCode.PERMISSION_DENIED)  # manager, not security

    active = approve(sam, req.id)
    assert active.state == S.REQUEST_STATE_ACTIVE
    assert [(a.approver, a.level) for a in active.approvals] == [("sara", 0), ("sam", 1)]
    assert active.expires_at.ToSeconds() - active.activated_at.ToSeconds() == 1800
    assert "not waiting for approval" in refused(lambda: approve(bob, req.id), NOT_PENDING)


def test_approval_race_activates_once(cp):
    alice, sam, sara = cp.client("alice"), cp.client("sam"), cp.client("sara")
    req = create(alice, **PROD)
    approve(cp.client("bob"), req.id)  # level 1 by the manager; sam and sara race for level 2
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def race(name: str, client) -> None:
        barrier.wait()
        try:
            results[name] = approve(client, req.id).state
        except grpc.RpcError as e:
            results[name] = e.code()

    threads = [threading.Thread(target=race, args=(n, c)) for n, c in (("sam", sam), ("sara", sara))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results.values())) == sorted(
        [str(S.REQUEST_STATE_ACTIVE), str(NOT_PENDING)]), results
    events = cp.client("admin").audit.ListEvents(audit_pb2.ListEventsRequest(subject=req.id, page_size=100)).events
    assert [e.type for e in events].count("grant.activated") == 1


def test_auto_approval_and_credentials_for_brokers(cp):
    alice, broker = cp.client("alice"), cp.client("broker")
    req = create(alice, resource="dev-db", role="readonly", reason="check a report", seconds=600)
    assert req.state == S.REQUEST_STATE_ACTIVE
    assert req.decision.approval.mode == "auto"
    token = alice.access.IssueDatabaseToken(access_pb2.IssueDatabaseTokenRequest(grant_id=req.id))
    assert token.token and token.database == "dev" and token.ca_pem.startswith("-----BEGIN CERTIFICATE")

    from jitgate.v1 import broker_pb2

    auth = broker.broker.AuthorizeSession(broker_pb2.AuthorizeSessionRequest(
        broker="someone-else", kind="postgres", resource="dev-db", role="readonly",
        client_address="127.0.0.1:5555", database=broker_pb2.DatabaseCredential(token=token.token), channel="pg"))
    assert auth.session_id and auth.grant.id == req.id
    assert auth.target.address == "127.0.0.1:5432" and auth.target.database == "dev"
    assert auth.expires_at == req.expires_at
    assert auth.grace_period.seconds == 60
    session = alice.access.GetSession(access_pb2.GetSessionRequest(id=auth.session_id))
    assert session.broker == "broker"  # the authenticated caller, not the name in the message
    ended = broker.broker.ReportSessionEnd(broker_pb2.ReportSessionEndRequest(
        session_id=auth.session_id, reason="client_exit", bytes_in=10, bytes_out=20))
    assert ended.end_reason == "client_exit" and ended.HasField("ended_at")
    listed = alice.access.ListSessions(access_pb2.ListSessionsRequest(grant_id=req.id)).sessions
    assert [s.id for s in listed] == [auth.session_id]

    refused(lambda: broker.broker.AuthorizeSession(broker_pb2.AuthorizeSessionRequest(
        kind="postgres", resource="dev-db", role="readonly",
        database=broker_pb2.DatabaseCredential(token="forged"))), grpc.StatusCode.UNAUTHENTICATED)


def test_non_broker_cannot_call_broker_service(cp):
    from jitgate.v1 import broker_pb2

    detail = refused(lambda: cp.client("alice").broker.GetTrust(broker_pb2.GetTrustRequest()),
                     grpc.StatusCode.PERMISSION_DENIED)
    assert "broker" in detail
    refused(lambda: cp.client("admin").broker.GetTrust(broker_pb2.GetTrustRequest()),
            grpc.StatusCode.PERMISSION_DENIED)
    trust = cp.client("broker").broker.GetTrust(broker_pb2.GetTrustRequest())
    assert trust.user_ca_keys[0].startswith("ssh-ed25519 ") and "BEGIN CERTIFICATE" in trust.ca_pem


def test_break_glass_then_review(cp):
    alice, sam, dave = cp.client("alice"), cp.client("sam"), cp.client("dave")
    req = create(alice, resource="web-prod-01", login="deploy", reason="outage: orders down", emergency=True,
                 seconds=900)
    assert req.state == S.REQUEST_STATE_ACTIVE
    assert req.decision.approval.mode == "break_glass"
    assert req.review_state == S.REVIEW_STATE_OWED
    review = access_pb2.ReviewRequest(id=req.id, flag=False, comment="justified")
    refused(lambda: dave.access.Review(review), grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: alice.access.Review(review), grpc.StatusCode.PERMISSION_DENIED)
    done = sam.access.Review(review)
    assert done.review_state == S.REVIEW_STATE_REVIEWED
    assert "owes no review" in refused(lambda: sam.access.Review(review), grpc.StatusCode.PERMISSION_DENIED)


def test_extension_limit_and_duration_over_max(cp):
    alice = cp.client("alice")
    req = create(alice, resource="web-dev-01", login="deploy", reason="long deploy", seconds=600)
    for n in (1, 2):
        ext = access_pb2.ExtendRequest(id=req.id, justification=f"still deploying {n}")
        ext.duration.CopyFrom(duration(300))
        got = alice.access.Extend(ext)
        assert got.extensions_used == n
    assert got.expires_at.ToSeconds() - req.expires_at.ToSeconds() == 600
    ext = access_pb2.ExtendRequest(id=req.id, justification="one more")
    ext.duration.CopyFrom(duration(300))
    detail = refused(lambda: alice.access.Extend(ext), grpc.StatusCode.FAILED_PRECONDITION)
    assert "2" in detail
    no_reason = access_pb2.ExtendRequest(id=req.id)
    no_reason.duration.CopyFrom(duration(300))
    refused(lambda: alice.access.Extend(no_reason), grpc.StatusCode.INVALID_ARGUMENT)

    over = create(alice, resource="web-prod-01", login="deploy", reason="long", seconds=3 * 3600)
    assert over.state == S.REQUEST_STATE_DENIED
    assert "2h" in over.message


def test_policy_deny_and_bad_input(cp):
    cora, alice = cp.client("cora"), cp.client("alice")
    denied = create(cora, resource="orders-db", role="readonly", reason="report")
    assert denied.state == S.REQUEST_STATE_DENIED
    assert denied.message == "contractors have no production access"
    refused(lambda: create(alice, resource="nope", login="deploy", reason="x"), grpc.StatusCode.NOT_FOUND)
    refused(lambda: create(alice, resource="web-dev-01", login="nobody", reason="x"),
            grpc.StatusCode.INVALID_ARGUMENT)
    refused(lambda: create(alice, resource="web-dev-01", login="deploy", reason=""),
            grpc.StatusCode.INVALID_ARGUMENT)
    refused(lambda: alice.access.GetRequest(access_pb2.GetRequestRequest(id="0000")), grpc.StatusCode.NOT_FOUND)


def test_revocation_and_cancel(cp):
    alice, dave, ada = cp.client("alice"), cp.client("dave"), cp.client("ada")
    req = create(alice, resource="web-dev-01", login="root", reason="debug")
    refused(lambda: dave.access.Revoke(access_pb2.RevokeRequest(id=req.id, reason="no")),
            grpc.StatusCode.PERMISSION_DENIED)
    revoked = ada.access.Revoke(access_pb2.RevokeRequest(id=req.id, reason="incident closed"))
    assert revoked.state == S.REQUEST_STATE_REVOKED and revoked.HasField("ended_at")
    # Ended grants stay queryable.
    assert alice.access.GetRequest(access_pb2.GetRequestRequest(id=req.id)).state == S.REQUEST_STATE_REVOKED

    pending = create(alice, **PROD)
    refused(lambda: dave.access.Cancel(access_pb2.CancelRequest(id=pending.id)), grpc.StatusCode.PERMISSION_DENIED)
    cancelled = alice.access.Cancel(access_pb2.CancelRequest(id=pending.id))
    assert cancelled.state == S.REQUEST_STATE_CANCELLED


def test_expiry_seen_through_watch(cp):
    alice = cp.client("alice")
    stream = alice.access.WatchEvents(access_pb2.WatchEventsRequest(types=["grant."]))
    try:
        it = iter(stream)
        while next(it).type != "snapshot.end":
            pass
        req = create(alice, resource="dev-db", role="readonly", reason="quick look", seconds=2)
        for event in it:
            if event.type == "grant.expired" and event.request.id == req.id:
                assert event.request.state == S.REQUEST_STATE_EXPIRED
                break
    finally:
        stream.cancel()
    got = wait_state(alice, req.id, S.REQUEST_STATE_EXPIRED, timeout=1)
    assert got.end_reason


def test_dashboard_and_to_approve(cp):
    alice, bob = cp.client("alice"), cp.client("bob")
    req = create(alice, **PROD)
    mine = bob.access.ListRequests(access_pb2.ListRequestsRequest(to_approve=True)).requests
    assert req.id in [r.id for r in mine]
    assert req.id not in [r.id for r in cp.client("sam").access.ListRequests(
        access_pb2.ListRequestsRequest(to_approve=True)).requests]  # level 2 is not open
    dash = cp.client("ada").access.GetDashboard(access_pb2.GetDashboardRequest())
    assert req.id in [r.id for r in dash.pending]
    assert 0.0 <= dash.approval_rate <= 1.0


def test_ssh_certificate_then_broker_authorizes_it(cp):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from jitgate.v1 import broker_pb2

    alice, broker = cp.client("alice"), cp.client("broker")
    grant = create(alice, resource="web-dev-01", login="deploy", reason="ssh in", seconds=900)
    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    refused(lambda: cp.client("bob").access.IssueSshCertificate(access_pb2.IssueSshCertificateRequest(
        grant_id=grant.id, public_key=public)), grpc.StatusCode.PERMISSION_DENIED)  # not bob's grant
    cert = alice.access.IssueSshCertificate(access_pb2.IssueSshCertificateRequest(grant_id=grant.id, public_key=public))
    assert cert.certificate.startswith("ssh-ed25519-cert-v01@openssh.com ")
    assert list(cert.principals) == ["deploy@web-dev-01"] and cert.serial > 0
    assert cert.valid_before.ToSeconds() == grant.expires_at.ToSeconds()

    auth = broker.broker.AuthorizeSession(broker_pb2.AuthorizeSessionRequest(
        kind="ssh", resource="web-dev-01", login="deploy", client_address="127.0.0.1:40000", channel="shell",
        ssh=broker_pb2.SshCredential(key_id=grant.id, serial=cert.serial, principal="deploy@web-dev-01",
                                     certificate=cert.certificate)))
    assert auth.grant.id == grant.id and auth.session.pty and not auth.session.sftp
    upstream = broker.broker.IssueUpstreamCertificate(broker_pb2.IssueUpstreamCertificateRequest(
        session_id=auth.session_id, public_key=public))
    assert upstream.certificate.startswith("ssh-ed25519-cert-v01@openssh.com ")

    cp.client("ada").access.Revoke(access_pb2.RevokeRequest(id=grant.id, reason="done"))
    assert cert.serial in broker.broker.GetTrust(broker_pb2.GetTrustRequest()).revoked_serials
    detail = refused(lambda: broker.broker.AuthorizeSession(broker_pb2.AuthorizeSessionRequest(
        kind="ssh", resource="web-dev-01", login="deploy", channel="shell",
        ssh=broker_pb2.SshCredential(key_id=grant.id, serial=cert.serial))), grpc.StatusCode.UNAUTHENTICATED)
    assert "revoked" in detail
