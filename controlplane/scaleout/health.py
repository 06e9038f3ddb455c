"""gRPC health follows the store: NOT_SERVING while it cannot be reached, SERVING again after.

A load balancer or a client that checks health then sends its calls to another plane; calls
that still arrive fail with `store.unavailable` (UNAVAILABLE), never with a traceback.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor

from grpc_health.v1 import health_pb2

from controlplane.store import SqlStore

log = logging.getLogger("jitgate.health")

PROBE_SECONDS = 1.0  # how often the store is probed: NOT_SERVING within about this much of an outage

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def follow_store(store: SqlStore, executor: Executor, names: Iterable[str],
                       set_status: Callable[[str, int], Awaitable[None]], interval: float = PROBE_SECONDS) -> None:
    """Probe the store every `interval` and set every service's status from the answer (until cancelled)."""
    loop = asyncio.get_running_loop()
    names = tuple(names)
    last = SERVING
    while True:
        await asyncio.sleep(interval)
        try:
            await loop.run_in_executor(executor, store.ping)
            status = SERVING
        except Exception as e:
            status = NOT_SERVING
            if last == SERVING:
                log.warning("store unreachable (%s): health NOT_SERVING", type(e).__name__)
        if status != last:
            if status == SERVING:
                log.info("store reachable again: health SERVING")
            for name in names:
                await set_status(name, status)
            last = status


__all__ = ["PROBE_SECONDS", "follow_store"]
