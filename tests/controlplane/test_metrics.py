"""The control plane's metrics object on a real grpc.aio server (controlplane/metrics.py).

The end-to-end scrapes of real processes are in tests/broker/test_failover_e2e.py; this
checks what a healthy test stack cannot produce: store errors, bounded labels, and a
store that cannot be counted.
"""
from __future__ import annotations

import asyncio
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, generate_latest

from controlplane.metrics import ControlPlaneMetrics, method_label
from jitgate.status import rpc_status
from jitgate.v1 import access_pb2, access_pb2_grpc, types_pb2


class Servicer(access_pb2_grpc.AccessServiceServicer):
    async def GetRequest(self, request: Any, context: Any) -> Any:
        if request.id == "busy":
            status = rpc_status("store.busy", "the database is busy; try again")
            await context.abort(status.code, status.details, status.trailing_metadata)
        return types_pb2.AccessRequest(id=request.id)


def test_labels_are_a_bounded_set() -> None:
    assert method_label("/jitgate.v1.AccessService/GetRequest") == "AccessService/GetRequest"
    for name in ("/jitgate.v1.AccessService/Get\u202eRequest", "/evil/" + "x" * 500, "/jitgate.v1.A/B/C", ""):
        assert method_label(name) == "other"


def test_rpc_latency_by_method_and_store_errors() -> None:
    metrics = ControlPlaneMetrics(CollectorRegistry())

    async def run() -> None:
        server = grpc.aio.server(interceptors=[metrics])
        access_pb2_grpc.add_AccessServiceServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = access_pb2_grpc.AccessServiceStub(channel)
                assert (await stub.GetRequest(access_pb2.GetRequestRequest(id="g1"))).id == "g1"
                try:
                    await stub.GetRequest(access_pb2.GetRequestRequest(id="busy"))
                    raise AssertionError("store.busy expected")
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(None)

    asyncio.run(run())
    reg = metrics.registry
    ok = {"method": "AccessService/GetRequest", "code": "OK"}
    assert reg.get_sample_value("jitgate_rpc_seconds_count", ok) == 1
    assert reg.get_sample_value("jitgate_rpc_seconds_count", {**ok, "code": "UNAVAILABLE"}) == 1
    assert reg.get_sample_value("jitgate_store_errors_total", {"code": "store.busy"}) == 1


def test_a_store_that_cannot_be_counted_is_an_error_not_a_zero() -> None:
    metrics = ControlPlaneMetrics(CollectorRegistry())

    def count(state: str) -> int:
        raise OSError("database is away")

    metrics.watch_store(count)
    text = generate_latest(metrics.registry).decode()
    assert "jitgate_requests{" not in text  # no made-up zeros
    assert metrics.registry.get_sample_value("jitgate_store_errors_total", {"code": "store.unreachable"}) == 1
    metrics2 = ControlPlaneMetrics(CollectorRegistry())
    metrics2.watch_store(lambda state: {"ACTIVE": 3}.get(state, 0))
    assert metrics2.registry.get_sample_value("jitgate_requests", {"state": "ACTIVE"}) == 3
    assert metrics2.registry.get_sample_value("jitgate_requests", {"state": "PENDING"}) == 0


def test_bad_metrics_and_server_addresses_are_refused_at_start(tmp_path: Any) -> None:
    import pytest
    from click.testing import CliRunner

    from cli.pg_cmd import pg_broker
    from cli.ssh_broker_cmd import ssh_broker
    from controlplane.config import ConfigError, build_config

    policies = tmp_path / "policies.yaml"
    policies.write_text("version: 1\n")
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        build_config(data_dir=tmp_path, policies=policies, metrics="9464")
    with pytest.raises(ConfigError, match="give an IP address"):
        build_config(data_dir=tmp_path, policies=policies, metrics="metrics.example:9464")
    assert build_config(data_dir=tmp_path, policies=policies, metrics="127.0.0.1:0").metrics == "127.0.0.1:0"
    ident = tmp_path / "id"
    ident.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (ident / name).write_text("x")
    for command in (ssh_broker, pg_broker):
        out = CliRunner().invoke(command, ["--identity", str(ident), "--server", "127.0.0.1:1,,b:2",
                                           "--data-dir", str(tmp_path / command.name)])
        assert out.exit_code == 1 and "empty control-plane address" in out.output, out.output
        out = CliRunner().invoke(command, ["--identity", str(ident), "--server", "127.0.0.1:1",
                                           "--metrics", "everywhere", "--data-dir", str(tmp_path / command.name)])
        assert out.exit_code == 1 and "metrics address `everywhere`" in out.output, out.output
