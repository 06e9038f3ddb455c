"""What a recording holds: its kind, header and the typed events of each kind.

Terminal recordings are asciicast v2 lines (`[t, code, data]`); exec, sftp and
database recordings are JSON lines (`{"t": ..., "type": ..., ...}`). Exec data
is always base64 (`{"t":..,"type":"stdout","b64":".."}`): bulk output costs a
fixed 4/3 and is built without a JSON encoder, where JSON escaping turned each
NUL byte into six characters. The command
of a terminal or exec session is in the header, not an event. Every event
class here turns itself into that record (`to_record`) and back (`event_from_*`).
`t` is seconds since the recording started; the writer fills it when left None.
"""
from __future__ import annotations

import base64
import binascii
import enum
import errno
import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson


class Kind(str, enum.Enum):
    """What a recording is of."""

    TERMINAL = "terminal"  # pty shell or pty exec: asciicast v2
    EXEC = "exec"  # exec without a pty: command, stdin/stdout/stderr, exit
    SFTP = "sftp"  # sftp subsystem: a log of file operations
    DB = "db"  # database session: statements


class EndReason(str, enum.Enum):
    """Why a recorded session ended (goes into the seal)."""

    CLIENT_EXIT = "client_exit"
    EXPIRED = "expired"
    REVOKED = "revoked"
    BROKER_SHUTDOWN = "broker_shutdown"
    ERROR = "error"
    RECORDING_FAILED = "recording_failed"  # its recording could not be written: the session was cut
    RECORDING_LIMIT = "recording_limit"  # its recording reached the writer's byte bound: cut
    PROTOCOL_ERROR = "protocol_error"  # the client broke the wire protocol: cut


class RecordingError(Exception):
    """A recording cannot be created, written, read or found."""


class RecordingWriteError(RecordingError):
    """The recording's storage refused a write (disk full, quota, I/O error).

    `problem` says what happened in words a user can be shown (`storage_problem`)."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


class RecordingLimitError(RecordingError):
    """The recording reached its bound on bytes (`limit`); the event that would have passed it
    was not written, and the recording takes nothing more but its seal."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


# errno -> what a user is told when a recording cannot be written.
_STORAGE_PROBLEMS = {
    errno.ENOSPC: "no space left on the recordings disk",
    errno.EDQUOT: "the recordings disk quota is used up",
    errno.EFBIG: "a recording file reached the file size limit",
    errno.EIO: "an I/O error on the recordings disk",
    errno.EROFS: "the recordings disk is read-only",
    errno.EACCES: "the recordings directory is not writable",
    errno.EPERM: "the recordings directory is not writable",
    errno.EMFILE: "the broker has too many open files",
    errno.ENFILE: "the system has too many open files",
}


def storage_problem(exc: OSError) -> str:
    """A plain phrase for why storage refused a write (for the line a user sees)."""
    known = _STORAGE_PROBLEMS.get(exc.errno or 0)
    if known:
        return known
    return f"the recordings disk failed ({(exc.strerror or str(exc)).lower()})"


def write_error(ref: str, exc: OSError) -> RecordingWriteError:
    """The RecordingWriteError for an OSError met while writing recording `ref`."""
    problem = storage_problem(exc)
    return RecordingWriteError(f"recording {ref} cannot be written: {problem}", problem)



# ---------------------------------------------------------------- terminal


@dataclass(slots=True)
class TerminalEvent:
    """One asciicast v2 event: code "o" output, "i" input, "r" resize ("WxH"), "m" marker."""

    code: str
    data: str
    t: float | None = None

    def to_line(self) -> str:
        return json.dumps([round(self.t or 0.0, 6), self.code, self.data], ensure_ascii=False)


# ---------------------------------------------------------------- exec


@dataclass(slots=True)
class ExecData:
    """Bytes on one stream of an exec session; kept exact (always base64 in the file)."""

    stream: str  # "stdin" | "stdout" | "stderr"
    data: bytes
    t: float | None = None

    @property
    def type(self) -> str:
        return self.stream

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def to_record(self) -> dict[str, Any]:
        return {"t": self.t, "type": self.stream, "b64": base64.b64encode(self.data).decode("ascii")}

    def to_line_bytes(self) -> bytes:
        """`to_record` as one JSON line, encoded: built directly because this runs once
        per chunk of bulk output, and base64 needs no JSON escaping."""
        return exec_line(self.stream, 0.0 if self.t is None else float(self.t), self.data)


