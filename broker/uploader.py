"""Uploading recordings to the control plane while sessions run (its RecordingService).

The broker's recording on its own disk is the spool: the uploader sends what the
control plane's store does not hold yet, from the offsets the store reports, and
never deletes anything, so an outage of the control plane or of the object store
behind it loses nothing; it just backs off (0.5 s doubling to 30 s) and sends
the rest when they are back. A recording is complete in the store once its seal
has been sent and acknowledged; then a `uploaded` mark beside it stops further work.

Cadence (Teleport's async uploader does the same): a part every `interval`
seconds (2 s) or as soon as `part_bytes` (512 KiB) are waiting; while someone
watches the session live (the control plane says so in its answers) every
`live_interval` (0.1 s), so a watcher sees output within a second.
The seal keys this broker signs with are published at start and again whenever
the key file changes (rotation), so seals verify from any machine.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from jitgate.status import reason_of
from jitgate.v1 import recordings_pb2

log = logging.getLogger(__name__)

BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
UPLOADED_MARK = "uploaded"
MAX_PAYLOAD = 880 * 1024  # data + chain of one append, within the transport's 1 MiB message
DATA_NAMES = ("session.cast", "events.jsonl")


@dataclass(slots=True)
class _Upload:
    ref: str
    directory: Path
    data_name: str
    data_offset: int = -1  # -1: not asked yet
    chain_offset: int = -1
    watched: bool = False
    next_at: float = 0.0
    failures: int = 0
    probe: bool = False  # ask the store even with nothing to send (someone may be watching)


class RecordingUploader:
    """One per broker: finds recordings under DATA_DIR/recordings and sends them on."""

    def __init__(self, cp: Any, data_dir: Path, *, interval: float = 2.0, live_interval: float = 0.1,
                 part_bytes: int = 512 * 1024, timeout: float = 10.0) -> None:
        self.cp = cp
        self.root = Path(data_dir) / "recordings"
        self.key_path = Path(data_dir) / "recorder" / "recorder_key.pub"
        self.interval = interval
        self.live_interval = live_interval
        self.part_bytes = part_bytes
        self.timeout = timeout
        self._uploads: dict[str, _Upload] = {}
        self._done: set[str] = set()
        self._published = b""
        self._outage_until = 0.0
        self._outages = 0
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self.completed = 0  # recordings acknowledged complete (for logs and benchmarks)

    # ---------------------------------------------------------------- the loop

    async def run(self) -> None:
        self._wake = wake = asyncio.Event()
        last_scan = 0.0
        while not self._stopping:
            now = time.monotonic()
            if now - last_scan >= self.interval or wake.is_set():
                wake.clear()
                await asyncio.to_thread(self._scan)
                await self._publish_key()
                last_scan = now
            await self.round()
            try:
                await asyncio.wait_for(wake.wait(), self._sleep_time())
            except TimeoutError:
                pass

    def poke(self, ref: str = "", probe: bool = False) -> None:
        """Send now, not at the next round: recording `ref` (its session ended: it is sealed; one
        not found yet is found by the scan this wakes), or every live recording (`probe`: someone
        started watching a session live, so each asks the control plane at once whether it is
        watched and, if so, goes on in small parts). A session's end does not hurry the others:
        500 sessions ending together made 500 rounds over every recording."""
        if ref:
            one = self._uploads.get(ref)
            uploads = [one] if one is not None else []
        else:
            uploads = list(self._uploads.values())
        for upload in uploads:
            upload.next_at = 0.0
            upload.probe = upload.probe or probe
        if self._wake is not None:
            self._wake.set()

    def _sleep_time(self) -> float:
        """Until the next upload is due, but at least `live_interval` (a poke wakes the loop sooner):
        each recording's next part comes due at its own moment, and with 500 live sessions waking for
        each one alone was ~250 rounds a second, every round a pass over all 500."""
        now = time.monotonic()
        wake = min([u.next_at for u in self._uploads.values()] + [now + self.interval])
        wake = max(wake, self._outage_until)
        return min(max(self.live_interval, wake - now), self.interval)

    async def drain(self, timeout: float) -> None:
        """At stop: send what is left once more (bounded); whatever stays is sent after a restart."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        await asyncio.to_thread(self._scan)
        while self._uploads and time.monotonic() < deadline and time.monotonic() >= self._outage_until:
            before = {r: (u.data_offset, u.chain_offset) for r, u in self._uploads.items()}
            await self.round(force=True)
            if before == {r: (u.data_offset, u.chain_offset) for r, u in self._uploads.items()}:
                break  # nothing moved: unsealed (crash) or refused; a restart tries again

    def _scan(self) -> None:
        """Recordings not yet uploaded (a restart finds those a stop or an outage left)."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for entry in entries:
            ref = entry.name
            if ref in self._done or ref in self._uploads or not entry.is_dir():
                continue
            directory = Path(entry.path)
            if (directory / UPLOADED_MARK).exists():
                self._done.add(ref)
                continue
            data_name = next((n for n in DATA_NAMES if (directory / n).exists()), None)
            if data_name is None or not (directory / "meta.json").exists():
                continue  # being created: next scan
            self._uploads[ref] = _Upload(ref, directory, data_name)

    async def _publish_key(self) -> None:
        try:
            line = self.key_path.read_bytes().strip()
        except OSError:
            return
        if line == self._published:
            return
        try:
            await self.cp.recordings.PublishSealKey(
                recordings_pb2.PublishSealKeyRequest(public_key=line.decode()), timeout=self.timeout)
            self._published = line
        except grpc.RpcError as exc:
            log.warning("cannot publish this broker's seal key yet: %s", exc.details())

    # ---------------------------------------------------------------- one round

    async def round(self, force: bool = False) -> None:
        now = time.monotonic()
        if now < self._outage_until and not force:
            return
        for upload in list(self._uploads.values()):
            if not force and upload.next_at > now:
                continue
            try:
                await self._step(upload)
                self._outages = 0
            except grpc.RpcError as exc:
                code = exc.code()
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL):
                    delay = BACKOFF[min(self._outages, len(BACKOFF) - 1)]
                    self._outages += 1
                    self._outage_until = time.monotonic() + delay
                    log.warning("recording upload paused %.1f s (%s: %s); kept on disk", delay, code.name,
                                exc.details())
                    return
                upload.failures += 1
                upload.next_at = time.monotonic() + BACKOFF[min(upload.failures + 2, len(BACKOFF) - 1)]
                log.warning("recording %s refused by the control plane (%s, %s): %s; kept on disk", upload.ref,
                            code.name, reason_of(exc), exc.details())
            except OSError as exc:
                log.warning("recording %s: cannot read it for upload: %s", upload.ref, exc)
                self._uploads.pop(upload.ref, None)  # wiped or unreadable: a later scan finds it again

    async def _step(self, u: _Upload) -> None:
        meta = json.loads((u.directory / "meta.json").read_text(encoding="utf-8"))
        sealed = bool(meta.get("seal"))
        data_path, chain_path = u.directory / u.data_name, u.directory / "chain"
        data_size, chain_size = data_path.stat().st_size, chain_path.stat().st_size
        base: dict[str, Any] = dict(ref=u.ref, session_id=str(meta["session_id"]), kind=str(meta["kind"]),
                    metadata_json=json.dumps({**(meta.get("metadata") or {}),
                                              **({"command": meta["command"]} if meta.get("command") else {})}),
                    started_at=float(meta["started_at"]))
        if u.data_offset < 0:  # where the store is (a restart, another control plane)
            answer = await self.cp.recordings.AppendRecording(
                recordings_pb2.AppendRecordingRequest(**base), timeout=self.timeout)
            self._apply(u, answer)
            if u.ref in self._done:
                return
        while True:
            pending = (data_size - u.data_offset) + (chain_size - u.chain_offset)
            if pending <= 0 and not sealed:
                if u.probe:
                    u.probe = False
                    self._apply(u, await self.cp.recordings.AppendRecording(recordings_pb2.AppendRecordingRequest(
                        **base, data_offset=u.data_offset, chain_offset=u.chain_offset), timeout=self.timeout))
                u.next_at = time.monotonic() + (self.live_interval if u.watched else self.interval)
                return
            u.probe = False
            data_n = min(data_size - u.data_offset, MAX_PAYLOAD)
            chain_n = min(chain_size - u.chain_offset, MAX_PAYLOAD - data_n)
            # Off the event loop: a part is up to 880 KiB, and the loop relays live sessions.
            data = await asyncio.to_thread(_read, data_path, u.data_offset, data_n)
            chain_part = await asyncio.to_thread(_read, chain_path, u.chain_offset, chain_n)
            final = sealed and u.data_offset + len(data) >= data_size and u.chain_offset + len(chain_part) >= chain_size
            answer = await self.cp.recordings.AppendRecording(recordings_pb2.AppendRecordingRequest(
                **base, data_offset=u.data_offset, data=data, chain_offset=u.chain_offset, chain=chain_part,
                final=final), timeout=self.timeout)
            self._apply(u, answer)
            if u.ref in self._done:
                return
            left = (data_size - u.data_offset) + (chain_size - u.chain_offset)
            if left < self.part_bytes and not final and not (sealed and left > 0):
                u.next_at = time.monotonic() + (self.live_interval if u.watched else self.interval)
                return
            if final and not answer.complete:
                u.next_at = time.monotonic() + self.interval
                return

    def _apply(self, u: _Upload, answer: recordings_pb2.AppendRecordingResponse) -> None:
        u.data_offset, u.chain_offset, u.watched = answer.data_offset, answer.chain_offset, answer.watched
        u.failures = 0
        if answer.complete:
            self._uploads.pop(u.ref, None)
            self._done.add(u.ref)
            self.completed += 1
            try:
                fd = os.open(u.directory / UPLOADED_MARK, os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
            except OSError:
                pass  # wiped already: nothing left to send anyway


def _read(path: Path, offset: int, n: int) -> bytes:
    if n <= 0:
        return b""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)
