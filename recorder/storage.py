"""Where recordings live: the `RecordingStore` interface and the data-directory store.

A store creates writers, opens readers, lists, verifies and follows recordings.
Recordings are never deleted through it. On a broker this directory is also the
spool of the upload to the control plane's store (`broker/uploader.py` ->
`controlplane/recordings.py` -> `recorder/objectstore.py`: S3 or a directory),
where retention and legal holds apply.

File layout (`FileRecordingStore`), one directory per recording, mode 0700:
    DATA_DIR/recordings/REF/meta.json       listing data (not trusted by verify)
    DATA_DIR/recordings/REF/session.cast    terminal: plain asciicast v2
    DATA_DIR/recordings/REF/events.jsonl    exec, sftp, db: JSON lines
    DATA_DIR/recordings/REF/chain           one hash per data line, then the seal
    DATA_DIR/recorder/recorder_key.pem      the signing key (encrypted, 0600)
REF is the session id, or `SESSION.N` for a session's N-th recording (another channel).
"""
from __future__ import annotations

import asyncio
import builtins
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from recorder import chain
from recorder.events import Event, Kind, RecordingError, check_metadata, write_error
from recorder.header import RecordingHeader
from recorder.keys import load_or_create_signing_key, load_public_key
from recorder.limits import check_max_recording_bytes
from recorder.reader import RecordingInfo, RecordingReader, parse_event
from recorder.verify import VerifyResult, verify_recording
from recorder.writer import RecordingWriter

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:@-]{0,127}")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:@-]{0,127}(\.[0-9]{1,6})?")
CHAIN_NAME = "chain"
META_NAME = "meta.json"


def data_name(kind: Kind) -> str:
    return "session.cast" if kind is Kind.TERMINAL else "events.jsonl"


@dataclass(slots=True)
class RecordingFilter:
    """Which recordings `list` returns; every set field must match."""

    session_id: str | None = None
    kind: Kind | None = None
    since: float | None = None  # started at or after (unix time)
    until: float | None = None  # started before
    metadata: dict[str, Any] = field(default_factory=dict)  # equal values, e.g. {"user": "alice"}

    def matches(self, info: RecordingInfo) -> bool:
        if self.session_id is not None and info.session_id != self.session_id:
            return False
        if self.kind is not None and info.kind is not Kind(self.kind):
            return False
        if self.since is not None and info.started_at < self.since:
            return False
        if self.until is not None and info.started_at >= self.until:
            return False
        return all(info.metadata.get(k) == v for k, v in self.metadata.items())


