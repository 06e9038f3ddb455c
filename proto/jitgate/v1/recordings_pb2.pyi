import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordingPart(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORDING_PART_UNSPECIFIED: _ClassVar[RecordingPart]
    RECORDING_PART_DATA: _ClassVar[RecordingPart]
    RECORDING_PART_CHAIN: _ClassVar[RecordingPart]
RECORDING_PART_UNSPECIFIED: RecordingPart
RECORDING_PART_DATA: RecordingPart
RECORDING_PART_CHAIN: RecordingPart

class PublishSealKeyRequest(_message.Message):
    __slots__ = ("public_key",)
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    def __init__(self, public_key: _Optional[str] = ...) -> None: ...

class PublishSealKeyResponse(_message.Message):
    __slots__ = ("key_id", "new")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    new: bool
    def __init__(self, key_id: _Optional[str] = ..., new: _Optional[bool] = ...) -> None: ...

class AppendRecordingRequest(_message.Message):
    __slots__ = ("ref", "session_id", "kind", "metadata_json", "started_at", "data_offset", "data", "chain_offset", "chain", "final")
    REF_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CHAIN_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    ref: str
    session_id: str
    kind: str
    metadata_json: str
    started_at: float
    data_offset: int
    data: bytes
    chain_offset: int
    chain: bytes
    final: bool
    def __init__(self, ref: _Optional[str] = ..., session_id: _Optional[str] = ..., kind: _Optional[str] = ..., metadata_json: _Optional[str] = ..., started_at: _Optional[float] = ..., data_offset: _Optional[int] = ..., data: _Optional[bytes] = ..., chain_offset: _Optional[int] = ..., chain: _Optional[bytes] = ..., final: _Optional[bool] = ...) -> None: ...

class AppendRecordingResponse(_message.Message):
    __slots__ = ("data_offset", "chain_offset", "complete", "watched")
    DATA_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CHAIN_OFFSET_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    WATCHED_FIELD_NUMBER: _ClassVar[int]
    data_offset: int
    chain_offset: int
    complete: bool
    watched: bool
    def __init__(self, data_offset: _Optional[int] = ..., chain_offset: _Optional[int] = ..., complete: _Optional[bool] = ..., watched: _Optional[bool] = ...) -> None: ...

class ListSealKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SealKey(_message.Message):
    __slots__ = ("key_id", "broker", "public_key", "first_seen", "last_seen")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    BROKER_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    broker: str
    public_key: str
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., broker: _Optional[str] = ..., public_key: _Optional[str] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSealKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[SealKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[SealKey, _Mapping]]] = ...) -> None: ...

class Recording(_message.Message):
    __slots__ = ("ref", "session_id", "kind", "user", "broker", "metadata_json", "started_at", "ended_at", "end_reason", "sealed", "complete", "location", "size", "sha256", "final_hash", "events", "hold", "chain_size", "command")
    REF_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    BROKER_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FINAL_HASH_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    CHAIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ref: str
    session_id: str
    kind: str
    user: str
    broker: str
    metadata_json: str
    started_at: float
    ended_at: float
    end_reason: str
    sealed: bool
    complete: bool
    location: str
    size: int
    sha256: str
    final_hash: str
    events: int
    hold: bool
    chain_size: int
    command: str
    def __init__(self, ref: _Optional[str] = ..., session_id: _Optional[str] = ..., kind: _Optional[str] = ..., user: _Optional[str] = ..., broker: _Optional[str] = ..., metadata_json: _Optional[str] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., end_reason: _Optional[str] = ..., sealed: _Optional[bool] = ..., complete: _Optional[bool] = ..., location: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., final_hash: _Optional[str] = ..., events: _Optional[int] = ..., hold: _Optional[bool] = ..., chain_size: _Optional[int] = ..., command: _Optional[str] = ...) -> None: ...

class ListRecordingsRequest(_message.Message):
    __slots__ = ("session_id", "user", "kind", "page_size", "page_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user: str
    kind: str
    page_size: int
    page_token: str
    def __init__(self, session_id: _Optional[str] = ..., user: _Optional[str] = ..., kind: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRecordingsResponse(_message.Message):
    __slots__ = ("recordings", "next_page_token")
    RECORDINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    recordings: _containers.RepeatedCompositeFieldContainer[Recording]
    next_page_token: str
    def __init__(self, recordings: _Optional[_Iterable[_Union[Recording, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReadRecordingRequest(_message.Message):
    __slots__ = ("ref", "part", "offset", "purpose")
    REF_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    part: RecordingPart
    offset: int
    purpose: str
    def __init__(self, ref: _Optional[str] = ..., part: _Optional[_Union[RecordingPart, str]] = ..., offset: _Optional[int] = ..., purpose: _Optional[str] = ...) -> None: ...

class RecordingChunk(_message.Message):
    __slots__ = ("offset", "data", "recording", "sealed")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    recording: Recording
    sealed: bool
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., recording: _Optional[_Union[Recording, _Mapping]] = ..., sealed: _Optional[bool] = ...) -> None: ...

class WatchRecordingRequest(_message.Message):
    __slots__ = ("ref", "offset")
    REF_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ref: str
    offset: int
    def __init__(self, ref: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class SearchRecordingsRequest(_message.Message):
    __slots__ = ("text", "session_id", "kind", "case_sensitive", "limit_per_recording")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CASE_SENSITIVE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_RECORDING_FIELD_NUMBER: _ClassVar[int]
    text: str
    session_id: str
    kind: str
    case_sensitive: bool
    limit_per_recording: int
    def __init__(self, text: _Optional[str] = ..., session_id: _Optional[str] = ..., kind: _Optional[str] = ..., case_sensitive: _Optional[bool] = ..., limit_per_recording: _Optional[int] = ...) -> None: ...

class RecordingHit(_message.Message):
    __slots__ = ("ref", "session_id", "started_at", "t", "where", "snippet", "kind")
    REF_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ref: str
    session_id: str
    started_at: float
    t: float
    where: str
    snippet: str
    kind: str
    def __init__(self, ref: _Optional[str] = ..., session_id: _Optional[str] = ..., started_at: _Optional[float] = ..., t: _Optional[float] = ..., where: _Optional[str] = ..., snippet: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class HoldRecordingRequest(_message.Message):
    __slots__ = ("session_id", "release", "reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    release: bool
    reason: str
    def __init__(self, session_id: _Optional[str] = ..., release: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class HoldRecordingResponse(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...
