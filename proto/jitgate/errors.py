"""jitgate's one error base, its stable codes and the one table from code to gRPC status.

Not generated, and free of grpc and of every service: `ca/`, `policy/`,
`recommend/` and `controlplane/` raise subclasses of `JitgateError`, and every
part already imports the `jitgate` package (like `jitgate.wire`).

A code is stable, lowercase and dotted (`approval.self`, `grant.not_active`);
clients decide on it, never on the message, which is one plain sentence for a
person. The control plane's guard sends the code as google.rpc `ErrorInfo`
(`reason` = code, `domain` = `DOMAIN`) beside the status `status_name(code)`
(`jitgate.status` does both ends). The documented table is `proto/ERRORS.md`;
a test keeps it equal to `CODES` and `PREFIXES`.
"""
from __future__ import annotations

from typing import NamedTuple

# The ErrorInfo domain of jitgate's codes (a code is only read from details in this domain).
DOMAIN = "jitgate.dev"
# What a failure without a code of its own is called (the status is INTERNAL: never its text).
INTERNAL = "internal"


class Code(NamedTuple):
    """A code's gRPC status name and what it means."""

    status: str
    meaning: str


# Every code the control plane raises, with its status. Most specific first: an exact code,
# then its prefix (the part before the first dot) from PREFIXES.
CODES: dict[str, Code] = {
    "approval.duplicate": Code("PERMISSION_DENIED", "the approver already approved a level of this request"),
    "approval.level_order": Code("PERMISSION_DENIED", "a later approval level was given before an earlier one"),
    "approval.not_eligible": Code("PERMISSION_DENIED", "the caller is not among the approvers of the current level"),
    "approval.not_pending": Code("PERMISSION_DENIED", "the request or extension is not waiting for approval"),
    "approval.self": Code("PERMISSION_DENIED", "nobody approves or denies their own request"),
    "approval.two_levels": Code("PERMISSION_DENIED", "one person approves one level of a request, not two"),
    "ca.unavailable": Code("UNAVAILABLE", "the certificate authority needed is not configured"),
    "client.outcome_unknown": Code("UNAVAILABLE", "a client's control plane went away after a call that changes "
                                                  "state was sent; it was not repeated on another plane"),
    "config.invalid": Code("FAILED_PRECONDITION", "the server's configuration is invalid (at start)"),
    "credential.expired": Code("UNAUTHENTICATED", "the presented credential is past its validity"),
    "credential.invalid": Code("UNAUTHENTICATED", "the presented certificate or token was not issued by jitgate "
                                                  "for this grant"),
    "credential.revoked": Code("UNAUTHENTICATED", "the presented certificate is revoked"),
    "duration.over_max": Code("FAILED_PRECONDITION", "the duration asked for is above the policy's maximum"),
    "extension.denied": Code("FAILED_PRECONDITION", "the policies deny the extension"),
    "extension.limit": Code("FAILED_PRECONDITION", "the grant has used all the extensions the policy allows"),
    "extension.pending": Code("FAILED_PRECONDITION", "an extension of the grant is already waiting, or the grant "
                                                     "changed meanwhile"),
    "grant.not_started": Code("FAILED_PRECONDITION", "the grant's scheduled window has not begun"),
    "grant.unclaimed": Code("FAILED_PRECONDITION", "the grant starts at its first session; it cannot be "
                                                   "extended before"),
    "grant.not_active": Code("FAILED_PRECONDITION", "the grant is not active (pending, ended or expired)"),
    "history.already_imported": Code("FAILED_PRECONDITION", "this history file was imported before"),
    "identity.missing": Code("UNAUTHENTICATED", "the caller's certificate names no identity"),
    "identity.unknown": Code("UNAUTHENTICATED", "the caller's identity is not known to the policies or the "
                                                "server config"),
    "internal": Code("INTERNAL", "an unexpected failure; the server log has the details"),
    "invalid.argument": Code("INVALID_ARGUMENT", "a field of the call is missing or malformed"),
    "invalid.enum": Code("INVALID_ARGUMENT", "an enum field has a value the API does not define"),
    "invalid.out_of_range": Code("INVALID_ARGUMENT", "a number or time field is outside its bound"),
    "invalid.too_long": Code("INVALID_ARGUMENT", "a text field is longer than its bound"),
    "invalid.too_many": Code("INVALID_ARGUMENT", "a list field has more items than its bound"),
    "lock.active": Code("PERMISSION_DENIED", "a lock covers this user, resource or login; nothing under it starts"),
    "lock.not_active": Code("FAILED_PRECONDITION", "the lock was already lifted or has ended"),
    "lock.not_found": Code("NOT_FOUND", "there is no such lock"),
    "lock.stale": Code("UNAVAILABLE", "the broker could not learn the lock state for too long; it refuses new "
                                      "sessions until it can"),
    "lock.too_many": Code("FAILED_PRECONDITION", "too many locks are in force"),
    "permission.denied": Code("PERMISSION_DENIED", "the caller's role or ownership does not allow the call"),
    "policy.bad_request": Code("INVALID_ARGUMENT", "a policy request (dry run) is malformed"),
    "policy.invalid": Code("FAILED_PRECONDITION", "a policy set was refused; each problem has its own "
                                                  "`policy.*` code"),
    "recommend.store_unavailable": Code("FAILED_PRECONDITION", "a data directory's store cannot be used for local "
                                                               "history (import, train)"),
    "recommend.unavailable": Code("UNAVAILABLE", "no duration recommendation can be given"),
    "request.exists": Code("ALREADY_EXISTS", "the request already exists"),
    "request.not_found": Code("NOT_FOUND", "there is no such request or grant"),
    "request.not_pending": Code("FAILED_PRECONDITION", "only a pending request or extension can be cancelled"),
    "resource.not_found": Code("NOT_FOUND", "there is no such resource in the policies in force"),
    "review.not_eligible": Code("PERMISSION_DENIED", "the caller is not among the break-glass reviewers"),
    "review.not_owed": Code("PERMISSION_DENIED", "the grant owes no review"),
    "recording.not_found": Code("NOT_FOUND", "no such recording, or none the caller may read"),
    "recording.store_unavailable": Code("UNAVAILABLE", "the recording store cannot be reached now; "
                                                       "the broker keeps its copy and tries again"),
    "recording.unsealed": Code("FAILED_PRECONDITION", "a recording was sent as final without its seal"),
    "review.self": Code("PERMISSION_DENIED", "nobody reviews their own break-glass access"),
    "server.start_failed": Code("FAILED_PRECONDITION", "the server cannot start (data directory, keys, port)"),
    "session.channel_not_allowed": Code("PERMISSION_DENIED", "the grant's policy does not allow this kind of "
                                                             "channel (exec, sftp, port forwarding, ...)"),
    "session.limit": Code("PERMISSION_DENIED", "the grant's sessions (`max_sessions`) were all used"),
    "session.ended": Code("PERMISSION_DENIED", "the session has ended"),
    "session.login_mismatch": Code("PERMISSION_DENIED", "the grant is for another login"),
    "session.not_found": Code("NOT_FOUND", "there is no such session"),
    "session.role_mismatch": Code("PERMISSION_DENIED", "the grant is for another database role"),
    "session.target_mismatch": Code("PERMISSION_DENIED", "the grant is for another resource"),
    "signin.bad_csr": Code("INVALID_ARGUMENT", "the sign-in's certificate signing request is too large, malformed or "
                                               "its key is refused"),
    "signin.bad_lifetime": Code("INVALID_ARGUMENT", "the certificate lifetime asked for at sign-in is outside what "
                                                    "the server allows"),
    "signin.bad_signature": Code("UNAUTHENTICATED", "the ID token's signature does not verify with the provider's key"),
    "signin.busy": Code("UNAVAILABLE", "too many headless sign-ins are waiting; try again later"),
    "signin.claims": Code("UNAUTHENTICATED", "the ID token's user name or groups claim is missing or refused"),
    "signin.device_denied": Code("UNAUTHENTICATED", "the provider ended a headless sign-in (denied or expired)"),
    "signin.email_unverified": Code("UNAUTHENTICATED", "the sign-in uses an email the provider has not verified"),
    "signin.expired": Code("UNAUTHENTICATED", "the ID token has expired"),
    "signin.name_reserved": Code("PERMISSION_DENIED", "the signed-in name is a broker identity"),
    "signin.nonce": Code("UNAUTHENTICATED", "the sign-in's nonce is missing, unknown, expired or already used (a "
                                            "replay)"),
    "signin.pending": Code("FAILED_PRECONDITION", "a headless sign-in is not finished yet: call again after the "
                                                 "interval"),
    "signin.provider_unavailable": Code("UNAVAILABLE", "the identity provider's discovery document or keys cannot be "
                                                       "fetched or used"),
    "signin.step_up": Code("PERMISSION_DENIED", "a rule requires a fresh sign-in (recent or with MFA) for this action"),
    "signin.token_invalid": Code("UNAUTHENTICATED", "the ID token is malformed, too large or a claim is invalid"),
    "signin.unknown_key": Code("UNAUTHENTICATED", "the ID token is signed with a key the provider does not publish"),
    "signin.wrong_audience": Code("UNAUTHENTICATED", "the ID token was issued for another client"),
    "signin.wrong_issuer": Code("UNAUTHENTICATED", "the ID token was issued by another provider"),
    "store.busy": Code("UNAVAILABLE", "the store is busy; the call may be tried again"),
    "store.schema_newer": Code("FAILED_PRECONDITION", "the store's schema is newer than this jitgate knows"),
    "store.unavailable": Code("UNAVAILABLE", "the store cannot be reached; the call may be tried again"),
}

