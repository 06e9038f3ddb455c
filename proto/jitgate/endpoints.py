"""Several control-plane addresses: the one rule for parsing, order and failover.

The CLI and both brokers take `--server a,b` (or `JITGATE_SERVER=a,b`); this
module is all they share about it, without sockets (the I/O is
`cli/failover.py` for the CLI's blocking gRPC and `broker/failover.py` for the
brokers' asyncio gRPC).

Parsing: a comma-separated list of `HOST:PORT` (`[::1]:7443` for IPv6), at
most `MAX_SERVERS`, no duplicates, checked when the command line is read.

Order: the list as written. A client keeps using the address that last
answered (sticky: no flapping between planes, and a watch stays where the calls
go) and moves on to the next one, wrapping round, only when that one cannot be
reached. Every plane is active (issue 16), so any of them may serve any call.

Failover policy, per call:
1. The channel to the address could not connect within `CONNECT_TIMEOUT`
   (refused, unreachable, TLS never up): the call was never sent, so any call,
   CreateRequest included, goes on to the next address.
2. The call was sent and failed with a status of `UNREACHABLE` (the plane died
   or hung mid-call): it goes on to the next address only if its method is in
   `RETRY_AFTER_SEND` (reads, and writes whose repeat is a no-op, such as
   ReportSessionEnd, which the control plane takes once per session).
   Everything else (CreateRequest, Approve, AuthorizeSession, issuing
   credentials, ...) may have been applied on the plane that died, so it is
   not repeated: the caller gets `OUTCOME_UNKNOWN` and decides (a person
   checks `jitgate requests`; a broker refuses that one login, fail closed,
   and the next login goes to the next plane).
3. Any other status, and any status carrying a jitgate error code (`store.busy`
   is UNAVAILABLE, but the plane said it), is the plane's answer: returned as
   it is, never retried.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from jitgate.errors import JitgateError

# More addresses than this is a mistake, not a deployment (each dead one costs a connect timeout).
MAX_SERVERS = 16
MAX_LIST_CHARS = 4096
# How long a client waits for a channel to one address to come up before trying the next.
CONNECT_TIMEOUT = 2.0

# Statuses that mean "the plane went away", not "the plane said no".
UNREACHABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})

OUTCOME_UNKNOWN = "client.outcome_unknown"

_ACCESS = "/jitgate.v1.AccessService/"
_BROKER = "/jitgate.v1.BrokerService/"
_POLICY = "/jitgate.v1.PolicyService/"
_AUDIT = "/jitgate.v1.AuditService/"
_ADMIN = "/jitgate.v1.AdminService/"
_RECORDINGS = "/jitgate.v1.RecordingService/"
_LOCKS = "/jitgate.v1.LockService/"
_LIFECYCLE = "/jitgate.v1.GrantLifecycleService/"

# Sent and then unanswered, these are tried on the next plane: they change nothing, or a repeat
# changes nothing more (ReportSessionEnd: a second report returns the first; ReportActivity sets
# the last activity and keeps the larger byte counts). A test checks every method of every
# service is in exactly one of these two sets.
RETRY_AFTER_SEND = frozenset({
    _ACCESS + "WhoAmI", _ACCESS + "GetRequest", _ACCESS + "ListRequests", _ACCESS + "RecommendDuration",
    _ACCESS + "GetDashboard", _ACCESS + "ListSessions", _ACCESS + "GetSession", _ACCESS + "WatchEvents",
    _ACCESS + "WatchEventBatches",
    _BROKER + "ReportSessionEnd", _BROKER + "ReportActivity", _BROKER + "GetTrust",
    _POLICY + "GetPolicy", _POLICY + "ValidatePolicy", _POLICY + "DryRun", _POLICY + "ListResources",
    _AUDIT + "ListEvents", _AUDIT + "ExportEvents", _AUDIT + "VerifyChain", _AUDIT + "ExportRequests",
    _AUDIT + "ExportHistory",
    _ADMIN + "GetSshCa",
    # AppendRecording writes only at the offsets the store holds (a repeat is answered with them).
    _RECORDINGS + "PublishSealKey", _RECORDINGS + "AppendRecording", _RECORDINGS + "ListSealKeys",
    _RECORDINGS + "ListRecordings", _RECORDINGS + "ReadRecording", _RECORDINGS + "WatchRecording",
    _RECORDINGS + "SearchRecordings", _LOCKS + "ListLocks",
})
# Sent once: a repeat would make a second request, approval vote, session record, credential or
# audit event. Tried on the next plane only when the first never reached a server.
ONCE = frozenset({
    _ACCESS + "CreateRequest", _ACCESS + "Approve", _ACCESS + "Deny", _ACCESS + "Cancel", _ACCESS + "Extend",
    _ACCESS + "Revoke", _ACCESS + "Review", _ACCESS + "IssueSshCertificate", _ACCESS + "IssueDatabaseToken",
    _BROKER + "AuthorizeSession", _BROKER + "IssueUpstreamCertificate", _BROKER + "ReportRefusal",
    _ADMIN + "IssueIdentity", _RECORDINGS + "HoldRecording", _LOCKS + "CreateLock", _LOCKS + "DeleteLock",
    _LIFECYCLE + "Release",
})

_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):([0-9]{1,5})$")


class ServerListError(JitgateError, ValueError):
    """A `--server` / `JITGATE_SERVER` value that is not a list of HOST:PORT."""

    code = "invalid.argument"


def _check_address(text: str, whole: str) -> str:
    m = _HOSTPORT.match(text)
    if not m:
        raise ServerListError(f"control-plane address `{text}` in `{whole}` is not HOST:PORT")
    host, port = m.group(1), int(m.group(2))
    if not 0 < port <= 65535:
        raise ServerListError(f"port {port} of `{text}` is out of range (1-65535)")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ServerListError(f"`{host}` in `{text}` is not an IPv6 address") from None
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ServerListError(f"`{host}` in `{text}` is not a host name or address")
    return text


def parse_servers(text: str) -> tuple[str, ...]:
    """`a:1,b:2` -> ("a:1", "b:2"); ServerListError (a plain sentence) for anything else."""
    if len(text) > MAX_LIST_CHARS:
        raise ServerListError(f"the control-plane address list is longer than {MAX_LIST_CHARS} characters")
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ServerListError(f"`{text}` has an empty control-plane address (write a,b with HOST:PORT each)")
    if len(parts) > MAX_SERVERS:
        raise ServerListError(f"{len(parts)} control-plane addresses; at most {MAX_SERVERS}")
    seen: set[str] = set()
    for p in parts:
        _check_address(p, text)
        if p in seen:
            raise ServerListError(f"control-plane address `{p}` is listed twice in `{text}`")
        seen.add(p)
    return tuple(parts)


def retry_after_send(method: str) -> bool:
    """Whether a call of `method` (full gRPC name) that reached a plane which then went away is
    tried on the next one. Unknown methods are not (a new write must be classified first)."""
    return method in RETRY_AFTER_SEND


def short_method(method: str) -> str:
    """`/jitgate.v1.AccessService/GetRequest` -> `GetRequest` (for messages)."""
    return method.rsplit("/", 1)[-1]


def outcome_unknown_message(method: str, address: str) -> str:
    name = short_method(method)
    return (f"the control plane at {address} became unreachable after {name} was sent; it may or may not "
            f"have been applied, so it was not repeated on another control plane: check before trying again")


class OutcomeUnknown(JitgateError):
    """A call that changes state was sent, and its plane went away before answering."""

    code = OUTCOME_UNKNOWN

    def __init__(self, method: str, address: str) -> None:
        super().__init__(outcome_unknown_message(method, address))
        self.method = method
        self.address = address


@dataclass
class ServerList:
    """The addresses of one client and which one it uses now (one object per client, never shared
    between processes). `order()` is the sequence one call tries; `answered`/`unreachable` move
    the current address as the policy above says."""

    addresses: tuple[str, ...]
    _current: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ServerListError("no control-plane address")

    @classmethod
    def parse(cls, text: str) -> ServerList:
        return cls(parse_servers(text))

    @property
    def current(self) -> str:
        return self.addresses[self._current]

    @property
    def text(self) -> str:
        """The list as one would write it again (`a,b`)."""
        return ",".join(self.addresses)

    def order(self) -> list[str]:
        """Every address once, the current one first, then the rest in list order (wrapping)."""
        n = len(self.addresses)
        return [self.addresses[(self._current + i) % n] for i in range(n)]

    def answered(self, address: str) -> None:
        """`address` answered: calls go there until it cannot be reached."""
        if address in self.addresses:
            self._current = self.addresses.index(address)

    def unreachable(self, address: str) -> None:
        """`address` could not be reached: if it is the current one, the next becomes current."""
        if self.addresses[self._current] == address:
            self._current = (self._current + 1) % len(self.addresses)


@dataclass(frozen=True)
class Verdict:
    """What to do after one attempt on one address."""

    next_address: bool  # try the next address
    outcome_unknown: bool = False  # give up: the call may have been applied


def after_failure(method: str, status: str, sent: bool, reason: str = "") -> Verdict:
    """The policy for one failed attempt (`status`: the gRPC status name; `sent`: the channel was up;
    `reason`: the jitgate error code the plane sent, "" when none came)."""
    if not sent:
        return Verdict(next_address=True)
    if status not in UNREACHABLE or reason:
        return Verdict(next_address=False)
    if retry_after_send(method):
        return Verdict(next_address=True)
    return Verdict(next_address=False, outcome_unknown=True)


__all__ = [
    "CONNECT_TIMEOUT", "MAX_SERVERS", "ONCE", "OUTCOME_UNKNOWN", "RETRY_AFTER_SEND", "UNREACHABLE",
    "OutcomeUnknown", "ServerList", "ServerListError", "Verdict", "after_failure", "outcome_unknown_message",
    "parse_servers", "retry_after_send", "short_method",
]
