"""The control plane's error type; codes and their gRPC statuses live in `jitgate.errors`.

Every refusal of the core raises `JitError(code, message)`. The code is stable
and dotted (`approval.self`, `grant.not_active`, listed with its status in
`jitgate.errors.CODES` and `proto/ERRORS.md`); the message is one plain sentence
with user input in backticks. The guard sends both, so a refusal looks the same
from every client.
"""
from __future__ import annotations

from jitgate.errors import JitgateError
from jitgate.errors import status_name as grpc_status_name  # the one table, under its old name here


class JitError(JitgateError):
    """A refusal or failure of the control plane: a stable `code` and a plain `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


__all__ = ["JitError", "grpc_status_name"]
