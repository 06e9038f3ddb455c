"""Session recordings: formats, hash chain and seal, writer, storage, verification.

Brokers use:
    store = FileRecordingStore(data_dir, passphrase=b"...")
    writer = store.create(session_id, Kind.TERMINAL, {"user": "alice", ...}, width=80, height=24)
    writer.write_output(b"..."); writer.write_input(b"..."); writer.resize(120, 40)
    writer.write_event(DbStatement(...))        # exec / sftp / db kinds
    seal = await writer.close(EndReason.EXPIRED)  # seal.final_hash -> control plane
A write the disk refuses stops the writer with `RecordingWriteError` (its `problem` is
a phrase a user may be shown); `FileRecordingStore(..., max_recording_bytes=N)` bounds
each recording, past which the writer raises `RecordingLimitError` (recorder.limits).
Readers use `store.open(ref)`, `store.verify(ref)`, `store.follow(ref)`, `store.list(...)`.
"""
from recorder.chain import Seal
from recorder.events import (
    DbStatement,
    EndReason,
    Event,
    ExecData,
    ExecExit,
    Kind,
    Note,
    RecordingError,
    RecordingLimitError,
    RecordingWriteError,
    SftpOp,
    TerminalEvent,
    event_to_dict,
)
from recorder.header import RecordingHeader
from recorder.reader import RecordingInfo, RecordingReader
from recorder.storage import FileRecordingStore, RecordingFilter, RecordingStore
from recorder.verify import VerifyResult
from recorder.writer import RecordingSink, RecordingWriter

__all__ = [
    "DbStatement",
    "EndReason",
    "Event",
    "ExecData",
    "ExecExit",
    "FileRecordingStore",
    "Kind",
    "Note",
    "RecordingError",
    "RecordingFilter",
    "RecordingHeader",
    "RecordingInfo",
    "RecordingLimitError",
    "RecordingReader",
    "RecordingSink",
    "RecordingStore",
    "RecordingWriteError",
    "RecordingWriter",
    "Seal",
    "SftpOp",
    "TerminalEvent",
    "VerifyResult",
    "event_to_dict",
]