class RecordingStore(Protocol):
    """What brokers and the CLI need from recording storage."""

    def create(self, session_id: str, kind: Kind | str, metadata: Mapping[str, Any] | None = None,
               **options: Any) -> RecordingWriter:
        """A writer for a new recording of `session_id` (metadata must hold no secrets)."""

    def info(self, ref: str) -> RecordingInfo:
        """What the store knows of one recording without reading its events."""

    def open(self, ref: str) -> RecordingReader:
        """A reader for one recording (RecordingError when unknown)."""

    def list(self, filters: RecordingFilter | None = None) -> list[RecordingInfo]:
        """Recordings matching `filters`, oldest first."""

    def refs_for(self, session_or_ref: str) -> builtins.list[str]:  # `list` is the method here
        """The recordings of a session id, or [ref] for a recording reference."""

    def verify(self, ref: str, *, expected_final_hash: str | None = None) -> VerifyResult:
        """Check a recording's chain and seal."""

    def follow(self, ref: str, *, poll_interval: float = 0.1,
               idle_timeout: float | None = None) -> AsyncIterator[Event]:
        """Events as they are written, until the recording is sealed."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _write_json_atomic(path: Path, body: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSink:
    """A recording's files in its directory; appends are plain writes, `finish` fsyncs.

    Files are opened per flush (at most about once a second per busy session) rather
    than held open: a broker with thousands of sessions already spends two
    descriptors on each, and idle sessions should cost none here."""

    def __init__(self, directory: Path, kind: Kind, meta: dict[str, Any]) -> None:
        self._dir = directory
        self._meta = meta
        self._data_path = directory / data_name(kind)
        self._chain_path = directory / CHAIN_NAME
        for path in (self._data_path, self._chain_path):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    @staticmethod
    def _append(path: Path, data: bytes, sync: bool = False) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, data: bytes, chain_lines: bytes) -> None:
        self._append(self._data_path, data)  # data before its hashes: see verify.py
        self._append(self._chain_path, chain_lines)

    def finish(self, seal: chain.Seal) -> None:
        self._append(self._data_path, b"", sync=True)
        self._append(self._chain_path, b"", sync=True)
        self._append(self._chain_path, seal.to_line().encode("utf-8") + b"\n", sync=True)
        meta = dict(self._meta)
        meta["seal"] = {k: v for k, v in asdict(seal).items() if k != "signature"}
        _write_json_atomic(self._dir / META_NAME, meta)
        _fsync_dir(self._dir)

    def abort(self) -> None:
        pass  # nothing held open


class FileRecordingStore:
    """Recordings as files under `data_dir/recordings`.

    `passphrase` unlocks (or creates) the recorder's signing key; without it the
    store only reads, lists, verifies and follows. `trusted_keys` adds public
    keys whose seals verify (other brokers, rotated keys) to this store's own.
    `max_recording_bytes` bounds each recording it creates (recorder.limits; None: no bound).
    """

    def __init__(self, data_dir: str | os.PathLike[str], passphrase: bytes | None = None, *,
                 trusted_keys: Sequence[Ed25519PublicKey] = (), flush_interval: float = 1.0,
                 max_recording_bytes: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.root = self.data_dir / "recordings"
        self.key_dir = self.data_dir / "recorder"
        self._flush_interval = flush_interval
        if max_recording_bytes is not None:
            check_max_recording_bytes(max_recording_bytes)
        self.max_recording_bytes = max_recording_bytes
        self._signing_key: Ed25519PrivateKey | None = None
        if passphrase is not None:
            self._signing_key = load_or_create_signing_key(self.key_dir, passphrase)
        self._extra_keys = list(trusted_keys)

    # ------------------------------------------------------------ keys

    def trusted_keys(self) -> list[Ed25519PublicKey]:
        keys = list(self._extra_keys)
        if self._signing_key is not None:
            keys.append(self._signing_key.public_key())
        else:
            own = load_public_key(self.key_dir)
            if own is not None:
                keys.append(own)
        return keys

    # ------------------------------------------------------------ writing

    def create(self, session_id: str, kind: Kind | str, metadata: Mapping[str, Any] | None = None, *,
               width: int = 80, height: int = 24, command: str | None = None, title: str | None = None,
               env: Mapping[str, str] | None = None,
               on_error: Callable[[RecordingError], None] | None = None,
               keystrokes: bool = True) -> RecordingWriter:
        """Start a recording of `session_id`. Terminal options: width, height, env (TERM, SHELL),
        title, command, keystrokes (False: what the user typed is counted, not written; the
        output shows what the terminal echoed); exec: command. Call from the event loop when
        used with asyncio. A recording that cannot be started raises RecordingError
        (`RecordingWriteError` when storage refused it: disk full, I/O error)."""
        if self._signing_key is None:
            raise RecordingError("this recording store was opened without the recorder key passphrase")
        if not _SESSION_ID.fullmatch(session_id):
            raise RecordingError(f"session id `{session_id}` is not a valid recording name")
        kind = Kind(kind)
        meta_in = dict(metadata or {})
        check_metadata(meta_in)
        if command is not None:
            check_metadata(command, "command")
        directory: Path | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            ref, directory = self._allocate(session_id)
            header = RecordingHeader(ref=ref, session_id=session_id, kind=kind, started_at=time.time(),
                                     metadata=meta_in, width=width, height=height, command=command,
                                     title=title, env=dict(env or {}))
            meta = {"ref": ref, "session_id": session_id, "kind": kind.value,
                    "started_at": header.started_at, "metadata": meta_in, "command": command}
            sink = FileSink(directory, kind, meta)  # files first: a listed recording has its files
            _write_json_atomic(directory / META_NAME, meta)
            return RecordingWriter(sink, header, self._signing_key, flush_interval=self._flush_interval,
                                   on_error=on_error, keystrokes=keystrokes, max_bytes=self.max_recording_bytes)
        except (OSError, RecordingError) as exc:
            if directory is not None:
                # A recording that never started holds nothing: leave no half-made one behind.
                shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, OSError):
                raise write_error(session_id, exc) from None
            raise

    def _allocate(self, session_id: str) -> tuple[str, Path]:
        # mkdir is atomic: two writers of one session never share a directory.
        for n in range(1, 1_000_000):
            ref = session_id if n == 1 else f"{session_id}.{n}"
            directory = self.root / ref
            try:
                directory.mkdir(mode=0o700)
                return ref, directory
            except FileExistsError:
                continue
        raise RecordingError(f"too many recordings for session {session_id}")

    # ------------------------------------------------------------ reading

    def _dir(self, ref: str) -> Path:
        if not _REF.fullmatch(ref) or not (self.root / ref / META_NAME).is_file():
            raise RecordingError(f"no recording `{ref}` in {self.root}")
        return self.root / ref

    def _info(self, directory: Path) -> RecordingInfo:
        try:
            meta = json.loads((directory / META_NAME).read_text(encoding="utf-8"))
            seal = meta.get("seal") or {}
            return RecordingInfo(
                ref=meta["ref"], session_id=meta["session_id"], kind=Kind(meta["kind"]),
                started_at=float(meta["started_at"]), metadata=meta.get("metadata") or {},
                command=meta.get("command"), location=str(directory), sealed=bool(seal),
                ended_at=seal.get("ended_at"), end_reason=seal.get("end_reason"),
                events=seal.get("events"), bytes_in=seal.get("bytes_in"),
                bytes_out=seal.get("bytes_out"), final_hash=seal.get("final_hash"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RecordingError(f"recording {directory.name}: unreadable {META_NAME}: {exc}") from None

    def info(self, ref: str) -> RecordingInfo:
        return self._info(self._dir(ref))

    def open(self, ref: str) -> RecordingReader:
        directory = self._dir(ref)
        info = self._info(directory)
        data_path = directory / data_name(info.kind)
        chain_path = directory / CHAIN_NAME

        def open_data():  # type: ignore[no-untyped-def]
            try:
                return open(data_path, "rb")
            except OSError as exc:
                raise RecordingError(f"recording {ref}: {exc.strerror}: {data_path}") from None

        def read_chain() -> bytes:
            try:
                return chain_path.read_bytes()
            except FileNotFoundError:
                return b""

        return RecordingReader(info, open_data, read_chain)

    def list(self, filters: RecordingFilter | None = None) -> list[RecordingInfo]:
        if not self.root.is_dir():
            return []
        found = []
        for directory in self.root.iterdir():
            if not (directory / META_NAME).is_file():
                continue
            try:
                info = self._info(directory)
            except RecordingError:
                continue  # a half-created directory: nothing to list yet
            if filters is None or filters.matches(info):
                found.append(info)
        found.sort(key=lambda i: (i.started_at, i.ref))
        return found

    def refs_for(self, session_or_ref: str) -> builtins.list[str]:  # `list` is the method here
        refs = [i.ref for i in self.list(RecordingFilter(session_id=session_or_ref))]
        if not refs and _REF.fullmatch(session_or_ref) and (self.root / session_or_ref / META_NAME).is_file():
            refs = [session_or_ref]
        return refs

    def verify(self, ref: str, *, expected_final_hash: str | None = None) -> VerifyResult:
        reader = self.open(ref)
        return verify_recording(ref, reader.lines(), reader.chain_bytes(), self.trusted_keys(),
                                closed=reader.info.sealed, expected_final_hash=expected_final_hash)

    # ------------------------------------------------------------ following

    def _sealed(self, directory: Path) -> bool:
        path = directory / CHAIN_NAME
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 4096))
                return b'{"seal":' in f.read()
        except FileNotFoundError:
            return False

    async def follow(self, ref: str, *, poll_interval: float = 0.1,
                     idle_timeout: float | None = None) -> AsyncIterator[Event]:
        """Events of `ref` from the start, then as the writer flushes them (within about
        a second), ending when the recording is sealed, or after `idle_timeout` seconds
        without new data (None: wait for the seal)."""
        directory = self._dir(ref)
        kind = self._info(directory).kind
        pending = b""
        header_seen = False
        idle = 0.0
        with open(directory / data_name(kind), "rb") as f:
            while True:
                chunk = f.read()
                if chunk:
                    idle = 0.0
                    lines = (pending + chunk).split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        if not header_seen:
                            header_seen = True
                            continue
                        try:
                            yield parse_event(kind, line)
                        except ValueError as exc:
                            raise RecordingError(f"recording {ref}: {exc}") from None
                    continue
                # Sealed means every data line is already written: one more read, then stop.
                if self._sealed(directory):
                    if f.read(1):
                        f.seek(-1, os.SEEK_CUR)
                        continue
                    return
                if idle_timeout is not None and idle >= idle_timeout:
                    return
                await asyncio.sleep(poll_interval)
                idle += poll_interval

    # ------------------------------------------------------------ paths

    @classmethod
    def for_path(cls, path: str | os.PathLike[str], **kwargs: Any) -> tuple[FileRecordingStore, str]:
        """The store and ref of a recording given by its directory or one of its files."""
        p = Path(path).expanduser().resolve()
        if p.is_file():
            p = p.parent
        if not (p / META_NAME).is_file():
            raise RecordingError(f"{path}: not a recording directory")
        if p.parent.name == "recordings":
            return cls(p.parent.parent, **kwargs), p.name
        # A recording copied elsewhere (evidence): read it where it is; only
        # `trusted_keys` can verify its seal.
        store = cls(p.parent, **kwargs)
        store.root = p.parent
        return store, p.name
