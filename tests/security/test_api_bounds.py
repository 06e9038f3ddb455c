"""Issue 13, item 1 and the Low "bad gRPC input" item: the API's bounds, against a real control plane.

Every free-text field has a bound checked at the API (INVALID_ARGUMENT naming the
field and the limit); enum values, durations and day counts outside their range
are INVALID_ARGUMENT, not INTERNAL or a stored DENIED; a message over the
transport limit is refused before it is read; rows stored before the bounds
(a 5 MB reason) are sent cut and marked, so listings, exports, the dashboard
and the event stream keep working.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import duration_pb2

from controlplane import bounds
from jitgate import wire
from jitgate.v1 import access_pb2, audit_pb2, broker_pb2, types_pb2
from tests.cluster import NO_MODEL, ControlPlane

HUGE = 5 * 1024 * 1024  # the attack: a reason of several megabytes


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("bounds"), config=NO_MODEL) as plane:
        yield plane


def _create(cp: ControlPlane, **fields: object) -> access_pb2.CreateRequestResponse:
    req = access_pb2.CreateRequestRequest(resource="web-dev-01", login="deploy", reason="deploy fix",
                                          duration=duration_pb2.Duration(seconds=3600))
    for name, value in fields.items():
        if isinstance(value, duration_pb2.Duration):
            getattr(req, name).CopyFrom(value)
        else:
            setattr(req, name, value)
    return cp.client("alice").access.CreateRequest(req, timeout=15)


def _refused(call: object, *args: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=15)  # type: ignore[operator]
    return info.value


def _count_requests(cp: ControlPlane) -> int:
    resp = cp.client("admin").access.ListRequests(access_pb2.ListRequestsRequest(page_size=30), timeout=15)
    return len(resp.requests)


def test_oversized_reason_is_refused_naming_field_and_limit(cp: ControlPlane) -> None:
    before = _count_requests(cp)
    with pytest.raises(grpc.RpcError) as info:
        _create(cp, reason="x" * (bounds.FREE_TEXT + 1))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "`reason`" in info.value.details() and str(bounds.FREE_TEXT) in info.value.details()
    for field, limit in (("ticket", bounds.TICKET), ("resource", bounds.NAME)):
        with pytest.raises(grpc.RpcError) as info:
            _create(cp, **{field: "t" * (limit + 1)})
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"`{field}`" in info.value.details() and str(limit) in info.value.details()
    assert _count_requests(cp) == before  # nothing stored


def test_free_text_of_every_decision_is_bounded(cp: ControlPlane) -> None:
    grant = _create(cp).request
    long = "y" * (bounds.FREE_TEXT + 1)
    admin, alice = cp.client("admin").access, cp.client("alice").access
    for call, msg, field in (
        (alice.Extend, access_pb2.ExtendRequest(id=grant.id, justification=long,
                                                duration=duration_pb2.Duration(seconds=60)), "justification"),
        (admin.Revoke, access_pb2.RevokeRequest(id=grant.id, reason=long), "reason"),
        (admin.Approve, access_pb2.DecideRequest(id=grant.id, comment=long), "comment"),
        (admin.Review, access_pb2.ReviewRequest(id=grant.id, comment=long), "comment"),
        (admin.GetRequest, access_pb2.GetRequestRequest(id="i" * 65), "id"),
        (alice.IssueSshCertificate, access_pb2.IssueSshCertificateRequest(
            grant_id=grant.id, public_key="ssh-ed25519 " + "A" * 9000), "public_key"),
        (admin.ListRequests, access_pb2.ListRequestsRequest(page_token="9" * 40), "page_token"),
        (admin.WatchEvents, access_pb2.WatchEventsRequest(types=["t"] * 65), "types"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            result = call(msg, timeout=15)
            if field == "types":
                next(iter(result))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, info.value.details())
        assert f"`{field}`" in info.value.details()
    state = admin.GetRequest(access_pb2.GetRequestRequest(id=grant.id), timeout=15).state
    assert state == types_pb2.REQUEST_STATE_ACTIVE


def test_bad_enum_days_and_durations_are_invalid_argument(cp: ControlPlane) -> None:
    admin = cp.client("admin")
    err = _refused(admin.access.ListRequests, access_pb2.ListRequestsRequest(states=[99]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "`states`" in err.details()
    stream = admin.audit.ExportRequests(audit_pb2.ExportRequestsRequest(days=2**31 - 1), timeout=15)
    with pytest.raises(grpc.RpcError) as info:
        list(stream)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "`days`" in info.value.details()
    err = _refused(admin.access.ListRequests, access_pb2.ListRequestsRequest(page_size=-1))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "`page_size`" in err.details()

    before = _count_requests(cp)
    for seconds in (10**12, 0, -5):
        with pytest.raises(grpc.RpcError) as info:
            _create(cp, duration=duration_pb2.Duration(seconds=seconds))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "`duration`" in info.value.details()
    assert _count_requests(cp) == before  # not stored as DENIED "internal error in the policy engine"

    grant = _create(cp).request
    err = _refused(cp.client("alice").access.Extend, access_pb2.ExtendRequest(
        id=grant.id, justification="more", duration=duration_pb2.Duration(seconds=10**12)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "`duration`" in err.details()


def test_message_over_the_transport_limit_is_refused(cp: ControlPlane) -> None:
    before = _count_requests(cp)
    with pytest.raises(grpc.RpcError) as info:
        _create(cp, reason="z" * (wire.MAX_MESSAGE_BYTES + 1024))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server refuses it too, whatever the client allows itself.
    raw = grpc.secure_channel(cp.address, cp.credentials("alice"),
                              options=[("grpc.max_send_message_length", 16 * 1024 * 1024)])
    try:
        stub = access_pb2_grpc_stub(raw)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateRequest(access_pb2.CreateRequestRequest(
                resource="web-dev-01", login="deploy", reason="z" * HUGE), timeout=15)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        raw.close()
    assert _count_requests(cp) == before


def access_pb2_grpc_stub(channel: grpc.Channel) -> object:
    from jitgate.v1 import access_pb2_grpc

    return access_pb2_grpc.AccessServiceStub(channel)


def _store_legacy_row(cp: ControlPlane) -> str:
    """A live grant whose reason and audit data hold 5 MB each, as an older version stored them."""
    grant = _create(cp).request
    huge = "L" * HUGE
    with sqlite3.connect(cp.data.db_path, timeout=30) as db:
        db.execute("UPDATE requests SET reason = ?, ticket = ? WHERE id = ?", (huge, huge, grant.id))
        db.execute("UPDATE audit SET data = ? WHERE subject = ? AND type = 'request.created'",
                   (f'{{"reason": "{huge}"}}', grant.id))
    return grant.id


def test_legacy_oversized_row_does_not_break_listings_or_the_stream(cp: ControlPlane) -> None:
    grant_id = _store_legacy_row(cp)
    admin = cp.client("admin")
    listed = admin.access.ListRequests(access_pb2.ListRequestsRequest(page_size=1000), timeout=15)
    row = next(r for r in listed.requests if r.id == grant_id)
    assert "cut by jitgate" in row.reason and len(row.reason.encode()) < bounds.FREE_TEXT + 100
    assert "cut by jitgate" in row.ticket
    assert len(listed.requests) <= bounds.MAX_REQUEST_PAGE
    assert admin.access.GetDashboard(access_pb2.GetDashboardRequest(), timeout=15).active
    lines = list(admin.audit.ExportRequests(audit_pb2.ExportRequestsRequest(days=1), timeout=15))
    assert any(grant_id in line.json and "cut by jitgate" in line.json for line in lines)
    events = admin.audit.ListEvents(audit_pb2.ListEventsRequest(subject=grant_id), timeout=15).events
    assert any("cut by jitgate" in e.data_json for e in events)
    assert list(admin.audit.ExportEvents(audit_pb2.ExportEventsRequest(), timeout=15))

    # The broker's stream: the snapshot carries the row (cut) and ends; nothing over the limit.
    stream = cp.client("broker").access.WatchEvents(access_pb2.WatchEventsRequest(), timeout=15)
    seen = None
    for event in stream:
        if event.type == "snapshot" and event.request.id == grant_id:
            seen = event.request
        if event.type == "snapshot.end":
            stream.cancel()
            break
    assert seen is not None and "cut by jitgate" in seen.reason


def test_broker_refusal_text_is_cut_not_refused(cp: ControlPlane) -> None:
    """A refusal report carries attacker-chosen text: it is audited, cut, never refused."""
    cp.client("broker").broker.ReportRefusal(broker_pb2.ReportRefusalRequest(
        kind="postgres", user="u" * 9000, resource="demo-db", code="auth.refused", message="m" * 9000,
        client_address="127.0.0.1:1"), timeout=15)
    events = cp.client("admin").audit.ListEvents(audit_pb2.ListEventsRequest(page_size=1000), timeout=15).events
    assert not any("u" * 9000 in e.data_json or "m" * 9000 in e.data_json for e in events)


def test_every_request_field_has_a_bound() -> None:
    """The table is complete: compiling it raised MissingBound otherwise; every key names a real field."""
    fields = {f"{d.name}.{f.name}" for d in bounds.request_types() for f in d.fields}
    nested = {"SshCredential.key_id", "SshCredential.principal", "SshCredential.certificate",
              "SshCredential.serial", "DatabaseCredential.token"}
    assert set(bounds.FIELDS) <= fields | nested


def test_keepalive_and_message_limits_agree() -> None:
    server = dict(wire.server_options())
    client = dict(wire.client_options())
    assert client["grpc.keepalive_time_ms"] >= server["grpc.http2.min_ping_interval_without_data_ms"] * 2
    assert server["grpc.keepalive_permit_without_calls"] == client["grpc.keepalive_permit_without_calls"] == 1
    for key in ("grpc.max_send_message_length", "grpc.max_receive_message_length"):
        assert server[key] == client[key] == wire.MAX_MESSAGE_BYTES
    assert bounds.MAX_REQUEST_PAGE * bounds.MAX_ROW_BYTES < wire.MAX_MESSAGE_BYTES
    assert bounds.MAX_SESSION_PAGE * bounds.MAX_SESSION_ROW_BYTES < wire.MAX_MESSAGE_BYTES
