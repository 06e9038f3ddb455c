import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jitgate.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("name", "groups", "roles")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateRequestRequest(_message.Message):
    __slots__ = ("resource", "login", "role", "duration", "reason", "ticket", "emergency", "dry_run", "start")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    resource: str
    login: str
    role: str
    duration: _duration_pb2.Duration
    reason: str
    ticket: str
    emergency: bool
    dry_run: bool
    start: _timestamp_pb2.Timestamp
    def __init__(self, resource: _Optional[str] = ..., login: _Optional[str] = ..., role: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ..., ticket: _Optional[str] = ..., emergency: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRequestResponse(_message.Message):
    __slots__ = ("request", "recommendation")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    request: _types_pb2.AccessRequest
    recommendation: _types_pb2.Recommendation
    def __init__(self, request: _Optional[_Union[_types_pb2.AccessRequest, _Mapping]] = ..., recommendation: _Optional[_Union[_types_pb2.Recommendation, _Mapping]] = ...) -> None: ...

class GetRequestRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListRequestsRequest(_message.Message):
    __slots__ = ("user", "resource", "states", "to_approve", "mine", "page_size", "page_token", "since")
    USER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TO_APPROVE_FIELD_NUMBER: _ClassVar[int]
    MINE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    user: str
    resource: str
    states: _containers.RepeatedScalarFieldContainer[_types_pb2.RequestState]
    to_approve: bool
    mine: bool
    page_size: int
    page_token: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, user: _Optional[str] = ..., resource: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_types_pb2.RequestState, str]]] = ..., to_approve: _Optional[bool] = ..., mine: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRequestsResponse(_message.Message):
    __slots__ = ("requests", "next_page_token")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[_types_pb2.AccessRequest]
    next_page_token: str
    def __init__(self, requests: _Optional[_Iterable[_Union[_types_pb2.AccessRequest, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("id", "comment")
    ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    comment: str
    def __init__(self, id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("id", "duration", "justification")
    ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    duration: _duration_pb2.Duration
    justification: str
    def __init__(self, id: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., justification: _Optional[str] = ...) -> None: ...

class RevokeRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReviewRequest(_message.Message):
    __slots__ = ("id", "flag", "comment")
    ID_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    flag: bool
    comment: str
    def __init__(self, id: _Optional[str] = ..., flag: _Optional[bool] = ..., comment: _Optional[str] = ...) -> None: ...

class RecommendDurationRequest(_message.Message):
    __slots__ = ("resource", "login", "role", "reason", "ticket", "request_id")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    resource: str
    login: str
    role: str
    reason: str
    ticket: str
    request_id: str
    def __init__(self, resource: _Optional[str] = ..., login: _Optional[str] = ..., role: _Optional[str] = ..., reason: _Optional[str] = ..., ticket: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetDashboardRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Dashboard(_message.Message):
    __slots__ = ("active", "pending", "expired_24h", "avg_granted_minutes", "avg_used_minutes", "approval_rate", "reviews_owed")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_24H_FIELD_NUMBER: _ClassVar[int]
    AVG_GRANTED_MINUTES_FIELD_NUMBER: _ClassVar[int]
    AVG_USED_MINUTES_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_RATE_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_OWED_FIELD_NUMBER: _ClassVar[int]
    active: _containers.RepeatedCompositeFieldContainer[_types_pb2.AccessRequest]
    pending: _containers.RepeatedCompositeFieldContainer[_types_pb2.AccessRequest]
    expired_24h: int
    avg_granted_minutes: float
    avg_used_minutes: float
    approval_rate: float
    reviews_owed: _containers.RepeatedCompositeFieldContainer[_types_pb2.AccessRequest]
    def __init__(self, active: _Optional[_Iterable[_Union[_types_pb2.AccessRequest, _Mapping]]] = ..., pending: _Optional[_Iterable[_Union[_types_pb2.AccessRequest, _Mapping]]] = ..., expired_24h: _Optional[int] = ..., avg_granted_minutes: _Optional[float] = ..., avg_used_minutes: _Optional[float] = ..., approval_rate: _Optional[float] = ..., reviews_owed: _Optional[_Iterable[_Union[_types_pb2.AccessRequest, _Mapping]]] = ...) -> None: ...

class IssueSshCertificateRequest(_message.Message):
    __slots__ = ("grant_id", "public_key")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    public_key: str
    def __init__(self, grant_id: _Optional[str] = ..., public_key: _Optional[str] = ...) -> None: ...

class IssueSshCertificateResponse(_message.Message):
    __slots__ = ("certificate", "serial", "valid_before", "principals", "broker_address")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    VALID_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    BROKER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    certificate: str
    serial: int
    valid_before: _timestamp_pb2.Timestamp
    principals: _containers.RepeatedScalarFieldContainer[str]
    broker_address: str
    def __init__(self, certificate: _Optional[str] = ..., serial: _Optional[int] = ..., valid_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., principals: _Optional[_Iterable[str]] = ..., broker_address: _Optional[str] = ...) -> None: ...

class IssueDatabaseTokenRequest(_message.Message):
    __slots__ = ("grant_id",)
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    def __init__(self, grant_id: _Optional[str] = ...) -> None: ...

class IssueDatabaseTokenResponse(_message.Message):
    __slots__ = ("token", "expires_at", "user", "ca_pem", "broker_address", "database")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    BROKER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: _timestamp_pb2.Timestamp
    user: str
    ca_pem: str
    broker_address: str
    database: str
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user: _Optional[str] = ..., ca_pem: _Optional[str] = ..., broker_address: _Optional[str] = ..., database: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("grant_id", "user", "resource", "live_only", "page_size", "page_token")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    LIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    user: str
    resource: str
    live_only: bool
    page_size: int
    page_token: str
    def __init__(self, grant_id: _Optional[str] = ..., user: _Optional[str] = ..., resource: _Optional[str] = ..., live_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_types_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_types_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("types",)
    TYPES_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, types: _Optional[_Iterable[str]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_types_pb2.Event]
    def __init__(self, events: _Optional[_Iterable[_Union[_types_pb2.Event, _Mapping]]] = ...) -> None: ...
