"""AuditService: the hash-chained event log and history exports (admins only)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from controlplane import bounds, convert
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import require_role
from jitgate.v1 import audit_pb2, audit_pb2_grpc, types_pb2

_EXPORT_PAGE = 500
_DEFAULT_DAYS = 90  # ExportRequests / ExportHistory with days = 0


def _fit_problems(problems: list[str]) -> list[str]:
    """The chain's problems, each cut to the free-text bound, as many as fit in one message (then a count)."""
    out: list[str] = []
    used = 0
    for i, problem in enumerate(problems):
        line = bounds.clip(problem, bounds.FREE_TEXT)
        used += len(line.encode()) + 8
        if used > bounds.ROWS_BUDGET:
            out.append(f"... and {len(problems) - i} more problem(s) not shown")
            break
        out.append(line)
    return out


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.d = deps

    async def ListEvents(
        self, request: audit_pb2.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ListEventsResponse:
        require_role("admin", "read the audit log")
        limit = bounds.page_limit(request.page_size, 1000, default=100)
        events = await self.d.run_slow(
            self.d.core.audit.audit_events,
            after_seq=request.after_seq,
            type=request.type,
            subject=request.subject,
            limit=limit,
        )
        # Cut by bytes: `last_seq` is the cursor, so the next page starts after the last event sent.
        page = convert.fit((convert.audit_event(e) for e in events), bounds.ROWS_BUDGET)
        out = audit_pb2.ListEventsResponse(last_seq=page[-1].seq if page else request.after_seq)
        out.events.extend(page)
        return out

    async def ExportEvents(
        self, request: audit_pb2.ExportEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[types_pb2.AuditEvent]:
        require_role("admin", "export the audit log")
        after = request.after_seq
        while True:
            events = await self.d.run_slow(self.d.core.audit.audit_events, after_seq=after, limit=_EXPORT_PAGE)
            for event in events:
                yield convert.audit_event(event)
            if len(events) < _EXPORT_PAGE:
                return
            after = events[-1].seq

    async def VerifyChain(
        self, request: audit_pb2.VerifyChainRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.VerifyChainResponse:
        require_role("admin", "verify the audit log")
        ok, count, problems = await self.d.run_slow(self.d.core.audit.verify_audit)
        return audit_pb2.VerifyChainResponse(ok=ok, events=count, problems=_fit_problems(problems))

    async def _lines(self, fn: Any, days: int) -> AsyncIterator[audit_pb2.JsonLine]:
        rows = await self.d.run_slow(lambda: list(fn(days)))
        for row in rows:
            yield audit_pb2.JsonLine(json=convert.bounded_json(row))

    async def ExportRequests(
        self, request: audit_pb2.ExportRequestsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.JsonLine]:
        require_role("admin", "export requests")
        async for line in self._lines(self.d.core.audit.export_requests, request.days or _DEFAULT_DAYS):
            yield line

    async def ExportHistory(
        self, request: audit_pb2.ExportHistoryRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.JsonLine]:
        require_role("admin", "export history")
        async for line in self._lines(self.d.core.audit.export_history, request.days or _DEFAULT_DAYS):
            yield line
