"""RecordingService: brokers upload recordings; people list, read, watch and search them."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from controlplane import bounds
from controlplane.errors import JitError
from controlplane.recordings import RecordingArchive, info_of
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import caller, require_role
from controlplane.store.recordings import RecordingRow
from jitgate.v1 import recordings_pb2, recordings_pb2_grpc
from recorder.objectstore import ObjectStoreError

T = TypeVar("T")
_PAGE = 200  # recordings per ListRecordings page (a row is < 4 KiB)
WATCH_POLL = 0.05  # how often a live watch looks for new parts (one indexed row read)
_PART_NAMES = {recordings_pb2.RECORDING_PART_DATA: "data", recordings_pb2.RECORDING_PART_CHAIN: "chain"}


def _unavailable(exc: ObjectStoreError) -> JitError:
    if exc.unavailable:
        return JitError("recording.store_unavailable", str(exc))
    return JitError("recording.not_found", str(exc))


def _ts(t: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(dt.datetime.fromtimestamp(t, dt.UTC))
    return out


def recording_message(row: RecordingRow) -> recordings_pb2.Recording:
    meta = json.loads(row.metadata_json or "{}")
    return recordings_pb2.Recording(
        ref=row.ref, session_id=row.session_id, kind=row.kind, user=row.user, broker=row.broker,
        metadata_json=bounds.clip(row.metadata_json, 16 * 1024), started_at=row.started_at,
        ended_at=row.ended_at or 0.0, end_reason=row.end_reason, sealed=row.sealed,
        complete=row.complete_us is not None, location=row.location, size=row.data_bytes, sha256=row.sha256,
        final_hash=row.final_hash, events=row.events, hold=row.hold, chain_size=row.chain_bytes,
        command=meta.get("command") if isinstance(meta.get("command"), str) else "")


class RecordingServicer(recordings_pb2_grpc.RecordingServiceServicer):
    def __init__(self, deps: Deps, archive: RecordingArchive) -> None:
        self.d = deps
        self.archive = archive

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await self.d.run_slow(fn, *args, **kwargs)
        except ObjectStoreError as exc:
            raise _unavailable(exc) from None

    async def PublishSealKey(self, request: recordings_pb2.PublishSealKeyRequest,
                             context: grpc.aio.ServicerContext) -> recordings_pb2.PublishSealKeyResponse:
        who = require_role("broker", "publish seal keys")
        kid, new = await self._run(self.archive.publish_key, who.name, request.public_key)
        return recordings_pb2.PublishSealKeyResponse(key_id=kid, new=new)

    async def AppendRecording(self, request: recordings_pb2.AppendRecordingRequest,
                              context: grpc.aio.ServicerContext) -> recordings_pb2.AppendRecordingResponse:
        who = require_role("broker", "upload recordings")
        r = await self._run(self.archive.append, who.name, ref=request.ref, session_id=request.session_id,
                            kind=request.kind, metadata_json=request.metadata_json, started_at=request.started_at,
                            data_offset=request.data_offset, data=request.data, chain_offset=request.chain_offset,
                            chain_bytes=request.chain, final=request.final)
        return recordings_pb2.AppendRecordingResponse(data_offset=r.data_offset, chain_offset=r.chain_offset,
                                                      complete=r.complete, watched=r.watched)

    async def ListSealKeys(self, request: recordings_pb2.ListSealKeysRequest,
                           context: grpc.aio.ServicerContext) -> recordings_pb2.ListSealKeysResponse:
        keys = await self._run(self.archive.seal_keys)
        out = recordings_pb2.ListSealKeysResponse()
        for k in keys[:2000]:
            out.keys.append(recordings_pb2.SealKey(key_id=k["key_id"], broker=k["broker"], public_key=k["public_key"],
                                                   first_seen=_ts(k["first_seen"]), last_seen=_ts(k["last_seen"])))
        return out

    async def ListRecordings(self, request: recordings_pb2.ListRecordingsRequest,
                             context: grpc.aio.ServicerContext) -> recordings_pb2.ListRecordingsResponse:
        limit = bounds.page_limit(request.page_size, _PAGE, default=100)
        before: int | None = None
        if request.page_token:
            try:
                before = int(request.page_token)
            except ValueError:
                raise JitError("invalid.argument", "`page_token` is not one this server gave") from None
        rows = await self._run(self.archive.list, caller().name, session_id=request.session_id,
                               user=request.user, kind=request.kind, before_created_us=before, limit=limit)
        out = recordings_pb2.ListRecordingsResponse()
        out.recordings.extend(recording_message(r) for r in rows)
        if len(rows) == limit:
            out.next_page_token = str(rows[-1].created_us)
        return out

    async def _stream(self, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
        """Chunks pulled from the store in the worker pool, one at a time (no read-ahead of GBs)."""
        while True:
            try:
                piece = await self.d.run_slow(next, chunks, None)
            except ObjectStoreError as exc:
                raise _unavailable(exc) from None
            if piece is None:
                return
            yield piece

    async def ReadRecording(self, request: recordings_pb2.ReadRecordingRequest,
                            context: grpc.aio.ServicerContext) -> AsyncIterator[recordings_pb2.RecordingChunk]:
        part = _PART_NAMES.get(request.part)
        if part is None:
            raise JitError("invalid.argument", "`part` must be data or chain")
        row = await self._run(self.archive.open_for, caller().name, request.ref, request.purpose or "replay")
        yield recordings_pb2.RecordingChunk(offset=request.offset, recording=recording_message(row))
        offset = request.offset
        async for piece in self._stream(self.archive.chunks(row, part, request.offset)):
            yield recordings_pb2.RecordingChunk(offset=offset, data=piece)
            offset += len(piece)

    async def WatchRecording(self, request: recordings_pb2.WatchRecordingRequest,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[recordings_pb2.RecordingChunk]:
        row = await self._run(self.archive.open_for, caller().name, request.ref, "watch")
        yield recordings_pb2.RecordingChunk(offset=request.offset, recording=recording_message(row))
        offset = request.offset
        loop = asyncio.get_running_loop()
        hinted = 0.0
        while True:
            if not row.sealed and loop.time() - hinted > 2.0:
                await self._run(self.archive.watch_hint, row.ref)
                hinted = loop.time()
            if row.data_bytes > offset:
                async for piece in self._stream(self.archive.chunks(row, "data", offset)):
                    yield recordings_pb2.RecordingChunk(offset=offset, data=piece)
                    offset += len(piece)
            if row.sealed and offset >= row.data_bytes:
                yield recordings_pb2.RecordingChunk(offset=offset, sealed=True, recording=recording_message(row))
                return
            await asyncio.sleep(WATCH_POLL)
            row = await self._run(self.archive.current, row.ref)

    async def SearchRecordings(self, request: recordings_pb2.SearchRecordingsRequest,
                               context: grpc.aio.ServicerContext) -> AsyncIterator[recordings_pb2.RecordingHit]:
        from recorder.search import search_recording

        if not request.text:
            raise JitError("invalid.argument", "search text is empty")
        who = caller().name
        limit = min(max(request.limit_per_recording, 1), 10_000) if request.limit_per_recording else 20
        before: int | None = None
        while True:
            rows = await self._run(self.archive.list, who, session_id=request.session_id, kind=request.kind,
                                   before_created_us=before, limit=_PAGE)
            for row in rows:
                if row.data_bytes == 0:
                    continue
                await self._run(self.archive.open_for, who, row.ref, "search")
                hits = await self._run(lambda r=row: search_recording(
                    self.archive.reader(r), request.text, ignore_case=not request.case_sensitive, limit=limit))
                for h in hits:
                    yield recordings_pb2.RecordingHit(ref=h.ref, session_id=h.session_id, started_at=h.started_at,
                                                      t=h.t, where=h.where, snippet=bounds.clip(h.snippet, 2048),
                                                      kind=h.kind)
            if len(rows) < _PAGE:
                return
            before = rows[-1].created_us

    async def HoldRecording(self, request: recordings_pb2.HoldRecordingRequest,
                            context: grpc.aio.ServicerContext) -> recordings_pb2.HoldRecordingResponse:
        refs = await self._run(self.archive.hold, caller().name, request.session_id, release=request.release,
                               reason=request.reason)
        return recordings_pb2.HoldRecordingResponse(refs=refs)


__all__ = ["RecordingServicer", "info_of", "recording_message"]
