"""A jitgate error on the wire: gRPC status + message + google.rpc `ErrorInfo` with the code.

Not generated. The control plane's guard builds the status with `rpc_status`
(one code, one place: `jitgate.errors.status_name`); every client (CLI,
brokers) reads the code back with `reason_of`, so it decides on the code and
never on the message text:

    server:  status = rpc_status("approval.self", "you cannot approve your own request")
             await context.abort(status.code, status.details, status.trailing_metadata)
    client:  except grpc.RpcError as exc: reason_of(exc) == "approval.self"

The details travel in the `grpc-status-details-bin` trailer, which gRPC bounds
(its metadata limit, 8 KiB by default): a client never parses more than that.
"""
from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status as _grpc_rpc_status

from jitgate.errors import DOMAIN, status_name

# The trailer gRPC's rich error model uses (what grpc_status.rpc_status writes and reads).
DETAILS_KEY = "grpc-status-details-bin"


def rpc_status(code: str, message: str) -> grpc.Status:
    """The status a client sees for a refusal with `code`: its gRPC status, `message`, and
    `ErrorInfo(reason=code, domain=DOMAIN)` in the details."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=code, domain=DOMAIN))
    status = grpc.StatusCode[status_name(code)]
    return _grpc_rpc_status.to_status(status_pb2.Status(code=status.value[0], message=message, details=[info]))


def _details_blobs(metadata: Any) -> list[bytes]:
    """The `grpc-status-details-bin` values of sync (tuple of pairs) or aio (Metadata) trailers."""
    if metadata is None:
        return []
    if hasattr(metadata, "get_all"):  # grpc.aio.Metadata
        return [v for v in metadata.get_all(DETAILS_KEY) if isinstance(v, bytes)]
    return [v for k, v in metadata if k == DETAILS_KEY and isinstance(v, bytes)]


def reason_of(exc: BaseException) -> str:
    """The jitgate code an RPC failed with (ErrorInfo.reason in our domain), or "" if it carries none
    (a server before codes, a transport failure, a malformed trailer)."""
    trailers = getattr(exc, "trailing_metadata", None)
    if not callable(trailers):
        return ""
    try:
        blobs = _details_blobs(trailers())
    except Exception:  # a half-dead call may not have trailers: no code, never a crash
        return ""
    for blob in blobs:
        status = status_pb2.Status()
        try:
            status.ParseFromString(blob)
        except Exception:  # protobuf's DecodeError: a malformed trailer carries no code
            continue
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == DOMAIN:
                return info.reason
    return ""


__all__ = ["DETAILS_KEY", "reason_of", "rpc_status"]
