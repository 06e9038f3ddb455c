"""SignInService on the sign-in listener: TLS with the server's certificate, no client certificate.

Why a second listener rather than optional client certificates on the one port: the
main port keeps *requiring* a client certificate in the TLS handshake, so no bug in a
handler or the guard can let a caller without one reach any other service; and
grpcio's `ssl_server_credentials(require_client_auth=False)` does not ask for client
certificates at all, so one port could not serve both. The sign-in listener serves
only this service (no health, no reflection), with messages bounded to 64 KiB, and
each field is bounded again by `service` (token 16 KiB, CSR 8 KiB, nonce 128).
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.servicers.guard import status_of
from controlplane.signin.service import SignInService
from jitgate.v1 import signin_pb2, signin_pb2_grpc

log = logging.getLogger("controlplane.signin")

MAX_MESSAGE = 64 * 1024
T = TypeVar("T")


def _ts(value: Any) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


class SignInServicer(signin_pb2_grpc.SignInServiceServicer):
    def __init__(self, service: SignInService, executor: ThreadPoolExecutor) -> None:
        self.service = service
        self.executor = executor

    async def _call(self, context: grpc.aio.ServicerContext, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, functools.partial(fn, *args))
        except Exception as exc:  # mapped like every other service (guard.status_of): never a traceback
            status = status_of(exc)
            if status.code == grpc.StatusCode.INTERNAL:  # the traceback stays in the server log
                log.error("sign-in failed", exc_info=exc)
            await context.abort(status.code, status.details, status.trailing_metadata)
            raise  # unreachable: abort raises

    async def BeginSignIn(self, request: signin_pb2.BeginSignInRequest,
                          context: grpc.aio.ServicerContext) -> signin_pb2.BeginSignInResponse:
        begun = await self._call(context, self.service.begin, request.headless)
        cfg = self.service.config
        return signin_pb2.BeginSignInResponse(
            issuer=cfg.issuer, client_id=cfg.client_id, scopes=list(cfg.scopes), nonce=begun.nonce,
            nonce_expires_at=_ts(begun.expires_at), default_hours=cfg.certificate_hours,
            max_hours=cfg.max_certificate_hours, user_code=begun.user_code, verification_uri=begun.verification_uri,
            verification_uri_complete=begun.verification_uri_complete, interval_seconds=begun.interval)

    async def CompleteSignIn(self, request: signin_pb2.CompleteSignInRequest,
                             context: grpc.aio.ServicerContext) -> signin_pb2.CompleteSignInResponse:
        done = await self._call(context, self.service.complete, request.id_token, request.nonce,
                                request.csr_pem, request.hours, context.peer())
        return signin_pb2.CompleteSignInResponse(
            name=done.name, groups=list(done.groups), email=done.email, cert_pem=done.cert_pem.decode(),
            ca_pem=done.ca_pem.decode(), expires_at=_ts(done.expires_at))


async def start_listener(listen: str, service: SignInService, key_pem: bytes, cert_pem: bytes,
                         executor: ThreadPoolExecutor, addr_file: Path) -> Callable[[], Awaitable[None]]:
    """Serve SignInService on `listen` (TLS, no client certificate); returns its stop function."""
    from controlplane.server import StartError

    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE)])
    signin_pb2_grpc.add_SignInServiceServicer_to_server(SignInServicer(service, executor), server)
    try:
        port = server.add_secure_port(listen, grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    except RuntimeError as e:
        raise StartError(f"cannot listen for sign-ins on {listen}: {e}") from None
    if not port:
        raise StartError(f"cannot listen for sign-ins on {listen}: address in use or not available")
    await server.start()
    host = listen.rpartition(":")[0]
    address = f"{host}:{port}"
    tmp = addr_file.with_suffix(".tmp")
    tmp.write_text(address + "\n")
    tmp.replace(addr_file)
    print(f"jitgate sign-in listening on {address} (OpenID Connect provider {service.config.issuer})", flush=True)

    async def stop() -> None:
        addr_file.unlink(missing_ok=True)
        await server.stop(grace=1)

    return stop


__all__ = ["MAX_MESSAGE", "SignInServicer", "start_listener"]
