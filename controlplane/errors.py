"""The control plane's one error type, with stable codes and one table to gRPC statuses.

Every refusal of the core raises `JitError(code, message)`. The code is stable
and dotted (`approval.self`, `grant.not_active`); the message is one plain
sentence with user input in backticks. The API maps `grpc_status_name(code)` to
`grpc.StatusCode[name]`, so a refusal looks the same from every client.
"""
from __future__ import annotations

# Most specific first: an exact code, then its prefix (the part before the dot).
_STATUS_BY_CODE: dict[str, str] = {
    "request.not_found": "NOT_FOUND",
    "extension.not_found": "NOT_FOUND",
    "session.not_found": "NOT_FOUND",
    "resource.not_found": "NOT_FOUND",
    "request.exists": "ALREADY_EXISTS",
    "permission.denied": "PERMISSION_DENIED",
    "identity.unknown": "UNAUTHENTICATED",
    "credential.invalid": "UNAUTHENTICATED",
    "credential.revoked": "UNAUTHENTICATED",
    "credential.expired": "UNAUTHENTICATED",
    "invalid.argument": "INVALID_ARGUMENT",
    "duration.over_max": "FAILED_PRECONDITION",
    "recommend.unavailable": "UNAVAILABLE",
    "ca.unavailable": "UNAVAILABLE",
    "store.busy": "UNAVAILABLE",
    "internal": "INTERNAL",
}
_STATUS_BY_PREFIX: dict[str, str] = {
    "approval": "PERMISSION_DENIED",
    "review": "PERMISSION_DENIED",
    "session": "PERMISSION_DENIED",
    "credential": "PERMISSION_DENIED",
    "request": "FAILED_PRECONDITION",
    "grant": "FAILED_PRECONDITION",
    "extension": "FAILED_PRECONDITION",
    "policy": "FAILED_PRECONDITION",
    "invalid": "INVALID_ARGUMENT",
    "audit": "DATA_LOSS",
}


class JitError(Exception):
    """A refusal or failure of the control plane: a stable `code` and a plain `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"JitError({self.code!r}, {self.message!r})"


def grpc_status_name(code: str) -> str:
    """The gRPC status name (`"NOT_FOUND"`, ...) for an error code; unknown codes -> FAILED_PRECONDITION."""
    if code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[code]
    prefix = code.split(".", 1)[0]
    return _STATUS_BY_PREFIX.get(prefix, "FAILED_PRECONDITION")
