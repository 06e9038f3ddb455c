"""The Guard interceptor on a real mTLS aio server: errors reach clients as status + plain detail + code."""
from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from ca.x509 import X509CA
from controlplane.errors import JitError
from controlplane.servicers.guard import INTERNAL_DETAIL, Guard, caller
from jitgate.status import reason_of
from recommend.errors import ModelError


async def _serve_and_call(tmp_path: Path, method: str) -> tuple[grpc.StatusCode, str, str]:
    ca = X509CA.load_or_create(tmp_path / "ca", b"guard test passphrase 0123456789")
    server_bundle = ca.issue_server_certificate([], [])
    client_bundle = ca.issue_client_certificate("alice")

    async def boom(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("secret internals /etc/shadow")

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise JitError("approval.self", "you cannot approve your own request `r1`")

    async def library(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise ModelError("no trained model")

    async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return f"{caller().name}:{','.join(sorted(caller().roles))}".encode()

    server = grpc.aio.server(interceptors=[Guard(lambda name: frozenset({"user"}) if name == "alice" else frozenset())])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {
        "Boom": grpc.unary_unary_rpc_method_handler(boom),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
        "Library": grpc.unary_unary_rpc_method_handler(library),
        "WhoAmI": grpc.unary_unary_rpc_method_handler(whoami),
    }),))
    creds = grpc.ssl_server_credentials([(server_bundle.key_pem, server_bundle.cert_pem)],
                                        root_certificates=ca.ca_cert_pem, require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        channel_creds = grpc.ssl_channel_credentials(ca.ca_cert_pem, client_bundle.key_pem, client_bundle.cert_pem)
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", channel_creds) as channel:
            try:
                reply = await channel.unary_unary(f"/t.T/{method}")(b"", timeout=10)
                return grpc.StatusCode.OK, reply.decode(), ""
            except grpc.aio.AioRpcError as e:
                return e.code(), e.details(), reason_of(e)
    finally:
        await server.stop(None)


@pytest.mark.parametrize("method,code,detail,reason", [
    ("Boom", grpc.StatusCode.INTERNAL, INTERNAL_DETAIL, "internal"),
    ("Refuse", grpc.StatusCode.PERMISSION_DENIED, "you cannot approve your own request `r1`", "approval.self"),
    # A library's error is mapped by its code like the control plane's (no isinstance chain per library).
    ("Library", grpc.StatusCode.FAILED_PRECONDITION, "no trained model", "recommend.model_unavailable"),
    ("WhoAmI", grpc.StatusCode.OK, "alice:user", ""),
])
def test_guard_maps_outcomes(tmp_path: Path, method: str, code: grpc.StatusCode, detail: str, reason: str):
    assert asyncio.run(_serve_and_call(tmp_path, method)) == (code, detail, reason)