_EXEC_PREFIX = {s: f',"type":"{s}","b64":"'.encode("ascii") for s in ("stdin", "stdout", "stderr")}


def exec_line(stream: str, t: float, data: bytes) -> bytes:
    """The data-file line of one exec chunk (without newline): the exact bytes the chain hashes."""
    prefix = _EXEC_PREFIX.get(stream)
    if prefix is None:
        raise RecordingError(f"unknown exec stream `{stream}`")
    return b"".join((b'{"t":', repr(t).encode("ascii"), prefix,
                     base64.b64encode(data), b'"}'))


@dataclass(slots=True)
class ExecExit:
    """How an exec session's command ended: exit status, or the signal that killed it."""

    status: int | None
    signal: str | None = None
    t: float | None = None
    type: str = field(default="exit", init=False)

    def to_record(self) -> dict[str, Any]:
        return {"t": self.t, "type": "exit", "status": self.status, "signal": self.signal}


# ---------------------------------------------------------------- sftp

SFTP_OPS = frozenset(
    {"open", "close", "read", "write", "remove", "rename", "mkdir", "rmdir",
     "stat", "setstat", "opendir", "readdir", "symlink", "readlink", "realpath", "other"}
)


@dataclass(slots=True)
class SftpOp:
    """One sftp operation. `bytes` counts data moved (read/write, or a whole file at close)."""

    op: str
    path: str
    target: str | None = None  # rename / symlink destination
    bytes: int = 0
    flags: str | None = None  # open mode, e.g. "r", "w", "rw", "a"
    ok: bool = True
    error: str | None = None
    t: float | None = None
    type: str = field(default="sftp", init=False)

    def __post_init__(self) -> None:
        if self.op not in SFTP_OPS:
            raise ValueError(f"unknown sftp op `{self.op}`")

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"t": self.t, "type": "sftp", "op": self.op, "path": self.path}
        if self.target is not None:
            rec["target"] = self.target
        if self.bytes:
            rec["bytes"] = self.bytes
        if self.flags is not None:
            rec["flags"] = self.flags
        if not self.ok:
            rec["ok"] = False
            rec["error"] = self.error
        return rec


# ---------------------------------------------------------------- database


@dataclass(slots=True)
class DbStatement:
    """One database statement as the broker saw it complete.

    `protocol` is "simple", "extended" (parse/bind/execute) or "copy";
    `started_at` is a unix time; parameters are text (None for NULL; binary
    parameters as "\\x" hex).
    """

    text: str
    started_at: float
    duration_ms: float
    parameters: list[str | None] | None = None
    rows: int | None = None
    command_tag: str | None = None
    error_sqlstate: str | None = None
    error_message: str | None = None
    protocol: str = "simple"
    t: float | None = None
    type: str = field(default="statement", init=False)

    def to_record(self) -> dict[str, Any]:
        rec = statement_record(0.0 if self.t is None else self.t, self.protocol, self.text, self.started_at,
                               self.duration_ms, self.parameters, self.rows, self.command_tag,
                               self.error_sqlstate, self.error_message)
        if self.t is None:
            rec["t"] = None
        return rec

    def to_line(self) -> str:
        """`to_record` as one JSON line."""
        return json_line(self.to_record()).decode("utf-8")


def statement_record(t: float, protocol: str, text: str, started_at: float, duration_ms: float,
                     parameters: list[str | None] | None, rows: int | None, command_tag: str | None,
                     error_sqlstate: str | None, error_message: str | None) -> dict[str, Any]:
    """A DbStatement's record: the one definition of a statement line's fields.

    Numbers are written as the floats they are (no rounding: round() was a third
    of the cost of a line, and this runs for every statement of every session).
    """
    rec: dict[str, Any] = {"t": t, "type": "statement", "protocol": protocol, "text": text,
                           "started_at": started_at, "duration_ms": duration_ms}
    if parameters is not None:
        rec["parameters"] = parameters
    if rows is not None:
        rec["rows"] = rows
    if command_tag is not None:
        rec["command_tag"] = command_tag
    if error_sqlstate is not None or error_message is not None:
        rec["error_sqlstate"] = error_sqlstate
        rec["error_message"] = error_message
    return rec


