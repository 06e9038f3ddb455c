"""AdminService: identities for people and brokers, and the SSH CA public keys."""
from __future__ import annotations

import grpc

from controlplane.errors import JitError
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import require_role
from jitgate.v1 import admin_pb2, admin_pb2_grpc

_MAX_DAYS = 365


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.d = deps

    async def IssueIdentity(
        self, request: admin_pb2.IssueIdentityRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.IssueIdentityResponse:
        admin = require_role("admin", "issue identities")
        days = request.days or 90
        if not 1 <= days <= _MAX_DAYS:
            raise JitError("invalid.argument", f"days must be between 1 and {_MAX_DAYS}, got {days}")
        bundle = await self.d.run_slow(self.d.pki.x509_ca.issue_client_certificate, request.name, days=days)
        await self.d.run(self.d.core.audit.record_identity_issued, admin.name, request.name)
        return admin_pb2.IssueIdentityResponse(
            ca_pem=self.d.pki.ca_pem.decode(), cert_pem=bundle.cert_pem.decode(), key_pem=bundle.key_pem.decode()
        )

    async def GetSshCa(
        self, request: admin_pb2.GetSshCaRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetSshCaResponse:
        ca = self.d.pki.ssh_upstream_ca if request.upstream else self.d.pki.ssh_user_ca
        return admin_pb2.GetSshCaResponse(public_key_lines=ca.trusted_public_key_lines())
