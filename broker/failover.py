"""The brokers' asyncio gRPC channels to several control planes, failing over as
`jitgate.endpoints` says (that module holds the rule; this one only does the I/O).

    planes = PlaneChannels(ServerList.parse("cp-a:7443,cp-b:7443"), credentials, options)
    resp = await planes.unary(BROKER, "AuthorizeSession", request, timeout=5.0)
    address, call = await planes.stream(ACCESS, "WatchEvents", request)   # a stream on one plane
    planes.unreachable(address)                                            # it broke: next time, the next plane

One channel per address, made lazily on the running loop. Before a call, the
channel to the current address must be READY within `CONNECT_TIMEOUT`; a
channel that is down (refused, in gRPC's reconnect back-off) is passed over at
once in a first round; only if no address is up are all waited for at once, the
first to come up taking the call (a restarted plane leaves gRPC's reconnect
back-off, at most 1 s here, and is used within about that).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from jitgate.endpoints import CONNECT_TIMEOUT, ServerList, after_failure, outcome_unknown_message, short_method
from jitgate.status import reason_of
from jitgate.v1 import access_pb2_grpc, broker_pb2_grpc, locks_pb2_grpc, recordings_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """A gRPC service: its path prefix and its generated stub class."""

    prefix: str
    stub: Callable[[grpc.aio.Channel], Any]

    def method(self, name: str) -> str:
        return self.prefix + name


ACCESS = Service("/jitgate.v1.AccessService/", access_pb2_grpc.AccessServiceStub)
BROKER = Service("/jitgate.v1.BrokerService/", broker_pb2_grpc.BrokerServiceStub)
LOCKS = Service("/jitgate.v1.LockService/", locks_pb2_grpc.LockServiceStub)
RECORDINGS = Service("/jitgate.v1.RecordingService/", recordings_pb2_grpc.RecordingServiceStub)


class PlanesUnreachable(Exception):
    """No control plane could be reached (or the one that was went away mid-call)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # jitgate.endpoints.OUTCOME_UNKNOWN when a write may have been applied


# Observes each call: (method name, gRPC status name or "OK", seconds); the broker's metrics.
CallObserver = Callable[[str, str, float], None]


class PlaneChannels:
    """Channels to every address of a ServerList; calls go to the current one and fail over."""

    def __init__(self, servers: ServerList, credentials: grpc.ChannelCredentials, options: list[tuple[str, Any]],
                 connect_timeout: float = CONNECT_TIMEOUT, observer: CallObserver | None = None) -> None:
        self.servers = servers
        self.connect_timeout = connect_timeout
        self.observer = observer
        self._creds = credentials
        self._options = options
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        chan = self._channels.get(address)
        if chan is None:
            chan = self._channels[address] = grpc.aio.secure_channel(address, self._creds, options=self._options)
        return chan

    def unreachable(self, address: str) -> None:
        self.servers.unreachable(address)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for chan in channels:
            await chan.close(None)

    async def _ready(self, address: str, patient: bool) -> bool:
        """Whether the channel to `address` is up within the connect timeout. Not patient: a channel
        that already failed (TRANSIENT_FAILURE) counts as down at once."""
        chan = self.channel(address)
        loop = asyncio.get_running_loop()
        end = loop.time() + self.connect_timeout
        state = chan.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state == grpc.ChannelConnectivity.SHUTDOWN:
                return False
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE and not patient:
                return False
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(chan.wait_for_state_change(state), remaining)
            except TimeoutError:
                return False
            state = chan.get_state(try_to_connect=True)
        return True

    async def _up(self) -> list[str]:
        """Addresses to try, in order: those up now; or, if none is, the first that comes up."""
        order = self.servers.order()
        for address in order:
            if await self._ready(address, patient=False):
                return [address, *(a for a in order if a != address)]
            self.servers.unreachable(address)
        # None is up: wait for all at once and take the first to come up (a plane starting on the
        # second address is not kept waiting behind a connect timeout on the first).
        tasks = {asyncio.ensure_future(self._ready(a, patient=True)): a for a in order}
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.result():
                        address = tasks[task]
                        self.servers.answered(address)
                        return [address, *(a for a in order if a != address)]
        finally:
            for task in pending:
                task.cancel()
        return []

    async def unary(self, service: Service, name: str, request: Any, timeout: float) -> Any:
        """One unary call with failover; raises grpc.RpcError (the plane's answer) or PlanesUnreachable."""
        method = service.method(name)
        started = time.monotonic()
        status = "UNAVAILABLE"
        try:
            tried: list[str] = []
            while True:
                address = await self._next_up(tried)
                if address is None:
                    raise PlanesUnreachable(f"no control plane reachable ({', '.join(self.servers.addresses)})")
                tried.append(address)
                try:
                    resp = await getattr(service.stub(self.channel(address)), name)(request, timeout=timeout)
                except grpc.RpcError as exc:
                    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
                    status = code.name
                    verdict = after_failure(method, status, sent=True, reason=reason_of(exc))
                    if verdict.outcome_unknown:
                        self.servers.unreachable(address)
                        raise PlanesUnreachable(outcome_unknown_message(method, address),
                                                "client.outcome_unknown") from None
                    if not verdict.next_address:
                        raise
                    log.info("control plane %s unreachable during %s; trying the next one", address,
                             short_method(method))
                    self.servers.unreachable(address)
                    continue
                self.servers.answered(address)
                status = "OK"
                return resp
        finally:
            if self.observer is not None:
                self.observer(name, status, time.monotonic() - started)

    async def _next_up(self, tried: list[str]) -> str | None:
        """The first address up that this call has not tried yet."""
        for address in await self._up():
            if address not in tried:
                return address
        return None

    async def stream(self, service: Service, name: str, request: Any) -> tuple[str, Any]:
        """A server-streaming call opened on the first plane that is up; (address, call)."""
        for address in await self._up():
            return address, getattr(service.stub(self.channel(address)), name)(request)
        raise PlanesUnreachable(f"no control plane reachable ({', '.join(self.servers.addresses)})")


__all__ = ["ACCESS", "BROKER", "CallObserver", "PlaneChannels", "PlanesUnreachable", "Service"]


class FailoverStub:
    """A stub-like object whose unary methods go through `PlaneChannels.unary` (failover included).

    For callers written against a plain stub (they catch grpc.RpcError): no plane reachable is
    raised as an UNAVAILABLE `grpc.aio.AioRpcError`."""

    def __init__(self, planes: PlaneChannels, service: Service, timeout: float) -> None:
        self._planes, self._service, self._timeout = planes, service, timeout

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def call(request: Any, timeout: float | None = None) -> Any:
            try:
                return await self._planes.unary(self._service, name, request, timeout or self._timeout)
            except PlanesUnreachable as exc:
                raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                           details=exc.message, debug_error_string="") from None
        return call
