"""BrokerService: only identities with the broker role (server config `brokers:`) may call it.

The broker named in a message is ignored: the broker is the authenticated caller.
"""
from __future__ import annotations

from typing import Any

import grpc

from controlplane import convert
from controlplane.errors import JitError
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import require_role
from jitgate.v1 import broker_pb2, broker_pb2_grpc, types_pb2
from policy import Decision, Resource


# ReportRefusal carries what an unauthenticated client chose (user names, messages quoting
# them): each field is cut to its bound here rather than refused, so the refusal is still
# audited. Bounds: a user name is LOGIN@RESOURCE (2 x 64) with room to see what was tried;
# a message is one line; an address is at most an IPv6 address with port.
def _refusal_aggregate(request: broker_pb2.ReportRefusalRequest) -> dict[str, Any] | None:
    """An aggregate report's count, window and tallies (None for a single refusal); the
    Guard has already cut its text to `controlplane.bounds`."""
    if request.count <= 1:
        return None
    return {
        "count": int(request.count),
        "first_at": convert.from_ts(request.first_at).isoformat() if request.HasField("first_at") else None,
        "last_at": convert.from_ts(request.last_at).isoformat() if request.HasField("last_at") else None,
        "codes": {code: int(n) for code, n in sorted(request.codes.items(), key=lambda kv: -kv[1])},
        "samples": list(request.samples),
    }


def _opt_ts(msg: Any, field: str) -> Any:
    return convert.from_ts(getattr(msg, field)) if msg.HasField(field) else None


def _session_options(decision: Decision) -> types_pb2.SessionOptions:
    session = (convert.decision_dict(decision) or {}).get("session") or {}
    return types_pb2.SessionOptions(
        pty=bool(session.get("pty", False)), exec=bool(session.get("exec", False)),
        sftp=bool(session.get("sftp", False)), port_forwarding=bool(session.get("port_forwarding", False)),
    )


def _target(resource: Resource) -> broker_pb2.Target:
    def attr(name: str) -> str:
        value = getattr(resource, name, "")
        return str(value) if value else ""

    return broker_pb2.Target(
        name=attr("name"), kind=attr("kind"), address=attr("address"), host_key=attr("host_key"),
        host_ca=attr("host_ca"), database=attr("database"), credentials=attr("credentials"),
    )


class BrokerServicer(broker_pb2_grpc.BrokerServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.d = deps

    def _broker(self) -> str:
        return require_role("broker", "call the broker service").name

    async def AuthorizeSession(
        self, request: broker_pb2.AuthorizeSessionRequest, context: grpc.aio.ServicerContext
    ) -> broker_pb2.AuthorizeSessionResponse:
        broker = self._broker()
        which = request.WhichOneof("credential")
        if which is None:
            raise JitError("credential.invalid", "no credential presented (ssh certificate or database token)")
        ssh = request.ssh if which == "ssh" else None
        token = request.database.token if which == "database" else ""
        session, grant, resource = await self.d.run(
            self.d.core.sessions.authorize_session, broker, request.kind, request.resource, request.login, request.role,
            ssh.key_id if ssh else "", ssh.serial if ssh else 0, token, request.client_address,
            request.channel, not request.refusal_counted,
        )
        out = broker_pb2.AuthorizeSessionResponse(
            session_id=session.id, grant=convert.access_request(grant),
            session=_session_options(grant.decision), target=_target(resource),
        )
        if grant.expires_at is not None:
            out.expires_at.CopyFrom(convert.ts_at(grant.expires_at))
        # The grace period's one source: the policies' `settings.grace_period` (policy/model.py
        # holds its default); the broker warns with what it is sent.
        out.grace_period.CopyFrom(convert.dur_of(self.d.policies.current.settings.grace_period))
        return out

    async def IssueUpstreamCertificate(
        self, request: broker_pb2.IssueUpstreamCertificateRequest, context: grpc.aio.ServicerContext
    ) -> broker_pb2.IssueUpstreamCertificateResponse:
        broker = self._broker()
        cert, valid_before = await self.d.run(
            self.d.core.credentials.issue_upstream_certificate, broker, request.session_id, request.public_key)
        out = broker_pb2.IssueUpstreamCertificateResponse(certificate=cert)
        out.valid_before.CopyFrom(convert.ts_at(valid_before))
        return out

    async def ReportSessionEnd(
        self, request: broker_pb2.ReportSessionEndRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.Session:
        broker = self._broker()
        record = await self.d.run(
            self.d.core.sessions.end_session,
            broker,
            request.session_id,
            request.reason,
            request.bytes_in,
            request.bytes_out,
            request.recording_ref,
            request.recording_hash,
            _opt_ts(request, "ended_at"),
            _opt_ts(request, "last_activity_at"),
        )
        return convert.session(record)

    async def ReportActivity(
        self, request: broker_pb2.ReportActivityRequest, context: grpc.aio.ServicerContext
    ) -> broker_pb2.ReportActivityResponse:
        broker = self._broker()
        await self.d.run(
            self.d.core.sessions.report_activity,
            broker,
            request.session_id,
            _opt_ts(request, "last_activity_at"),
            request.bytes_in,
            request.bytes_out,
        )
        return broker_pb2.ReportActivityResponse()

    async def ReportRefusal(
        self, request: broker_pb2.ReportRefusalRequest, context: grpc.aio.ServicerContext
    ) -> broker_pb2.ReportRefusalResponse:
        broker = self._broker()
        await self.d.run(
            self.d.core.sessions.record_refusal,
            broker,
            request.kind,
            request.user,
            request.resource,
            request.code,
            request.message,
            request.client_address,
            _refusal_aggregate(request),
        )
        return broker_pb2.ReportRefusalResponse()

    async def GetTrust(
        self, request: broker_pb2.GetTrustRequest, context: grpc.aio.ServicerContext
    ) -> broker_pb2.Trust:
        self._broker()
        serials = await self.d.run_slow(self.d.core.credentials.revoked_serials)
        return broker_pb2.Trust(
            user_ca_keys=self.d.pki.ssh_user_ca.trusted_public_key_lines(),
            revoked_serials=serials,
            ca_pem=self.d.pki.ca_pem.decode(),
        )
