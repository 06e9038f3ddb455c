"""Recordings read through the control plane (RecordingService): what `jitgate replay`,
`recordings list|search|verify` and `sessions watch` use on any machine with an identity.

`RemoteRecordingStore` has the reading half of `recorder.storage.RecordingStore`
(list, refs_for, info, open, verify, follow), so the commands print the same way
whether a recording comes from the control plane or from a broker's disk
(`--data-dir`). Data arrives as a stream of chunks (never one message), read line by
line; seals verify against the keys the brokers published to the control plane.
"""
from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from jitgate.v1 import recordings_pb2, recordings_pb2_grpc
from recorder.events import Event, Kind, RecordingError
from recorder.header import RecordingHeader
from recorder.keys import parse_public_key
from recorder.objectstore import open_chunks
from recorder.reader import RecordingInfo, RecordingReader, parse_event
from recorder.storage import RecordingFilter
from recorder.verify import VerifyResult, verify_recording

_PAGE = 200
_PARTS = {"data": recordings_pb2.RECORDING_PART_DATA, "chain": recordings_pb2.RECORDING_PART_CHAIN}


def info_from(msg: recordings_pb2.Recording) -> RecordingInfo:
    try:
        meta = json.loads(msg.metadata_json or "{}")
    except ValueError:
        meta = {}
    return RecordingInfo(
        ref=msg.ref, session_id=msg.session_id, kind=Kind(msg.kind), started_at=msg.started_at,
        metadata=meta if isinstance(meta, dict) else {}, command=msg.command or None, location=msg.location,
        sealed=msg.sealed, ended_at=msg.ended_at or None, end_reason=msg.end_reason or None,
        events=msg.events if msg.sealed else None, final_hash=msg.final_hash or None)


