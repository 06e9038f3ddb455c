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

class SshCredential(_message.Message):
    __slots__ = ("key_id", "serial", "principal", "certificate")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    serial: int
    principal: str
    certificate: str
    def __init__(self, key_id: _Optional[str] = ..., serial: _Optional[int] = ..., principal: _Optional[str] = ..., certificate: _Optional[str] = ...) -> None: ...

class DatabaseCredential(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class AuthorizeSessionRequest(_message.Message):
    __slots__ = ("broker", "kind", "resource", "login", "role", "client_address", "ssh", "database", "channel", "refusal_counted")
    BROKER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SSH_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_COUNTED_FIELD_NUMBER: _ClassVar[int]
    broker: str
    kind: str
    resource: str
    login: str
    role: str
    client_address: str
    ssh: SshCredential
    database: DatabaseCredential
    channel: str
    refusal_counted: bool
    def __init__(self, broker: _Optional[str] = ..., kind: _Optional[str] = ..., resource: _Optional[str] = ..., login: _Optional[str] = ..., role: _Optional[str] = ..., client_address: _Optional[str] = ..., ssh: _Optional[_Union[SshCredential, _Mapping]] = ..., database: _Optional[_Union[DatabaseCredential, _Mapping]] = ..., channel: _Optional[str] = ..., refusal_counted: _Optional[bool] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("name", "kind", "address", "host_key", "host_ca", "database", "credentials")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOST_KEY_FIELD_NUMBER: _ClassVar[int]
    HOST_CA_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    address: str
    host_key: str
    host_ca: str
    database: str
    credentials: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., address: _Optional[str] = ..., host_key: _Optional[str] = ..., host_ca: _Optional[str] = ..., database: _Optional[str] = ..., credentials: _Optional[str] = ...) -> None: ...

class AuthorizeSessionResponse(_message.Message):
    __slots__ = ("session_id", "grant", "expires_at", "grace_period", "session", "target")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    grant: _types_pb2.AccessRequest
    expires_at: _timestamp_pb2.Timestamp
    grace_period: _duration_pb2.Duration
    session: _types_pb2.SessionOptions
    target: Target
    def __init__(self, session_id: _Optional[str] = ..., grant: _Optional[_Union[_types_pb2.AccessRequest, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., session: _Optional[_Union[_types_pb2.SessionOptions, _Mapping]] = ..., target: _Optional[_Union[Target, _Mapping]] = ...) -> None: ...

class IssueUpstreamCertificateRequest(_message.Message):
    __slots__ = ("session_id", "public_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    public_key: str
    def __init__(self, session_id: _Optional[str] = ..., public_key: _Optional[str] = ...) -> None: ...

class IssueUpstreamCertificateResponse(_message.Message):
    __slots__ = ("certificate", "valid_before")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    VALID_BEFORE_FIELD_NUMBER: _ClassVar[int]
    certificate: str
    valid_before: _timestamp_pb2.Timestamp
    def __init__(self, certificate: _Optional[str] = ..., valid_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportSessionEndRequest(_message.Message):
    __slots__ = ("session_id", "reason", "bytes_in", "bytes_out", "recording_ref", "recording_hash", "ended_at", "last_activity_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    RECORDING_REF_FIELD_NUMBER: _ClassVar[int]
    RECORDING_HASH_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    reason: str
    bytes_in: int
    bytes_out: int
    recording_ref: str
    recording_hash: str
    ended_at: _timestamp_pb2.Timestamp
    last_activity_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., reason: _Optional[str] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., recording_ref: _Optional[str] = ..., recording_hash: _Optional[str] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_activity_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportActivityRequest(_message.Message):
    __slots__ = ("session_id", "last_activity_at", "bytes_in", "bytes_out")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    last_activity_at: _timestamp_pb2.Timestamp
    bytes_in: int
    bytes_out: int
    def __init__(self, session_id: _Optional[str] = ..., last_activity_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ...) -> None: ...

class ReportActivityResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReportRefusalRequest(_message.Message):
    __slots__ = ("broker", "kind", "user", "resource", "code", "message", "client_address", "count", "first_at", "last_at", "codes", "samples")
    class CodesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BROKER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_AT_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    broker: str
    kind: str
    user: str
    resource: str
    code: str
    message: str
    client_address: str
    count: int
    first_at: _timestamp_pb2.Timestamp
    last_at: _timestamp_pb2.Timestamp
    codes: _containers.ScalarMap[str, int]
    samples: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, broker: _Optional[str] = ..., kind: _Optional[str] = ..., user: _Optional[str] = ..., resource: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., client_address: _Optional[str] = ..., count: _Optional[int] = ..., first_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., codes: _Optional[_Mapping[str, int]] = ..., samples: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportRefusalResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTrustRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Trust(_message.Message):
    __slots__ = ("user_ca_keys", "revoked_serials", "ca_pem")
    USER_CA_KEYS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_SERIALS_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    user_ca_keys: _containers.RepeatedScalarFieldContainer[str]
    revoked_serials: _containers.RepeatedScalarFieldContainer[int]
    ca_pem: str
    def __init__(self, user_ca_keys: _Optional[_Iterable[str]] = ..., revoked_serials: _Optional[_Iterable[int]] = ..., ca_pem: _Optional[str] = ...) -> None: ...
