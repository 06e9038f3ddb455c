import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jitgate.v1 import locks_pb2 as _locks_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_STATE_UNSPECIFIED: _ClassVar[RequestState]
    REQUEST_STATE_PENDING: _ClassVar[RequestState]
    REQUEST_STATE_ACTIVE: _ClassVar[RequestState]
    REQUEST_STATE_DENIED: _ClassVar[RequestState]
    REQUEST_STATE_CANCELLED: _ClassVar[RequestState]
    REQUEST_STATE_TIMED_OUT: _ClassVar[RequestState]
    REQUEST_STATE_EXPIRED: _ClassVar[RequestState]
    REQUEST_STATE_REVOKED: _ClassVar[RequestState]
    REQUEST_STATE_CLAIM_EXPIRED: _ClassVar[RequestState]

class ReviewState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_STATE_UNSPECIFIED: _ClassVar[ReviewState]
    REVIEW_STATE_OWED: _ClassVar[ReviewState]
    REVIEW_STATE_REVIEWED: _ClassVar[ReviewState]
    REVIEW_STATE_FLAGGED: _ClassVar[ReviewState]

class ExtensionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXTENSION_STATE_UNSPECIFIED: _ClassVar[ExtensionState]
    EXTENSION_STATE_PENDING: _ClassVar[ExtensionState]
    EXTENSION_STATE_APPROVED: _ClassVar[ExtensionState]
    EXTENSION_STATE_DENIED: _ClassVar[ExtensionState]
    EXTENSION_STATE_CANCELLED: _ClassVar[ExtensionState]
REQUEST_STATE_UNSPECIFIED: RequestState
REQUEST_STATE_PENDING: RequestState
REQUEST_STATE_ACTIVE: RequestState
REQUEST_STATE_DENIED: RequestState
REQUEST_STATE_CANCELLED: RequestState
REQUEST_STATE_TIMED_OUT: RequestState
REQUEST_STATE_EXPIRED: RequestState
REQUEST_STATE_REVOKED: RequestState
REQUEST_STATE_CLAIM_EXPIRED: RequestState
REVIEW_STATE_UNSPECIFIED: ReviewState
REVIEW_STATE_OWED: ReviewState
REVIEW_STATE_REVIEWED: ReviewState
REVIEW_STATE_FLAGGED: ReviewState
EXTENSION_STATE_UNSPECIFIED: ExtensionState
EXTENSION_STATE_PENDING: ExtensionState
EXTENSION_STATE_APPROVED: ExtensionState
EXTENSION_STATE_DENIED: ExtensionState
EXTENSION_STATE_CANCELLED: ExtensionState

class ApprovalLevel(_message.Message):
    __slots__ = ("approvers", "min")
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    approvers: _containers.RepeatedScalarFieldContainer[str]
    min: int
    def __init__(self, approvers: _Optional[_Iterable[str]] = ..., min: _Optional[int] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("mode", "levels", "review")
    MODE_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    mode: str
    levels: _containers.RepeatedCompositeFieldContainer[ApprovalLevel]
    review: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mode: _Optional[str] = ..., levels: _Optional[_Iterable[_Union[ApprovalLevel, _Mapping]]] = ..., review: _Optional[_Iterable[str]] = ...) -> None: ...

