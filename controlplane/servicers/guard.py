"""The one gate every RPC passes: who is calling, and how a failure reaches the client.

`Guard` is a server interceptor that wraps every handler (except health and
reflection) so that:
- the caller is authenticated: the CN of its client certificate (already
  verified by TLS against our CA) must be an identity the policies or the
  server config know, else UNAUTHENTICATED; its roles come from the server,
- the request is within the API's bounds (`controlplane.bounds`), else
  INVALID_ARGUMENT naming the field and the limit,
- any `JitgateError` (`JitError`, and the errors of `ca/`, `policy/`,
  `recommend/`) becomes the status of its code (`jitgate.errors`) with the plain
  message as detail and the code as google.rpc `ErrorInfo.reason`
  (`jitgate.status`), so clients decide on the code, never on the text,
- anything else is logged with its traceback and the client gets INTERNAL
  "internal error (see server log)" with the code `internal`: never a traceback.

Servicers read the authenticated caller with `caller()`.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from controlplane.bounds import request_checker
from controlplane.errors import JitError
from controlplane.identity import caller_name
from jitgate.errors import INTERNAL, JitgateError
from jitgate.status import rpc_status

log = logging.getLogger("controlplane.rpc")

INTERNAL_DETAIL = "internal error (see server log)"
# Open to any holder of a certificate from our CA (TLS checked it), no identity lookup.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class Caller:
    """The authenticated identity of the current RPC and its server-side roles."""

    name: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def sees_all(self) -> bool:
        return bool(self.roles & {"admin", "broker"})


_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("jitgate_caller")


def caller() -> Caller:
    """The caller of the RPC being served (set by Guard)."""
    return _CALLER.get()


def require_role(role: str, what: str) -> Caller:
    """The caller, if it has `role`; else a PERMISSION_DENIED JitError naming what was refused."""
    who = caller()
    if role not in who.roles:
        raise JitError("permission.denied", f"`{who.name}` may not {what}: it needs the {role} role")
    return who


def status_of(exc: BaseException) -> grpc.Status:
    """The status, detail and code (trailer) a client sees for an exception."""
    if isinstance(exc, JitgateError):
        return rpc_status(exc.code, exc.message)
    return rpc_status(INTERNAL, INTERNAL_DETAIL)


async def _abort(context: grpc.aio.ServicerContext, status: grpc.Status) -> NoReturn:
    """End the RPC with `status` (its code travels in the trailer as ErrorInfo)."""
    await context.abort(status.code, status.details, status.trailing_metadata)


def _no_check(request: Any) -> None:
    """Methods outside jitgate.v1 (only in tests: the server guards jitgate.v1 services only)."""


class Guard(grpc.aio.ServerInterceptor):
    """Authenticates callers and maps errors, for every service."""

    def __init__(self, roles_of: Callable[[str], frozenset[str]]) -> None:
        self._roles_of = roles_of

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        return self.wrap(handler, details.method)

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """`handler` with the caller authenticated and errors mapped."""
        check = request_checker(method) or _no_check
        # grpc's handlers are namedtuples at run time; grpc-stubs types them as a plain class.
        if handler.unary_unary is not None:
            return handler._replace(  # type: ignore[attr-defined]
                unary_unary=self._unary(handler.unary_unary, method, check))
        if handler.unary_stream is not None:
            return handler._replace(  # type: ignore[attr-defined]
                unary_stream=self._stream(handler.unary_stream, method, check))
        return handler  # no client-streaming RPCs in jitgate.v1

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> Caller:
        name = caller_name(context.auth_context())
        if not name:
            await _abort(context, rpc_status("identity.missing", "no client certificate identity"))
        roles = frozenset(self._roles_of(name))
        if not roles:
            await _abort(context, rpc_status(
                "identity.unknown", f"identity `{name}` is not known to the policies in force or the server config"))
        who = Caller(name, roles)
        _CALLER.set(who)
        return who

    async def _fail(self, context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
        status = status_of(exc)
        if status.code == grpc.StatusCode.INTERNAL:
            log.error("%s failed", method, exc_info=exc)
        else:
            log.info("%s refused: %s (%s): %s", method, status.code.name, getattr(exc, "code", ""), status.details)
        await _abort(context, status)

    def _unary(self, inner: Callable[..., Any], method: str, check: Callable[[Any], None]) -> Callable[..., Any]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._authenticate(context)
            try:
                check(request)
                return await inner(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._fail(context, exc, method)

        return behavior

    def _stream(self, inner: Callable[..., Any], method: str, check: Callable[[Any], None]) -> Callable[..., Any]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._authenticate(context)
            try:
                check(request)
                async for item in inner(request, context):
                    yield item
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._fail(context, exc, method)

        return behavior


class GuardedRegistry:
    """What a generated `add_*Servicer_to_server` registers its handlers on: each handler is
    wrapped by the Guard once, at start-up, and registered on the real server.

    The same gate as the interceptor without its per-call cost (grpc.aio runs an
    interceptor chain as extra coroutines on every RPC, and the interceptor wraps the
    handler again each time). Health and reflection are registered on the server directly.
    """

    def __init__(self, server: grpc.aio.Server, guard: Guard) -> None:
        self._server = server
        self._guard = guard

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]  # grpcio >= 1.62, not in grpc-stubs
            service, {name: self._guard.wrap(h, f"/{service}/{name}") for name, h in handlers.items()})

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(tuple(_GuardedGeneric(h, self._guard) for h in handlers))


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose answers are guarded (wrapped once per method, then reused)."""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: Guard) -> None:
        self._inner = inner
        self._guard = guard
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(details)
        if handler is None:
            return None
        hit = self._wrapped.get(details.method)
        if hit is None or hit[0] is not handler:
            hit = self._wrapped[details.method] = (handler, self._guard.wrap(handler, details.method))
        return hit[1]
