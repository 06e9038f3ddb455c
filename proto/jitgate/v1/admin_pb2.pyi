from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class IssueIdentityRequest(_message.Message):
    __slots__ = ("name", "days")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    days: int
    def __init__(self, name: _Optional[str] = ..., days: _Optional[int] = ...) -> None: ...

class IssueIdentityResponse(_message.Message):
    __slots__ = ("ca_pem", "cert_pem", "key_pem")
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    ca_pem: str
    cert_pem: str
    key_pem: str
    def __init__(self, ca_pem: _Optional[str] = ..., cert_pem: _Optional[str] = ..., key_pem: _Optional[str] = ...) -> None: ...

class GetSshCaRequest(_message.Message):
    __slots__ = ("upstream",)
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    upstream: bool
    def __init__(self, upstream: _Optional[bool] = ...) -> None: ...

class GetSshCaResponse(_message.Message):
    __slots__ = ("public_key_lines",)
    PUBLIC_KEY_LINES_FIELD_NUMBER: _ClassVar[int]
    public_key_lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, public_key_lines: _Optional[_Iterable[str]] = ...) -> None: ...
