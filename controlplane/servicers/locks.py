"""LockService: place, lift and list locks (controlplane/locks.py holds what they mean)."""
from __future__ import annotations

import grpc

from controlplane.convert import from_ts, ts
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import caller, require_role
from controlplane.store.locks import LockRecord
from jitgate.v1 import locks_pb2, locks_pb2_grpc


def lock_message(lock: LockRecord, active: bool) -> locks_pb2.Lock:
    return locks_pb2.Lock(id=lock.id, target=lock.target, value=lock.value, reason=lock.reason,
                          created_by=lock.created_by, created_at=ts(lock.created_at), until=ts(lock.until),
                          lifted_at=ts(lock.lifted_at), lifted_by=lock.lifted_by, active=active)


class LockServicer(locks_pb2_grpc.LockServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.d = deps

    async def CreateLock(
        self, request: locks_pb2.CreateLockRequest, context: grpc.aio.ServicerContext
    ) -> locks_pb2.CreateLockResponse:
        admin = require_role("admin", "place a lock")
        until = from_ts(request.until) if request.HasField("until") else None
        # Ends every grant under the lock in one transaction: may be many rows, so off the loop.
        lock, ended = await self.d.run_slow(self.d.core.locks.lock, admin.name, request.target, request.value,
                                            request.reason, until)
        return locks_pb2.CreateLockResponse(lock=lock_message(lock, True), ended_grants=ended)

    async def DeleteLock(
        self, request: locks_pb2.DeleteLockRequest, context: grpc.aio.ServicerContext
    ) -> locks_pb2.Lock:
        admin = require_role("admin", "lift a lock")
        lock = await self.d.run(self.d.core.locks.unlock, admin.name, request.id, request.reason)
        return lock_message(lock, False)

    async def ListLocks(
        self, request: locks_pb2.ListLocksRequest, context: grpc.aio.ServicerContext
    ) -> locks_pb2.ListLocksResponse:
        who = caller()
        locks = await self.d.run_slow(self.d.core.locks.list_locks, who.name, request.include_inactive)
        now = self.d.core.ledger.clock()
        return locks_pb2.ListLocksResponse(locks=[lock_message(lk, lk.active_at(now)) for lk in locks])