class SessionOptions(_message.Message):
    __slots__ = ("pty", "exec", "sftp", "port_forwarding")
    PTY_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    SFTP_FIELD_NUMBER: _ClassVar[int]
    PORT_FORWARDING_FIELD_NUMBER: _ClassVar[int]
    pty: bool
    exec: bool
    sftp: bool
    port_forwarding: bool
    def __init__(self, pty: _Optional[bool] = ..., exec: _Optional[bool] = ..., sftp: _Optional[bool] = ..., port_forwarding: _Optional[bool] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("effect", "approval", "max_duration", "max_extensions", "session", "rules", "message", "policy_version", "risk", "activate", "claim_within", "max_sessions")
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    CLAIM_WITHIN_FIELD_NUMBER: _ClassVar[int]
    MAX_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    effect: str
    approval: Approval
    max_duration: str
    max_extensions: int
    session: SessionOptions
    rules: _containers.RepeatedScalarFieldContainer[str]
    message: str
    policy_version: str
    risk: Risk
    activate: str
    claim_within: str
    max_sessions: int
    def __init__(self, effect: _Optional[str] = ..., approval: _Optional[_Union[Approval, _Mapping]] = ..., max_duration: _Optional[str] = ..., max_extensions: _Optional[int] = ..., session: _Optional[_Union[SessionOptions, _Mapping]] = ..., rules: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., policy_version: _Optional[str] = ..., risk: _Optional[_Union[Risk, _Mapping]] = ..., activate: _Optional[str] = ..., claim_within: _Optional[str] = ..., max_sessions: _Optional[int] = ...) -> None: ...

class Risk(_message.Message):
    __slots__ = ("known", "score", "reasons")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    known: bool
    score: float
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, known: _Optional[bool] = ..., score: _Optional[float] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class ApprovalRecord(_message.Message):
    __slots__ = ("approver", "level", "approved", "comment", "at")
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    approver: str
    level: int
    approved: bool
    comment: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, approver: _Optional[str] = ..., level: _Optional[int] = ..., approved: _Optional[bool] = ..., comment: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Extension(_message.Message):
    __slots__ = ("id", "request_id", "number", "duration", "justification", "state", "decision", "approvals", "created_at", "decided_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    number: int
    duration: _duration_pb2.Duration
    justification: str
    state: ExtensionState
    decision: Decision
    approvals: _containers.RepeatedCompositeFieldContainer[ApprovalRecord]
    created_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ..., number: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., justification: _Optional[str] = ..., state: _Optional[_Union[ExtensionState, str]] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., approvals: _Optional[_Iterable[_Union[ApprovalRecord, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AccessRequest(_message.Message):
    __slots__ = ("id", "user", "resource", "kind", "login", "role", "duration", "reason", "ticket", "emergency", "state", "decision", "created_at", "activated_at", "expires_at", "ended_at", "extensions_used", "approvals", "current_level", "review_state", "end_reason", "message", "extensions", "start")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_USED_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_LEVEL_FIELD_NUMBER: _ClassVar[int]
    REVIEW_STATE_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    id: str
    user: str
    resource: str
    kind: str
    login: str
    role: str
    duration: _duration_pb2.Duration
    reason: str
    ticket: str
    emergency: bool
    state: RequestState
    decision: Decision
    created_at: _timestamp_pb2.Timestamp
    activated_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    extensions_used: int
    approvals: _containers.RepeatedCompositeFieldContainer[ApprovalRecord]
    current_level: int
    review_state: ReviewState
    end_reason: str
    message: str
    extensions: _containers.RepeatedCompositeFieldContainer[Extension]
    start: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., user: _Optional[str] = ..., resource: _Optional[str] = ..., kind: _Optional[str] = ..., login: _Optional[str] = ..., role: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ..., ticket: _Optional[str] = ..., emergency: _Optional[bool] = ..., state: _Optional[_Union[RequestState, str]] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., extensions_used: _Optional[int] = ..., approvals: _Optional[_Iterable[_Union[ApprovalRecord, _Mapping]]] = ..., current_level: _Optional[int] = ..., review_state: _Optional[_Union[ReviewState, str]] = ..., end_reason: _Optional[str] = ..., message: _Optional[str] = ..., extensions: _Optional[_Iterable[_Union[Extension, _Mapping]]] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "grant_id", "user", "resource", "kind", "login", "role", "broker", "client_address", "started_at", "ended_at", "end_reason", "bytes_in", "bytes_out", "recording_ref", "recording_hash", "last_activity_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    BROKER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    RECORDING_REF_FIELD_NUMBER: _ClassVar[int]
    RECORDING_HASH_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    grant_id: str
    user: str
    resource: str
    kind: str
    login: str
    role: str
    broker: str
    client_address: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    end_reason: str
    bytes_in: int
    bytes_out: int
    recording_ref: str
    recording_hash: str
    last_activity_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., grant_id: _Optional[str] = ..., user: _Optional[str] = ..., resource: _Optional[str] = ..., kind: _Optional[str] = ..., login: _Optional[str] = ..., role: _Optional[str] = ..., broker: _Optional[str] = ..., client_address: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_reason: _Optional[str] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., recording_ref: _Optional[str] = ..., recording_hash: _Optional[str] = ..., last_activity_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("duration", "minutes", "explanation", "fallback", "model_version", "max_duration")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    minutes: int
    explanation: str
    fallback: bool
    model_version: str
    max_duration: str
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., minutes: _Optional[int] = ..., explanation: _Optional[str] = ..., fallback: _Optional[bool] = ..., model_version: _Optional[str] = ..., max_duration: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("seq", "at", "type", "actor", "subject", "data_json", "prev_hash", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: _timestamp_pb2.Timestamp
    type: str
    actor: str
    subject: str
    data_json: str
    prev_hash: str
    hash: str
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[str] = ..., actor: _Optional[str] = ..., subject: _Optional[str] = ..., data_json: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "type", "at", "request", "session", "lock")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    seq: int
    type: str
    at: _timestamp_pb2.Timestamp
    request: AccessRequest
    session: Session
    lock: _locks_pb2.Lock
    def __init__(self, seq: _Optional[int] = ..., type: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request: _Optional[_Union[AccessRequest, _Mapping]] = ..., session: _Optional[_Union[Session, _Mapping]] = ..., lock: _Optional[_Union[_locks_pb2.Lock, _Mapping]] = ...) -> None: ...
