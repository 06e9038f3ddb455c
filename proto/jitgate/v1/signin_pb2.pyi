import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BeginSignInRequest(_message.Message):
    __slots__ = ("headless",)
    HEADLESS_FIELD_NUMBER: _ClassVar[int]
    headless: bool
    def __init__(self, headless: _Optional[bool] = ...) -> None: ...

class BeginSignInResponse(_message.Message):
    __slots__ = ("issuer", "client_id", "scopes", "nonce", "nonce_expires_at", "default_hours", "max_hours", "user_code", "verification_uri", "verification_uri_complete", "interval_seconds")
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    NONCE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_HOURS_FIELD_NUMBER: _ClassVar[int]
    MAX_HOURS_FIELD_NUMBER: _ClassVar[int]
    USER_CODE_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_URI_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_URI_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    issuer: str
    client_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    nonce: str
    nonce_expires_at: _timestamp_pb2.Timestamp
    default_hours: int
    max_hours: int
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    interval_seconds: int
    def __init__(self, issuer: _Optional[str] = ..., client_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., nonce: _Optional[str] = ..., nonce_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., default_hours: _Optional[int] = ..., max_hours: _Optional[int] = ..., user_code: _Optional[str] = ..., verification_uri: _Optional[str] = ..., verification_uri_complete: _Optional[str] = ..., interval_seconds: _Optional[int] = ...) -> None: ...

class CompleteSignInRequest(_message.Message):
    __slots__ = ("id_token", "nonce", "csr_pem", "hours")
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    id_token: str
    nonce: str
    csr_pem: str
    hours: int
    def __init__(self, id_token: _Optional[str] = ..., nonce: _Optional[str] = ..., csr_pem: _Optional[str] = ..., hours: _Optional[int] = ...) -> None: ...

class CompleteSignInResponse(_message.Message):
    __slots__ = ("name", "groups", "email", "cert_pem", "ca_pem", "expires_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    email: str
    cert_pem: str
    ca_pem: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., email: _Optional[str] = ..., cert_pem: _Optional[str] = ..., ca_pem: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