# Any other code: the status of its prefix. Codes of the libraries (`ca/`, `recommend/`,
# `policy/`) are listed by prefix; their messages say which check failed.
PREFIXES: dict[str, Code] = {
    "approval": Code("PERMISSION_DENIED", "an approval was refused"),
    "audit": Code("DATA_LOSS", "the audit log failed a check"),
    "ca": Code("FAILED_PRECONDITION", "a CA key, passphrase or directory cannot be used"),
    "cert": Code("FAILED_PRECONDITION", "an SSH certificate failed parsing or verification"),
    "credential": Code("PERMISSION_DENIED", "a credential was refused"),
    "extension": Code("FAILED_PRECONDITION", "an extension was refused"),
    "grant": Code("FAILED_PRECONDITION", "the grant's state does not allow the call"),
    "identity": Code("UNAUTHENTICATED", "the caller's identity was refused"),
    "invalid": Code("INVALID_ARGUMENT", "a field of the call is invalid"),
    "lock": Code("PERMISSION_DENIED", "a lock refused the call"),
    "policy": Code("FAILED_PRECONDITION", "the policy engine refused (load, check or decision)"),
    "recommend": Code("FAILED_PRECONDITION", "the duration recommender failed (history, model or training)"),
    "request": Code("FAILED_PRECONDITION", "the request's state does not allow the call"),
    "review": Code("PERMISSION_DENIED", "a break-glass review was refused"),
    "session": Code("PERMISSION_DENIED", "a session was refused"),
    "signin": Code("UNAUTHENTICATED", "a sign-in was refused"),
    "ssh": Code("INVALID_ARGUMENT", "an SSH certificate cannot be issued for this input"),
    "x509": Code("INVALID_ARGUMENT", "an X.509 certificate cannot be issued or read for this input"),
}

# A code outside both tables (a bug: the table test lists every raised code).
DEFAULT_STATUS = "FAILED_PRECONDITION"


def status_name(code: str) -> str:
    """The gRPC status name (`"NOT_FOUND"`, ...) for an error code."""
    if code in CODES:
        return CODES[code].status
    prefixed = PREFIXES.get(code.split(".", 1)[0])
    return prefixed.status if prefixed else DEFAULT_STATUS


def is_known(code: str) -> bool:
    """Whether the tables give `code` a status of its own (exactly or by its prefix)."""
    return code in CODES or code.split(".", 1)[0] in PREFIXES


class JitgateError(Exception):
    """Base of every error jitgate raises on purpose: a stable `code` and a plain `message`.

    A subclass sets a class-level `code`, or passes one per raise.
    """

    code: str = INTERNAL

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


__all__ = ["CODES", "DEFAULT_STATUS", "DOMAIN", "INTERNAL", "PREFIXES", "Code", "JitgateError", "is_known",
           "status_name"]