class RemoteRecordingStore:
    """The control plane's recordings, as the caller is allowed to see them."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.stub = recordings_pb2_grpc.RecordingServiceStub(client.channel)
        self.root = f"the control plane at {client.server}"  # what "no recording in ..." names
        self._keys: builtins.list[Ed25519PublicKey] | None = None
        self._rows: dict[str, recordings_pb2.Recording] = {}

    def page(self, *, session_id: str = "", user: str = "", kind: str = "", page_size: int = _PAGE,
             page_token: str = "") -> recordings_pb2.ListRecordingsResponse:
        """One page of the recordings the caller may see (newest first) and the next page's token."""
        page = self.stub.ListRecordings(recordings_pb2.ListRecordingsRequest(
            session_id=session_id, user=user, kind=kind, page_size=page_size, page_token=page_token),
            timeout=self.client.timeout)
        for r in page.recordings:
            self._rows[r.ref] = r
        return page

    def rows(self, *, session_id: str = "", user: str = "", kind: str = "") -> builtins.list[recordings_pb2.Recording]:
        """Every recording the caller may see (newest first), page by page."""
        out: builtins.list[recordings_pb2.Recording] = []
        token = ""
        while True:
            page = self.page(session_id=session_id, user=user, kind=kind, page_token=token)
            out.extend(page.recordings)
            token = page.next_page_token
            if not token:
                return out

    def stored(self, ref: str) -> recordings_pb2.Recording | None:
        """The control plane's row of a recording listed or read before (size, SHA-256, hold)."""
        return self._rows.get(ref)

    def list(self, filters: RecordingFilter | None = None) -> builtins.list[RecordingInfo]:
        f = filters or RecordingFilter()
        user = f.metadata.get("user") if isinstance(f.metadata.get("user"), str) else ""
        rows = self.rows(session_id=f.session_id or "", user=user or "", kind=f.kind.value if f.kind else "")
        infos = [info_from(r) for r in rows]
        infos = [i for i in infos if f.matches(i)]
        infos.sort(key=lambda i: (i.started_at, i.ref))
        return infos

    def refs_for(self, session_or_ref: str) -> builtins.list[str]:
        refs = [i.ref for i in self.list(RecordingFilter(session_id=session_or_ref))]
        if refs:
            return refs
        # Not in what the caller may list: ask for it by name, so the control plane answers (and
        # audits) the refusal itself: "no recording `X` that `bob` may read" (recording.not_found).
        call = self.stub.ReadRecording(recordings_pb2.ReadRecordingRequest(
            ref=session_or_ref, part=recordings_pb2.RECORDING_PART_CHAIN, offset=2**62, purpose="resolve"))
        try:
            first = next(iter(call), None)
        finally:
            call.cancel()
        if first is None or not first.HasField("recording"):
            return []
        self._rows[first.recording.ref] = first.recording
        return [first.recording.ref]

    def info(self, ref: str) -> RecordingInfo:
        if ref not in self._rows:
            self.rows(session_id=ref)
        if ref not in self._rows:
            raise RecordingError(f"no recording `{ref}` in {self.root}")
        return info_from(self._rows[ref])

    def trusted_keys(self) -> builtins.list[Ed25519PublicKey]:
        """Every seal key the brokers published (rotated ones included)."""
        if self._keys is None:
            resp = self.stub.ListSealKeys(recordings_pb2.ListSealKeysRequest(), timeout=self.client.timeout)
            keys = []
            for k in resp.keys:
                try:
                    keys.append(parse_public_key(k.public_key.encode(), f"seal key {k.key_id}"))
                except RecordingError:
                    continue  # one bad entry does not hide the others; its seals then fail to verify
            self._keys = keys
        return self._keys

    def _chunks(self, ref: str, part: str, purpose: str) -> Iterator[bytes]:
        call = self.stub.ReadRecording(recordings_pb2.ReadRecordingRequest(ref=ref, part=_PARTS[part],
                                                                           purpose=purpose))
        try:
            for chunk in call:
                if chunk.HasField("recording"):
                    self._rows[chunk.recording.ref] = chunk.recording
                if chunk.data:
                    yield chunk.data
        finally:
            call.cancel()  # a reader that stops early (a header) ends the stream

    def open(self, ref: str, purpose: str = "replay") -> RecordingReader:
        info = self.info(ref)
        return RecordingReader(info, lambda: open_chunks(self._chunks(ref, "data", purpose)),
                               lambda: b"".join(self._chunks(ref, "chain", purpose)))

    def verify(self, ref: str, *, expected_final_hash: str | None = None) -> VerifyResult:
        reader = self.open(ref, "verify")
        result = verify_recording(ref, reader.lines(), reader.chain_bytes(), self.trusted_keys(),
                                  closed=reader.info.sealed, expected_final_hash=expected_final_hash)
        row = self._rows.get(ref)
        if row is not None and row.sealed and row.final_hash and result.final_hash \
                and result.final_hash != row.final_hash:
            result.problems.append(f"final hash {result.final_hash} differs from the one the control plane "
                                   f"recorded ({row.final_hash})")
            result.ok = result.intact = False
        return result

    def watch(self, ref: str, *, timeout: float | None = None) -> LiveWatch:
        """A live watch of `ref` (WatchRecording) that ends at its seal, at `timeout` seconds (the
        caller's certificate's end), or when cancelled from another thread (a viewer who left)."""
        info = self.info(ref)
        return LiveWatch(info, self.stub.WatchRecording(recordings_pb2.WatchRecordingRequest(ref=ref),
                                                        timeout=timeout))

    def follow(self, ref: str) -> Iterator[Event]:
        """Events of a live recording as the broker uploads them, until it is sealed."""
        live = self.watch(ref)
        try:
            yield from live.events()
        finally:
            live.cancel()

    def search(self, text: str, *, session_id: str = "", kind: str = "", case_sensitive: bool = False,
               limit: int = 20) -> builtins.list[dict[str, Any]]:
        """Hits from the control plane, which searches where the recordings are."""
        call = self.stub.SearchRecordings(recordings_pb2.SearchRecordingsRequest(
            text=text, session_id=session_id, kind=kind, case_sensitive=case_sensitive, limit_per_recording=limit))
        return [{"ref": h.ref, "session_id": h.session_id, "kind": h.kind, "t": h.t, "where": h.where,
                 "snippet": h.snippet, "started_at": h.started_at} for h in call]

    def hold(self, session_id: str, *, release: bool, reason: str) -> builtins.list[str]:
        resp = self.stub.HoldRecording(recordings_pb2.HoldRecordingRequest(
            session_id=session_id, release=release, reason=reason), timeout=self.client.timeout)
        return list(resp.refs)


class LiveWatch:
    """One WatchRecording call and the events it carries: the data file's lines after the header,
    parsed as they arrive (a line split between chunks waits for its end)."""

    def __init__(self, info: RecordingInfo, call: Any) -> None:
        self.info = info
        self.call = call
        self.recording: recordings_pb2.Recording | None = None  # the latest row the stream sent
        self.header: RecordingHeader | None = None  # the data file's first line, once it arrived
        self.sealed = False

    def events(self) -> Iterator[Event]:
        pending = b""
        header_seen = False
        for chunk in self.call:
            if chunk.HasField("recording"):
                self.recording = chunk.recording
            if not chunk.data:
                if chunk.sealed:
                    self.sealed = True
                    return
                continue
            lines = (pending + chunk.data).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if not header_seen:
                    header_seen = True
                    try:
                        self.header = RecordingHeader.from_line(line)
                    except ValueError:
                        pass  # events still parse; only the terminal's first size is unknown
                    continue
                try:
                    yield parse_event(self.info.kind, line)
                except ValueError as exc:
                    raise RecordingError(f"recording {self.info.ref}: {exc}") from None

    def cancel(self) -> None:
        self.call.cancel()
