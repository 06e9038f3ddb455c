"""The CLI's blocking gRPC channel over several control planes (`--server a,b`), failing over
as `jitgate.endpoints` says (that module holds the rule; this one only does the I/O).

`FailoverChannel` is a `grpc.Channel`, so the generated stubs use it unchanged: each
call first waits (at most `CONNECT_TIMEOUT`) for the channel to the current address
to come up, passes to the next address when it does not, and after a call that
failed because its plane went away, tries the next plane only for methods the
policy lets it repeat. When no address comes up, the call is made on the first
anyway, so its error is the one a single server gives (and a refused identity is
still named by `cli/tls_diagnosis.py`).
"""
from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from jitgate.endpoints import CONNECT_TIMEOUT, OutcomeUnknown, ServerList, after_failure
from jitgate.status import reason_of


def wait_ready(channel: grpc.Channel, timeout: float) -> bool:
    """Whether `channel` connects within `timeout`; a connection attempt that fails ends the wait."""
    states: queue.SimpleQueue[grpc.ChannelConnectivity] = queue.SimpleQueue()
    channel.subscribe(states.put, try_to_connect=True)
    try:
        end = time.monotonic() + timeout
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            try:
                state = states.get(timeout=remaining)
            except queue.Empty:
                return False
            if state == grpc.ChannelConnectivity.READY:
                return True
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                return False
    finally:
        channel.unsubscribe(states.put)


class FailoverChannel(grpc.Channel):
    """One channel per address of a ServerList; calls go to the current one and fail over."""

    def __init__(self, servers: ServerList, make_channel: Callable[[str], tuple[grpc.Channel, grpc.Channel]],
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        """`make_channel(address)` -> (raw channel, channel to call through: e.g. with interceptors)."""
        self.servers = servers
        self.connect_timeout = connect_timeout
        self._make = make_channel
        self._channels: dict[str, tuple[grpc.Channel, grpc.Channel]] = {}

    def _pair(self, address: str) -> tuple[grpc.Channel, grpc.Channel]:
        if address not in self._channels:
            self._channels[address] = self._make(address)
        return self._channels[address]

    def pick(self, tried: list[str]) -> tuple[str, bool]:
        """The next address to call: (address, up). Not up: none was; the first is called anyway."""
        order = [a for a in self.servers.order() if a not in tried]
        for address in order:
            if wait_ready(self._pair(address)[0], self.connect_timeout):
                return address, True
            self.servers.unreachable(address)
        return (order[0] if order else self.servers.current), False

    def call_with_failover(self, method: str, invoke: Callable[[grpc.Channel], Any]) -> Any:
        """`invoke(channel)` on the current plane, again on the next as the policy allows."""
        tried: list[str] = []
        while True:
            address, up = self.pick(tried)
            tried.append(address)
            try:
                result = invoke(self._pair(address)[1])
            except grpc.RpcError as exc:
                code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
                verdict = after_failure(method, code.name, sent=up, reason=reason_of(exc))
                if up and verdict.outcome_unknown:
                    self.servers.unreachable(address)
                    raise OutcomeUnknown(method, address) from None
                if not up or not verdict.next_address or len(tried) >= len(self.servers.addresses):
                    raise
                self.servers.unreachable(address)
                continue
            self.servers.answered(address)
            return result

    # -- grpc.Channel ------------------------------------------------------------------------

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    _registered_method: bool | None = False) -> Any:
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: bool | None = False) -> Any:
        return _UnaryStream(self, method, request_serializer, response_deserializer)

    def stream_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                     _registered_method: bool | None = False) -> Any:
        # No jitgate method streams requests; the current plane, without failover.
        return self._pair(self.servers.current)[1].stream_unary(method, request_serializer, response_deserializer)

    def stream_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                      _registered_method: bool | None = False) -> Any:
        return self._pair(self.servers.current)[1].stream_stream(method, request_serializer, response_deserializer)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._pair(self.servers.current)[0].subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._pair(self.servers.current)[0].unsubscribe(callback)

    def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for raw, _ in channels:
            raw.close()

    def __enter__(self) -> FailoverChannel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _UnaryUnary:
    def __init__(self, owner: FailoverChannel, method: str, ser: Any, deser: Any) -> None:
        self._owner, self._method, self._ser, self._deser = owner, method, ser, deser

    def _callable(self, channel: grpc.Channel) -> Any:
        return channel.unary_unary(self._method, request_serializer=self._ser, response_deserializer=self._deser)

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._owner.call_with_failover(self._method, lambda ch: self._callable(ch)(request, *args, **kwargs))

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._owner.call_with_failover(
            self._method, lambda ch: self._callable(ch).with_call(request, *args, **kwargs))

    def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        address, _ = self._owner.pick([])
        return self._callable(self._owner._pair(address)[1]).future(request, *args, **kwargs)


class _UnaryStream:
    """A stream opens on the first plane that is up; a stream that breaks is not resumed here."""

    def __init__(self, owner: FailoverChannel, method: str, ser: Any, deser: Any) -> None:
        self._owner, self._method, self._ser, self._deser = owner, method, ser, deser

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        address, _ = self._owner.pick([])
        channel = self._owner._pair(address)[1]
        return channel.unary_stream(self._method, request_serializer=self._ser,
                                    response_deserializer=self._deser)(request, *args, **kwargs)


def failover_channel(servers: ServerList, credentials: grpc.ChannelCredentials, options: list[tuple[str, Any]],
                     identity: Path, wrap: Callable[[grpc.Channel, Path, str], grpc.Channel]) -> FailoverChannel:
    """A FailoverChannel whose per-address channels are secure and wrapped by `wrap(raw, identity, address)`."""

    def make(address: str) -> tuple[grpc.Channel, grpc.Channel]:
        raw = grpc.secure_channel(address, credentials, options=options)
        return raw, wrap(raw, identity, address)

    return FailoverChannel(servers, make)


__all__ = ["FailoverChannel", "failover_channel", "wait_ready"]
