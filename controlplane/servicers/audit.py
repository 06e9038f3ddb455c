"""AuditService: the hash-chained event log and history exports (admins only)."""
from __future__ import annotations

import json
from typing import Any, AsyncIterator

import grpc

from controlplane import convert
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import require_role
from jitgate.v1 import audit_pb2, audit_pb2_grpc, types_pb2

_EXPORT_PAGE = 500


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.d = deps

    async def ListEvents(self, request: Any, context: grpc.aio.ServicerContext) -> audit_pb2.ListEventsResponse:
        require_role("admin", "read the audit log")
        limit = min(request.page_size or 100, 1000)
        events = await self.d.run_slow(
            self.d.core.audit_events, after_seq=request.after_seq, type=request.type,
            subject=request.subject, limit=limit)
        out = audit_pb2.ListEventsResponse(last_seq=events[-1].seq if events else request.after_seq)
        out.events.extend(convert.audit_event(e) for e in events)
        return out

    async def ExportEvents(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[types_pb2.AuditEvent]:
        require_role("admin", "export the audit log")
        after = request.after_seq
        while True:
            events = await self.d.run_slow(self.d.core.audit_events, after_seq=after, limit=_EXPORT_PAGE)
            for event in events:
                yield convert.audit_event(event)
            if len(events) < _EXPORT_PAGE:
                return
            after = events[-1].seq

    async def VerifyChain(self, request: Any, context: grpc.aio.ServicerContext) -> audit_pb2.VerifyChainResponse:
        require_role("admin", "verify the audit log")
        ok, count, problems = await self.d.run_slow(self.d.core.verify_audit)
        return audit_pb2.VerifyChainResponse(ok=ok, events=count, problems=list(problems))

    async def _lines(self, fn: Any, days: int) -> AsyncIterator[audit_pb2.JsonLine]:
        rows = await self.d.run_slow(lambda: list(fn(days)))
        for row in rows:
            yield audit_pb2.JsonLine(json=json.dumps(row, sort_keys=True, default=str))

    async def ExportRequests(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[audit_pb2.JsonLine]:
        require_role("admin", "export requests")
        async for line in self._lines(self.d.core.export_requests, request.days or 90):
            yield line

    async def ExportHistory(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[audit_pb2.JsonLine]:
        require_role("admin", "export history")
        async for line in self._lines(self.d.core.export_history, request.days or 90):
            yield line
