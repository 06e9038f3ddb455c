"""The bounds of the public API: one table, checked on every request before any servicer runs.

Every field of every `jitgate.v1` request message has a bound here (a test walks
the descriptors and fails on a field without one). `check_request` runs in the
Guard, so no RPC can forget it; a field over its bound is refused with
INVALID_ARGUMENT naming the field and the limit. Enum fields must hold a value
the .proto defines; timestamps must be real times. What the control plane sends
back is bounded too: `clip` cuts text stored before these bounds existed
(visibly marked), and `MAX_ROW_BYTES` / `page_limit` keep every response
within the transport's `MAX_MESSAGE_BYTES` (`jitgate.wire`).

| field | bound | why |
| --- | --- | --- |
| reason, justification, comment, revoke reason | 2 KiB | a few sentences; a person reads it before approving |
| ticket | 256 B | an issue key or a URL |
| ids (request, grant, session, extension, subject) | 64 B | ours are 16 hex characters (`<id>.<n>` for extensions) |
| names (user, resource, login, role, broker, identity) | 128 B | directory and policy names |
| SSH principal (`login@target`) | 320 B | two names and a separator |
| public key line | 8 KiB | a 16384-bit RSA key line is ~2.8 KB |
| SSH certificate line | 16 KiB | a key line plus the CA's key and signature |
| database token | 256 B | ours are 43 characters |
| page token | 32 B | a row number |
| audit event type, kind, channel, end reason, refusal code | 64 B | short words from a fixed vocabulary |
| client address | 256 B | host:port, IPv6 included |
| recording reference / hash | 1 KiB / 256 B | a path or object key / a hex digest |
| WatchEvents `types` | 64 entries | more than every event type there is |
| ListRequests `states` | 16 entries, defined values | there are 7 states |
| durations (CreateRequest, Extend) | over 0 s, at most 366 d | a grant is never longer than a year; keeps deadline arithmetic far from overflow |
| ExportRequests / ExportHistory `days` | 0 (= 90) to 3660 | ten years of history |
| IssueIdentity `days` | 0 (= 90) to 365 | identities are renewed yearly at least |
| page_size, after_seq, byte counters | not negative | page sizes above the page limit are lowered to it |
| policy content, DryRun JSON | the message limit | `policy/` bounds them further |
| ReportRefusal text | cut, not refused | attacker-chosen text a broker reports: the refusal is still audited |

Responses (each within the 1 MiB message limit of `jitgate.wire`):

| what | bound | how |
| --- | --- | --- |
| one request row (with approvals, extensions, decision) | 32 KiB | stored text over its bound is cut and marked `… [cut by jitgate: N bytes, limit L]`; a row still over 32 KiB is sent without its lists, said in `message` |
| ListRequests page | 30 rows | 30 x 32 KiB fits; larger `page_size` is lowered (follow `next_page_token`) |
| ListSessions page | 240 rows | session rows are ids, names and addresses (< 4 KiB) |
| ListEvents page | cut by bytes | `last_seq` is the cursor: the next page starts after the last event sent |
| audit event `data_json` | ~31 KiB | strings cut to 2 KiB, else a note with the size (still valid JSON; such an event cannot be re-hashed by a client) |
| export lines (ExportRequests/History) | ~31 KiB each | as `data_json` |
| dashboard lists | a third of a message each | rows in the core's order while they fit |
| VerifyChain problems | as many as fit | then "... and N more" |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from controlplane.errors import JitError
from jitgate.services import api_methods
from jitgate.wire import MAX_MESSAGE_BYTES

KiB = 1024

# -- text bounds (UTF-8 bytes) -----------------------------------------------------------------
FREE_TEXT = 2 * KiB  # reason, justification, comment: a few sentences a person reads before approving
TICKET = 256  # an issue key or a URL
ID = 64  # our ids are 16 hex characters; extensions add `.<n>`
NAME = 128  # user, resource, login, role, broker and identity names
PRINCIPAL = 2 * NAME + 64  # `login@target`
PUBLIC_KEY = 8 * KiB  # a 16384-bit RSA public key line is ~2.8 KB
CERTIFICATE = 16 * KiB  # a certificate line: the key, the CA's key and its signature
DB_TOKEN = 256  # ours are 43 characters
PAGE_TOKEN = 32  # a row number
WORD = 64  # event types, kinds, channels, end reasons, refusal codes
ADDRESS = 256  # host:port, IPv6 included
RECORDING_REF = 1 * KiB  # a path or object key
DIGEST = 256  # a hex digest with its algorithm name
FILENAME = 256  # a policy file's name, for error positions
# A message the control plane composes around user text (e.g. "revoked by NAME: reason").
COMPOSED_TEXT = FREE_TEXT + NAME + 128

# -- numbers ----------------------------------------------------------------------------------
MAX_DURATION = dt.timedelta(days=366)  # no grant or extension is longer than a year
MAX_EXPORT_DAYS = 3660  # ten years of history
MAX_IDENTITY_DAYS = 365  # identities are renewed at least yearly
MAX_TYPES = 64  # WatchEvents filters: more than every event type there is
MAX_STATES = 16  # ListRequests filters: there are 7 states
INT64_MAX = 2**63 - 1

# -- responses --------------------------------------------------------------------------------
# One row (a request with its approvals and extensions, an audit event, an export line) on the
# wire: every field at its bound with two extensions and two approvals is ~20 KiB.
MAX_ROW_BYTES = 32 * KiB
# Room for a response's own fields (page token, counters) besides its rows.
_RESPONSE_SLACK = 64 * KiB
# Rows per page of requests (the largest rows): what fits in one message at MAX_ROW_BYTES each.
MAX_REQUEST_PAGE = (MAX_MESSAGE_BYTES - _RESPONSE_SLACK) // MAX_ROW_BYTES
# A session row is all ids, names and addresses: at most ~2.5 KiB with every field at its bound.
MAX_SESSION_ROW_BYTES = 4 * KiB
MAX_SESSION_PAGE = (MAX_MESSAGE_BYTES - _RESPONSE_SLACK) // MAX_SESSION_ROW_BYTES
# The bytes a response may spend on rows (audit pages and dashboards are cut by bytes).
ROWS_BUDGET = MAX_MESSAGE_BYTES - _RESPONSE_SLACK


@dataclass(frozen=True)
class Text:
    """A string field: at most `limit` UTF-8 bytes; `clip` cuts (marked) instead of refusing."""

    limit: int
    clip: bool = False


@dataclass(frozen=True)
class Many:
    """A repeated or map field: at most `count` entries, each string (map: key) within `each`;
    `clip` keeps the first `count` (map: the `count` largest values) and cuts each, instead of refusing."""

    count: int
    each: Text | None = None
    clip: bool = False


@dataclass(frozen=True)
class Range:
    """A number (or a Duration, in seconds): `low <= value <= high`; `low_open` excludes `low`."""

    low: float
    high: float
    low_open: bool = False


Bound = Text | Many | Range

_NOT_NEGATIVE = Range(0, INT64_MAX)
_PAGE_SIZE = Range(0, 2**31 - 1)  # above the page limit: lowered to it
_DURATION = Range(0, MAX_DURATION.total_seconds(), low_open=True)
_BY_POLICY = Text(MAX_MESSAGE_BYTES)  # policy/ bounds the content further

# Every field of every request message, as "<Message>.<field>".
FIELDS: dict[str, Bound] = {
    # AccessService
    "CreateRequestRequest.resource": Text(NAME),
    "CreateRequestRequest.login": Text(NAME),
    "CreateRequestRequest.role": Text(NAME),
    "CreateRequestRequest.duration": _DURATION,
    "CreateRequestRequest.reason": Text(FREE_TEXT),
    "CreateRequestRequest.ticket": Text(TICKET),
    "GetRequestRequest.id": Text(ID),
    "ListRequestsRequest.user": Text(NAME),
    "ListRequestsRequest.resource": Text(NAME),
    "ListRequestsRequest.states": Many(MAX_STATES),
    "ListRequestsRequest.page_size": _PAGE_SIZE,
    "ListRequestsRequest.page_token": Text(PAGE_TOKEN),
    "DecideRequest.id": Text(ID),
    "DecideRequest.comment": Text(FREE_TEXT),
    "CancelRequest.id": Text(ID),
    "ExtendRequest.id": Text(ID),
    "ExtendRequest.duration": _DURATION,
    "ExtendRequest.justification": Text(FREE_TEXT),
    "RevokeRequest.id": Text(ID),
    "RevokeRequest.reason": Text(FREE_TEXT),
    "ReviewRequest.id": Text(ID),
    "ReviewRequest.comment": Text(FREE_TEXT),
    "RecommendDurationRequest.resource": Text(NAME),
    "RecommendDurationRequest.login": Text(NAME),
    "RecommendDurationRequest.role": Text(NAME),
    "RecommendDurationRequest.reason": Text(FREE_TEXT),
    "RecommendDurationRequest.ticket": Text(TICKET),
    "RecommendDurationRequest.request_id": Text(ID),
    "IssueSshCertificateRequest.grant_id": Text(ID),
    "IssueSshCertificateRequest.public_key": Text(PUBLIC_KEY),
    "IssueDatabaseTokenRequest.grant_id": Text(ID),
    "ListSessionsRequest.grant_id": Text(ID),
    "ListSessionsRequest.user": Text(NAME),
    "ListSessionsRequest.resource": Text(NAME),
    "ListSessionsRequest.page_size": _PAGE_SIZE,
    "ListSessionsRequest.page_token": Text(PAGE_TOKEN),
    "GetSessionRequest.id": Text(ID),
    "WatchEventsRequest.types": Many(MAX_TYPES, Text(WORD)),
    # BrokerService
    "AuthorizeSessionRequest.broker": Text(NAME),
    "AuthorizeSessionRequest.kind": Text(WORD),
    "AuthorizeSessionRequest.resource": Text(NAME),
    "AuthorizeSessionRequest.login": Text(NAME),
    "AuthorizeSessionRequest.role": Text(NAME),
    "AuthorizeSessionRequest.client_address": Text(ADDRESS),
    "AuthorizeSessionRequest.channel": Text(WORD),
    "SshCredential.key_id": Text(ID),
    "SshCredential.principal": Text(PRINCIPAL),
    "SshCredential.certificate": Text(CERTIFICATE),
    "DatabaseCredential.token": Text(DB_TOKEN),
    "IssueUpstreamCertificateRequest.session_id": Text(ID),
    "IssueUpstreamCertificateRequest.public_key": Text(PUBLIC_KEY),
    "ReportSessionEndRequest.session_id": Text(ID),
    "ReportSessionEndRequest.reason": Text(WORD),
    "ReportSessionEndRequest.bytes_in": _NOT_NEGATIVE,
    "ReportSessionEndRequest.bytes_out": _NOT_NEGATIVE,
    "ReportSessionEndRequest.recording_ref": Text(RECORDING_REF),
    "ReportSessionEndRequest.recording_hash": Text(DIGEST),
    "ReportActivityRequest.session_id": Text(ID),
    "ReportActivityRequest.bytes_in": _NOT_NEGATIVE,
    "ReportActivityRequest.bytes_out": _NOT_NEGATIVE,
    # A refusal report carries attacker-chosen text: cut, never refused, so the refusal is still audited.
    "ReportRefusalRequest.broker": Text(NAME, clip=True),
    "ReportRefusalRequest.kind": Text(WORD, clip=True),
    "ReportRefusalRequest.user": Text(2 * NAME, clip=True),
    "ReportRefusalRequest.resource": Text(NAME, clip=True),
    "ReportRefusalRequest.code": Text(WORD, clip=True),
    "ReportRefusalRequest.message": Text(512, clip=True),
    "ReportRefusalRequest.client_address": Text(ADDRESS, clip=True),
    "ReportRefusalRequest.count": _NOT_NEGATIVE,
    # about a dozen codes exist; a person reads a few names tried
    "ReportRefusalRequest.codes": Many(32, Text(WORD, clip=True), clip=True),
    "ReportRefusalRequest.samples": Many(8, Text(NAME, clip=True), clip=True),
    # AuditService
    "ListEventsRequest.after_seq": _NOT_NEGATIVE,
    "ListEventsRequest.type": Text(WORD),
    "ListEventsRequest.subject": Text(NAME),
    "ListEventsRequest.page_size": _PAGE_SIZE,
    "ExportEventsRequest.after_seq": _NOT_NEGATIVE,
    "ExportRequestsRequest.days": Range(0, MAX_EXPORT_DAYS),
    "ExportHistoryRequest.days": Range(0, MAX_EXPORT_DAYS),
    # AdminService
    "IssueIdentityRequest.name": Text(NAME),
    "IssueIdentityRequest.days": Range(0, MAX_IDENTITY_DAYS),
    # LockService (until: a timestamp, checked by type)
    "CreateLockRequest.target": Text(WORD),
    "CreateLockRequest.value": Text(NAME),
    "CreateLockRequest.reason": Text(FREE_TEXT),
    "DeleteLockRequest.id": Text(ID),
    "DeleteLockRequest.reason": Text(FREE_TEXT),
    # GrantLifecycleService
    "ReleaseRequest.id": Text(ID),
    # PolicyService (policy/ checks the content itself)
    "ValidatePolicyRequest.content": _BY_POLICY,
    "ValidatePolicyRequest.filename": Text(FILENAME),
    "DryRunRequest.request_json": _BY_POLICY,
    # RecordingService (controlplane/recordings.py bounds one append's payload further)
    "PublishSealKeyRequest.public_key": Text(PUBLIC_KEY),
    "AppendRecordingRequest.ref": Text(RECORDING_REF),
    "AppendRecordingRequest.session_id": Text(ID),
    "AppendRecordingRequest.kind": Text(WORD),
    "AppendRecordingRequest.metadata_json": Text(16 * KiB),
    "AppendRecordingRequest.started_at": Range(0, 1e11),
    "AppendRecordingRequest.data": Text(MAX_MESSAGE_BYTES),
    "AppendRecordingRequest.chain": Text(MAX_MESSAGE_BYTES),
    "ListRecordingsRequest.session_id": Text(RECORDING_REF),
    "ListRecordingsRequest.user": Text(NAME),
    "ListRecordingsRequest.kind": Text(WORD),
    "ListRecordingsRequest.page_size": _PAGE_SIZE,
    "ListRecordingsRequest.page_token": Text(PAGE_TOKEN),
    "ReadRecordingRequest.ref": Text(RECORDING_REF),
    "ReadRecordingRequest.purpose": Text(WORD),
    "WatchRecordingRequest.ref": Text(RECORDING_REF),
    "SearchRecordingsRequest.text": Text(FREE_TEXT),
    "SearchRecordingsRequest.session_id": Text(RECORDING_REF),
    "SearchRecordingsRequest.kind": Text(WORD),
    "SearchRecordingsRequest.limit_per_recording": Range(0, 10_000),
    "HoldRecordingRequest.session_id": Text(RECORDING_REF),
    "HoldRecordingRequest.reason": Text(FREE_TEXT),
}


# -- checking requests -------------------------------------------------------------------------


def _utf8_len(value: str | bytes) -> int:
    if isinstance(value, bytes):  # a bytes field (recording parts): its length is its size
        return len(value)
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def _too_long(name: str, size: int, limit: int) -> JitError:
    return JitError("invalid.too_long", f"`{name}` is {size} bytes; the limit is {limit} bytes")


def clip(value: str, limit: int) -> str:
    """`value` if it fits in `limit` UTF-8 bytes, else its start and a visible mark of the cut."""
    if len(value) <= limit // 4 or _utf8_len(value) <= limit:
        return value
    size = _utf8_len(value)
    head = value.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")
    return f"{head}… [cut by jitgate: {size} bytes, limit {limit}]"


def _seconds(duration: Any) -> float:
    return duration.seconds + duration.nanos / 1e9


_TIMESTAMP_MIN = -62135596800  # 0001-01-01T00:00:00Z, protobuf's Timestamp range
_TIMESTAMP_MAX = 253402300799  # 9999-12-31T23:59:59Z


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.9g}"


def _range_text(bound: Range) -> str:
    low = f"over {_num(bound.low)}" if bound.low_open else f"at least {_num(bound.low)}"
    return f"{low} and at most {_num(bound.high)}"


Check = Callable[[Any, str], None]


def _text_check(field: str, bound: Text) -> Check:
    def check(msg: Any, prefix: str) -> None:
        value = getattr(msg, field)
        if len(value) <= bound.limit // 4:
            return
        size = _utf8_len(value)
        if size > bound.limit:
            if bound.clip:
                setattr(msg, field, clip(value, bound.limit))
            else:
                raise _too_long(prefix + field, size, bound.limit)

    return check


def _many_check(field: str, bound: Many, is_map: bool = False) -> Check:
    def check(msg: Any, prefix: str) -> None:
        values = getattr(msg, field)
        if len(values) > bound.count:
            if not bound.clip:
                raise JitError(
                    "invalid.too_many", f"`{prefix + field}` has {len(values)} entries; the limit is {bound.count}"
                )
            if is_map:
                for key in sorted(values, key=lambda k: -values[k])[bound.count :]:
                    del values[key]
            else:
                del values[bound.count :]
        if bound.each is None:
            return
        if is_map:
            _clip_map_keys(values, prefix + field, bound.each)
            return
        for i, value in enumerate(values):
            size = _utf8_len(value)
            if size > bound.each.limit:
                if not bound.each.clip:
                    raise _too_long(f"{prefix + field}[]", size, bound.each.limit)
                values[i] = clip(value, bound.each.limit)

    return check


def _clip_map_keys(values: Any, field: str, each: Text) -> None:
    for key in [k for k in values if _utf8_len(k) > each.limit]:
        if not each.clip:
            raise _too_long(f"{field}{{}}", _utf8_len(key), each.limit)
        cut = clip(key, each.limit)
        values[cut] = values[cut] + values[key] if cut in values else values[key]
        del values[key]


def _number_check(field: str, bound: Range, seconds: bool = False) -> Check:
    def check(msg: Any, prefix: str) -> None:
        if seconds and not msg.HasField(field):
            return
        value = _seconds(getattr(msg, field)) if seconds else getattr(msg, field)
        low_ok = value > bound.low if bound.low_open else value >= bound.low
        if not (low_ok and value <= bound.high):
            unit = f" seconds ({_num(bound.high / 86400)} days)" if seconds else ""
            raise JitError(
                "invalid.out_of_range",
                f"`{prefix + field}` is {_num(value)}{' seconds' if seconds else ''}; "
                f"it must be {_range_text(bound)}{unit}",
            )

    return check


def _enum_check(fd: FieldDescriptor) -> Check:
    assert fd.enum_type is not None
    allowed = frozenset(v.number for v in fd.enum_type.values)
    repeated = fd.is_repeated

    def check(msg: Any, prefix: str) -> None:
        values = getattr(msg, fd.name) if repeated else (getattr(msg, fd.name),)
        for value in values:
            if value not in allowed:
                raise JitError(
                    "invalid.enum",
                    f"`{prefix + fd.name}` has no value {value} "
                    f"(allowed: {', '.join(str(n) for n in sorted(allowed))})",
                )

    return check


def _timestamp_check(field: str) -> Check:
    def check(msg: Any, prefix: str) -> None:
        if msg.HasField(field):
            ts = getattr(msg, field)
            if not (_TIMESTAMP_MIN <= ts.seconds <= _TIMESTAMP_MAX and 0 <= ts.nanos < 10**9):
                raise JitError("invalid.out_of_range", f"`{prefix + field}` is not a time between years 1 and 9999")

    return check


def _nested_check(field: str, inner: Callable[[Any, str], None]) -> Check:
    def check(msg: Any, prefix: str) -> None:
        if msg.HasField(field):
            inner(getattr(msg, field), f"{prefix}{field}.")

    return check


class MissingBound(Exception):
    """A request field has no bound in FIELDS (a test keeps the table complete)."""


def _compile(desc: Descriptor) -> Callable[[Any, str], None]:
    checks: list[Check] = []
    for fd in desc.fields:
        key = f"{desc.name}.{fd.name}"
        bound = FIELDS.get(key)
        if fd.type == FieldDescriptor.TYPE_ENUM:
            checks.append(_enum_check(fd))
            if isinstance(bound, Many):
                checks.append(_many_check(fd.name, bound))
            continue
        if fd.type == FieldDescriptor.TYPE_BOOL or (fd.type == FieldDescriptor.TYPE_UINT64 and bound is None):
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            assert fd.message_type is not None
            full = fd.message_type.full_name
            if fd.message_type.GetOptions().map_entry:
                if not isinstance(bound, Many):
                    raise MissingBound(key)
                checks.append(_many_check(fd.name, bound, is_map=True))
            elif full == "google.protobuf.Timestamp":
                checks.append(_timestamp_check(fd.name))
            elif full == "google.protobuf.Duration":
                if not isinstance(bound, Range):
                    raise MissingBound(key)
                checks.append(_number_check(fd.name, bound, seconds=True))
            else:
                checks.append(_nested_check(fd.name, _compile(fd.message_type)))
            continue
        if bound is None:
            raise MissingBound(key)
        if isinstance(bound, Many):
            checks.append(_many_check(fd.name, bound))
        elif isinstance(bound, Text):
            checks.append(_text_check(fd.name, bound))
        else:
            checks.append(_number_check(fd.name, bound))
    frozen = tuple(checks)

    def check_all(msg: Any, prefix: str) -> None:
        for check in frozen:
            check(msg, prefix)

    return check_all


def _request_types_by_method() -> dict[str, Descriptor]:
    """ "/jitgate.v1.<Service>/<Method>" -> its input message, for every RPC of every service."""
    return {path: method.input_type for path, method in api_methods().items()}


def request_types() -> list[Descriptor]:
    """The input message of every RPC of every jitgate.v1 service."""
    return list({d.full_name: d for d in _request_types_by_method().values()}.values())


_CHECKERS: dict[str, Callable[[Any, str], None]] = {d.full_name: _compile(d) for d in request_types()}
_CHECKERS_BY_METHOD: dict[str, Callable[[Any, str], None]] = {
    method: _CHECKERS[d.full_name] for method, d in _request_types_by_method().items()
}


def check_request(msg: Any) -> None:
    """Refuse (JitError, INVALID_ARGUMENT) a request with a field outside its bound; clip `clip` fields."""
    checker = _CHECKERS.get(msg.DESCRIPTOR.full_name)
    if checker is None:
        raise JitError("invalid.argument", f"no bounds are known for `{msg.DESCRIPTOR.full_name}`")
    checker(msg, "")


def request_checker(method: str) -> Callable[[Any], None] | None:
    """`check_request` for the input of RPC `method` ("/jitgate.v1.AccessService/CreateRequest");
    None for a method outside jitgate.v1 (health, reflection)."""
    checker = _CHECKERS_BY_METHOD.get(method)
    if checker is None:
        return None
    return lambda msg: checker(msg, "")


def page_limit(asked: int, maximum: int, default: int = 50) -> int:
    """The page size to serve: the default when 0, at most `maximum` (AIP-158: lowered, not refused)."""
    return min(asked or default, maximum)


__all__ = [
    "FIELDS",
    "FREE_TEXT",
    "MAX_DURATION",
    "MAX_REQUEST_PAGE",
    "MAX_ROW_BYTES",
    "MAX_SESSION_PAGE",
    "MAX_SESSION_ROW_BYTES",
    "ROWS_BUDGET",
    "Many",
    "MissingBound",
    "Range",
    "Text",
    "check_request",
    "clip",
    "page_limit",
    "request_checker",
    "request_types",
]
