"""GrantLifecycleService: a requester releases a grant (controlplane/grants.py:release)."""
from __future__ import annotations

import grpc

from controlplane import convert
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import caller
from jitgate.v1 import lifecycle_pb2, lifecycle_pb2_grpc, types_pb2


class GrantLifecycleServicer(lifecycle_pb2_grpc.GrantLifecycleServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.d = deps

    async def Release(
        self, request: lifecycle_pb2.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.AccessRequest:
        rec = await self.d.run(self.d.core.grants.release, caller().name, request.id)
        return convert.access_request(rec)
