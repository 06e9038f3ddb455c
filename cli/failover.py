"""The CLI's blocking gRPC channel over several control planes (`--server a,b`), failing over
as `jitgate.endpoints` says (that module holds the rule; this one only does the I/O).

`FailoverChannel` is a `grpc.Channel`, so the generated stubs use it unchanged. A
call goes to the current address with `wait_for_ready` off, so a channel that
cannot connect fails at once with gRPC's "failed to connect to all addresses"
(each connect attempt is bounded by `CONNECT_TIMEOUT`): such a call never
reached a plane and goes on to the next address. A call that failed after its
channel was up goes on only for methods the policy lets it repeat. When every
address fails, the last error is the one raised, as a single server's would be
(and a refused identity is still named by `cli/tls_diagnosis.py`).

Connectivity is read from the call's own failure, not by subscribing to the
channel: blocking gRPC polls a subscription from a thread that outlives a
closed channel.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from jitgate.endpoints import CONNECT_TIMEOUT, OutcomeUnknown, ServerList, after_failure
from jitgate.status import reason_of

# gRPC's words for a call that never had a connection to go out on (no transport was ever picked).
NEVER_CONNECTED = ("failed to connect to all addresses", "dns resolution failed", "name resolution failure")


def never_sent(exc: grpc.RpcError) -> bool:
    """Whether `exc` is a call that failed before any connection to the plane came up."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    if code != grpc.StatusCode.UNAVAILABLE:
        return False
    detail = (exc.details() if callable(getattr(exc, "details", None)) else "") or ""
    return any(words in detail.lower() for words in NEVER_CONNECTED)


def channel_options(options: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """`options` with each connect attempt bounded by CONNECT_TIMEOUT (gRPC waits 20 s by default)."""
    ms = int(CONNECT_TIMEOUT * 1000)
    return [*options, ("grpc.min_reconnect_backoff_ms", ms), ("grpc.initial_reconnect_backoff_ms", ms)]


class FailoverChannel(grpc.Channel):
    """One channel per address of a ServerList; calls go to the current one and fail over."""

    def __init__(self, servers: ServerList, make_channel: Callable[[str], tuple[grpc.Channel, grpc.Channel]]) -> None:
        """`make_channel(address)` -> (raw channel, channel to call through: e.g. with interceptors)."""
        self.servers = servers
        self._make = make_channel
        self._channels: dict[str, tuple[grpc.Channel, grpc.Channel]] = {}

    def _pair(self, address: str) -> tuple[grpc.Channel, grpc.Channel]:
        if address not in self._channels:
            self._channels[address] = self._make(address)
        return self._channels[address]

    def via(self, address: str) -> grpc.Channel:
        """The channel calls to `address` go through."""
        return self._pair(address)[1]

    def failed(self, method: str, address: str, exc: grpc.RpcError, last: bool) -> None:
        """After `exc` on `address`: return to try the next address, or raise."""
        code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
        verdict = after_failure(method, code.name, sent=not never_sent(exc), reason=reason_of(exc))
        if verdict.outcome_unknown:
            self.servers.unreachable(address)
            raise OutcomeUnknown(method, address) from None
        if not verdict.next_address or last:
            raise exc
        self.servers.unreachable(address)

    def call_with_failover(self, method: str, invoke: Callable[[grpc.Channel], Any]) -> Any:
        """`invoke(channel)` on the current plane, again on the next as the policy allows."""
        order = self.servers.order()
        for i, address in enumerate(order):
            try:
                result = invoke(self.via(address))
            except grpc.RpcError as exc:
                self.failed(method, address, exc, last=i == len(order) - 1)
                continue
            self.servers.answered(address)
            return result
        raise AssertionError("unreachable: the last address raises")  # pragma: no cover

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
        return self.via(self.servers.current).stream_unary(method, request_serializer, response_deserializer)

    def stream_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                      _registered_method: bool | None = False) -> Any:
        return self.via(self.servers.current).stream_stream(method, request_serializer, response_deserializer)

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
        return self._callable(self._owner.via(self._owner.servers.current)).future(request, *args, **kwargs)


class _UnaryStream:
    def __init__(self, owner: FailoverChannel, method: str, ser: Any, deser: Any) -> None:
        self._owner, self._method, self._ser, self._deser = owner, method, ser, deser

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return _FailoverStream(self._owner, self._method, lambda ch: ch.unary_stream(
            self._method, request_serializer=self._ser, response_deserializer=self._deser)(request, *args, **kwargs))


class _FailoverStream:
    """A server stream that, until its first message, fails over like a unary call; after it, a
    broken stream ends with its error (the command reports it; `sessions watch` reconnects)."""

    def __init__(self, owner: FailoverChannel, method: str, open_on: Callable[[grpc.Channel], Any]) -> None:
        self._owner, self._method, self._open_on = owner, method, open_on
        self._order = owner.servers.order()
        self._i = 0
        self._call = open_on(owner.via(self._order[0]))
        self._started = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                item = next(self._call)
            except grpc.RpcError as exc:
                if self._started:
                    raise
                last = self._i == len(self._order) - 1
                self._owner.failed(self._method, self._order[self._i], exc, last)
                self._i += 1
                self._call = self._open_on(self._owner.via(self._order[self._i]))
                continue
            if not self._started:
                self._started = True
                self._owner.servers.answered(self._order[self._i])
            return item

    def __getattr__(self, name: str) -> Any:  # cancel(), code(), details(), ... of the current call
        return getattr(self._call, name)


def failover_channel(servers: ServerList, credentials: grpc.ChannelCredentials, options: list[tuple[str, Any]],
                     identity: Path, wrap: Callable[[grpc.Channel, Path, str], grpc.Channel]) -> FailoverChannel:
    """A FailoverChannel whose per-address channels are secure and wrapped by `wrap(raw, identity, address)`."""

    def make(address: str) -> tuple[grpc.Channel, grpc.Channel]:
        raw = grpc.secure_channel(address, credentials, options=channel_options(options))
        return raw, wrap(raw, identity, address)

    return FailoverChannel(servers, make)


__all__ = ["FailoverChannel", "channel_options", "failover_channel", "never_sent"]