def json_line(record: dict[str, Any]) -> bytes:
    """A record as one compact JSON line, UTF-8.

    orjson writes what json.dumps(ensure_ascii=False, separators=(",", ":")) writes for
    these records (the same shortest float repr), at a sixth of the cost. A string that
    is not valid Unicode (a lone surrogate) goes through json with replacement instead.
    """
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


# ---------------------------------------------------------------- any kind


@dataclass(slots=True)
class Note:
    """A remark in a recording: a warning shown, an extension, a cut. In terminals an "m" marker."""

    text: str
    t: float | None = None
    type: str = field(default="note", init=False)

    def to_record(self) -> dict[str, Any]:
        return {"t": self.t, "type": "note", "text": self.text}


RecordEvent = ExecData | ExecExit | SftpOp | DbStatement | Note
Event = TerminalEvent | RecordEvent


def event_from_cast(item: Any) -> TerminalEvent:
    """An asciicast v2 event array -> TerminalEvent (ValueError when malformed)."""
    if (not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], (int, float))
            or not isinstance(item[1], str) or not isinstance(item[2], str)):
        raise ValueError("not an asciicast v2 event [time, code, data]")
    return TerminalEvent(code=item[1], data=item[2], t=float(item[0]))


def event_from_record(rec: Any) -> RecordEvent:
    """A JSON-lines record -> its event (ValueError when malformed)."""
    if not isinstance(rec, dict) or not isinstance(rec.get("type"), str):
        raise ValueError("not an event record")
    kind = rec["type"]
    t = rec.get("t")
    try:
        if kind in ("stdin", "stdout", "stderr"):
            return ExecData(stream=kind, data=base64.b64decode(rec["b64"], validate=True), t=t)
        if kind == "exit":
            return ExecExit(status=rec.get("status"), signal=rec.get("signal"), t=t)
        if kind == "sftp":
            return SftpOp(op=rec["op"], path=rec["path"], target=rec.get("target"),
                          bytes=rec.get("bytes", 0), flags=rec.get("flags"),
                          ok=rec.get("ok", True), error=rec.get("error"), t=t)
        if kind == "statement":
            return DbStatement(text=rec["text"], started_at=rec["started_at"],
                               duration_ms=rec["duration_ms"], parameters=rec.get("parameters"),
                               rows=rec.get("rows"), command_tag=rec.get("command_tag"),
                               error_sqlstate=rec.get("error_sqlstate"),
                               error_message=rec.get("error_message"),
                               protocol=rec.get("protocol", "simple"), t=t)
        if kind == "note":
            return Note(text=rec["text"], t=t)
    except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ValueError(f"malformed `{kind}` record: {exc}") from None
    raise ValueError(f"unknown event type `{kind}`")


def event_to_dict(ev: Event) -> dict[str, Any]:
    """A JSON-friendly dict of any event (used by `--output json`)."""
    if isinstance(ev, TerminalEvent):
        return {"t": ev.t, "type": ev.code, "data": ev.data}
    if isinstance(ev, ExecData):
        return {"t": ev.t, "type": ev.stream, "data": ev.text()}
    return ev.to_record()


# ---------------------------------------------------------------- metadata

_SECRET_KEY = re.compile(r"password|passwd|passphrase|secret|token|credential|private_?key|api_?key|cookie", re.I)
_SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def check_metadata(metadata: Any, path: str = "metadata") -> None:
    """Refuse metadata that looks like it holds a secret, or is not plain JSON.

    Recordings are kept long and read by auditors: no tokens, passwords or keys.
    """
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            if not isinstance(key, str):
                raise RecordingError(f"{path}: keys must be strings")
            if _SECRET_KEY.search(key):
                raise RecordingError(f"{path}.{key}: metadata must not hold secrets")
            check_metadata(value, f"{path}.{key}")
    elif isinstance(metadata, (list, tuple)):
        for i, value in enumerate(metadata):
            check_metadata(value, f"{path}[{i}]")
    elif isinstance(metadata, str):
        if _SECRET_VALUE.search(metadata):
            raise RecordingError(f"{path}: metadata must not hold secrets")
    elif metadata is not None and not isinstance(metadata, (bool, int, float)):
        raise RecordingError(f"{path}: {type(metadata).__name__} is not plain JSON data")
