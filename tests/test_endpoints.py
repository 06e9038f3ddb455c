"""The control-plane address list (jitgate/endpoints.py) and its failover, on real gRPC servers.

The failover tests run two small in-process gRPC servers (plain jitgate.v1
servicers over insecure loopback, not the control plane): one that stalls every
call past the client's deadline (a plane that went away after the call was
sent), one that answers. They check which calls move on to the next plane and
which are not repeated (CreateRequest, AuthorizeSession), for the CLI's
blocking channel and the brokers' asyncio channels.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from broker.demo_target import free_port
from broker.failover import ACCESS, BROKER, PlaneChannels, PlanesUnreachable
from cli.failover import FailoverChannel, channel_options
from jitgate import endpoints
from jitgate.endpoints import OutcomeUnknown, ServerList, ServerListError, after_failure, parse_servers
from jitgate.v1 import access_pb2, access_pb2_grpc, broker_pb2, broker_pb2_grpc, types_pb2

# -------------------------------------------------------------------- parsing and order


def test_parse_accepts_lists_and_ipv6() -> None:
    assert parse_servers("a.example:7443") == ("a.example:7443",)
    assert parse_servers(" 127.0.0.1:1 , [::1]:2,b:3") == ("127.0.0.1:1", "[::1]:2", "b:3")


@pytest.mark.parametrize("text, words", [
    ("", "empty"), ("a:1,", "empty"), ("a:1,,b:2", "empty"), ("a", "HOST:PORT"), ("a:0", "out of range"),
    ("a:70000", "out of range"), ("a:1,a:1", "listed twice"), ("[1::2::3]:1", "IPv6"), ("a b:1", "host name"),
    (",".join(f"h{i}:1" for i in range(17)), "at most 16"), ("a:1," * 2000, "longer than"),
])
def test_parse_refuses_with_a_plain_sentence(text: str, words: str) -> None:
    with pytest.raises(ServerListError) as err:
        parse_servers(text)
    assert words in str(err.value)
    assert isinstance(err.value, ValueError)  # click and the brokers' config report ValueErrors


def test_order_is_sticky_and_wraps() -> None:
    servers = ServerList.parse("a:1,b:2,c:3")
    assert servers.order() == ["a:1", "b:2", "c:3"]
    servers.unreachable("b:2")  # not the current one: nothing moves
    assert servers.current == "a:1"
    servers.unreachable("a:1")
    assert servers.order() == ["b:2", "c:3", "a:1"]
    servers.answered("c:3")
    assert servers.order() == ["c:3", "a:1", "b:2"]
    servers.unreachable("c:3")
    assert servers.current == "a:1"  # wraps round


def test_every_method_is_classified_once() -> None:
    """A new RPC must be put in RETRY_AFTER_SEND or ONCE (a write repeated by mistake duplicates)."""
    from jitgate.services import api_methods

    methods = set(api_methods())
    assert methods == endpoints.RETRY_AFTER_SEND | endpoints.ONCE
    assert not endpoints.RETRY_AFTER_SEND & endpoints.ONCE
    for write in ("AccessService/CreateRequest", "BrokerService/AuthorizeSession", "AccessService/Approve"):
        assert "/jitgate.v1." + write in endpoints.ONCE


def test_policy() -> None:
    create, get = "/jitgate.v1.AccessService/CreateRequest", "/jitgate.v1.AccessService/GetRequest"
    assert after_failure(create, "UNAVAILABLE", sent=False).next_address  # never reached a plane
    assert after_failure(create, "UNAVAILABLE", sent=True).outcome_unknown
    assert not after_failure(create, "UNAVAILABLE", sent=True).next_address
    assert after_failure(get, "DEADLINE_EXCEEDED", sent=True).next_address
    assert not after_failure(get, "PERMISSION_DENIED", sent=True).next_address  # the plane's answer
    assert not after_failure(get, "UNAVAILABLE", sent=True, reason="store.busy").next_address
    assert not after_failure("/x.Y/Unknown", "UNAVAILABLE", sent=True).next_address


# -------------------------------------------------------------------- two real gRPC servers


class Plane(access_pb2_grpc.AccessServiceServicer, broker_pb2_grpc.BrokerServiceServicer):
    """A jitgate.v1 servicer that either stalls every call (a plane gone mid-call) or answers."""

    def __init__(self, stall: bool) -> None:
        self.stall = stall
        self.calls: list[str] = []
        self.release = threading.Event()

    def _maybe_stall(self, name: str) -> None:
        self.calls.append(name)
        if self.stall:
            self.release.wait(10)

    def CreateRequest(self, request: Any, context: Any) -> Any:
        self._maybe_stall("CreateRequest")
        return access_pb2.CreateRequestResponse(request=types_pb2.AccessRequest(id="r1"))

    def GetRequest(self, request: Any, context: Any) -> Any:
        self._maybe_stall("GetRequest")
        return types_pb2.AccessRequest(id=request.id)

    def AuthorizeSession(self, request: Any, context: Any) -> Any:
        self._maybe_stall("AuthorizeSession")
        return broker_pb2.AuthorizeSessionResponse(session_id="s1")

    def WatchEvents(self, request: Any, context: Any) -> Any:
        self._maybe_stall("WatchEvents")
        yield types_pb2.Event(type="snapshot.end")

    def GetTrust(self, request: Any, context: Any) -> Any:
        self._maybe_stall("GetTrust")
        return broker_pb2.Trust(user_ca_keys=["k"])


@pytest.fixture(scope="module")
def planes() -> Iterator[tuple[str, Plane, str, Plane, str]]:
    """(dead address, stalling plane's address, stalling plane, answering plane's address, answering plane)."""
    started = []
    out: list[Any] = [f"127.0.0.1:{free_port()}"]
    for stall in (True, False):
        plane = Plane(stall)
        server = grpc.server(futures.ThreadPoolExecutor(8))
        access_pb2_grpc.add_AccessServiceServicer_to_server(plane, server)
        broker_pb2_grpc.add_BrokerServiceServicer_to_server(plane, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        started.append((server, plane))
        out += [f"127.0.0.1:{port}", plane]
    yield tuple(out)  # type: ignore[misc]
    for server, plane in started:
        plane.release.set()
        server.stop(0)


def _cli_channel(addresses: str) -> FailoverChannel:
    def make(address: str) -> tuple[grpc.Channel, grpc.Channel]:
        channel = grpc.insecure_channel(address, options=channel_options([]))
        return channel, channel

    return FailoverChannel(ServerList.parse(addresses), make)


def test_cli_reads_fail_over_writes_are_not_repeated(planes: Any) -> None:
    dead, stalling, stall_plane, answering, answer_plane = planes
    with _cli_channel(f"{dead},{stalling},{answering}") as channel:
        stub = access_pb2_grpc.AccessServiceStub(channel)
        # The dead address never connects; the stalling plane got the read; the answering one answers.
        assert stub.GetRequest(access_pb2.GetRequestRequest(id="g1"), timeout=0.5).id == "g1"
        assert stall_plane.calls[-1] == "GetRequest" and answer_plane.calls[-1] == "GetRequest"
        assert channel.servers.current == answering  # sticky from now on
    with _cli_channel(f"{dead},{stalling},{answering}") as channel:
        stub = access_pb2_grpc.AccessServiceStub(channel)
        before = list(answer_plane.calls)
        with pytest.raises(OutcomeUnknown) as err:
            stub.CreateRequest(access_pb2.CreateRequestRequest(resource="db"), timeout=0.5)
        assert answer_plane.calls == before  # not repeated on the next plane
        assert stall_plane.calls[-1] == "CreateRequest"
        assert "may or may not have been applied" in err.value.message and stalling in err.value.message
        assert err.value.code == "client.outcome_unknown"
    with _cli_channel(f"{dead},{answering}") as channel:
        # A write whose first address never connected goes on: it never reached a plane.
        stub = access_pb2_grpc.AccessServiceStub(channel)
        assert stub.CreateRequest(access_pb2.CreateRequestRequest(resource="db"), timeout=2).request.id == "r1"


def test_cli_stream_opens_on_the_first_plane_that_answers(planes: Any) -> None:
    dead, _, _, answering, _ = planes
    with _cli_channel(f"{dead},{answering}") as channel:
        stream = access_pb2_grpc.AccessServiceStub(channel).WatchEvents(access_pb2.WatchEventsRequest(), timeout=5)
        first = next(stream)
        assert first.type == "snapshot.end"
        assert channel.servers.current == answering
        stream.cancel()


def test_cli_all_down_is_the_single_server_error(planes: Any) -> None:
    dead = planes[0]
    other_dead = f"127.0.0.1:{free_port()}"
    with _cli_channel(f"{dead},{other_dead}") as channel:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            access_pb2_grpc.AccessServiceStub(channel).GetRequest(access_pb2.GetRequestRequest(id="x"), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 10  # refused connections are passed over, not waited out


def test_broker_channels_fail_over(planes: Any) -> None:
    dead, stalling, _, answering, answer_plane = planes
    seen: list[tuple[str, str]] = []

    async def run() -> None:
        chans = PlaneChannels(ServerList.parse(f"{dead},{stalling},{answering}"), grpc.local_channel_credentials(),
                              [], observer=lambda m, code, s: seen.append((m, code)))
        # local credentials need a secure channel; plain servers need insecure ones: swap the factory.
        chans.channel = lambda a: chans._channels.setdefault(a, grpc.aio.insecure_channel(a))  # type: ignore
        try:
            trust = await chans.unary(BROKER, "GetTrust", broker_pb2.GetTrustRequest(), timeout=0.5)
            assert list(trust.user_ca_keys) == ["k"]
            assert chans.servers.current == answering
            chans.servers.answered(stalling)  # back to the stalling plane: a session authorization
            before = list(answer_plane.calls)
            with pytest.raises(PlanesUnreachable) as err:
                await chans.unary(BROKER, "AuthorizeSession", broker_pb2.AuthorizeSessionRequest(), timeout=0.5)
            assert err.value.reason == "client.outcome_unknown"
            assert answer_plane.calls == before  # no second session record on another plane
            assert chans.servers.current == answering  # the next login goes to the other plane
            resp = await chans.unary(BROKER, "AuthorizeSession", broker_pb2.AuthorizeSessionRequest(), timeout=2)
            assert resp.session_id == "s1"
            address, call = await chans.stream(ACCESS, "WatchEvents", access_pb2.WatchEventsRequest())
            assert address == answering
            call.cancel()
        finally:
            await chans.close()

    asyncio.run(run())
    assert ("GetTrust", "OK") in seen and ("AuthorizeSession", "DEADLINE_EXCEEDED") in seen
