"""Recordings the brokers upload while sessions run, kept in the recording store and read by people.

Brokers upload through the control plane (Teleport's model, not Boundary's): the broker
keeps writing its recording to its own disk (that file is the spool), and sends what
the store does not hold yet (`append`) every few seconds or MiB; the control plane
writes each piece as one part object and remembers the offsets in the same
transaction, so a part is acknowledged only once it is stored, and a broker that lost
an answer sends from the offsets it is told. Why through the control plane: brokers
then hold no object-store credentials (a broker in a target's network zone cannot
delete or rewrite anyone's recordings), the control plane knows each recording's
location, size and hash because it wrote them, and a live watcher reads what arrives
here with no second path from the broker.

Reading: admins, members of the policies' `auditors_group` and the session's own user;
nobody else. Every read (list, replay, verify, watch, search) is an audit event.
Retention: recordings older than `retention_days` are deleted with their rows
(audited), except those under a legal hold.
"""
from __future__ import annotations

import builtins
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from controlplane.errors import JitError
from controlplane.ledger import Ledger
from controlplane.store import recordings as rs
from recorder import chain
from recorder.events import Kind, RecordingError
from recorder.keys import parse_public_key
from recorder.objectstore import ObjectStore, ObjectStoreError, part_key
from recorder.reader import RecordingInfo, RecordingReader

log = logging.getLogger(__name__)

PARTS = ("data", "chain")
READ_CHUNK = 512 * 1024  # one streamed message's payload (the transport allows 1 MiB)
MAX_APPEND = 900 * 1024  # data + chain of one AppendRecording
MAX_METADATA = 16 * 1024
WATCH_HINT_SECONDS = 5.0  # a watcher renews this; the broker sends small parts often meanwhile
_REF_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:@-.")


@dataclass(frozen=True, slots=True)
class AppendResult:
    data_offset: int
    chain_offset: int
    complete: bool
    watched: bool


@dataclass(slots=True)
class _Hasher:
    """SHA-256 of a recording's data as its parts arrive in order (rebuilt from the store if lost)."""

    offset: int
    h: Any


def _us(t: float) -> int:
    return int(t * 1_000_000)


def check_ref(ref: str, session_id: str) -> None:
    """A recording ref is its session id or `SESSION.N` (recorder.storage), nothing else."""
    if not ref or len(ref) > 160 or not set(ref) <= _REF_CHARS or ref.startswith("."):
        raise JitError("invalid.argument", f"`{ref[:160]}` is not a recording reference")
    numbered = ref.startswith(session_id + ".") and ref[len(session_id) + 1:].isdigit()
    if session_id and ref != session_id and not numbered:
        raise JitError("invalid.argument", f"recording `{ref}` is not one of session `{session_id}`")


class RecordingArchive:
    """The control plane's side of recordings: uploads in, authorized reads out, retention."""

    def __init__(self, ledger: Ledger, store: ObjectStore, *, auditors_group: str = "auditors",
                 retention_days: int = 0) -> None:
        self.ledger = ledger
        self.store = store
        self.auditors_group = auditors_group
        self.retention_days = retention_days
        self._hashers: dict[str, _Hasher] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self.ledger.clock().timestamp()

    # ---------------------------------------------------------------- seal keys

    def publish_key(self, broker: str, public_key: str) -> tuple[str, bool]:
        """A broker's recorder key; earlier keys stay trusted (rotation). New keys are audited."""
        self.ledger.require_broker(broker)
        try:
            key = parse_public_key(public_key.encode("utf-8"), "seal key")
        except RecordingError as exc:
            raise JitError("invalid.argument", str(exc)) from None
        kid = chain.key_id(key)
        line = " ".join(public_key.split()[:2])
        now = self.ledger.clock()
        with self.ledger.write() as w:
            new = rs.upsert_seal_key(w.tx.conn, kid, broker, line, _us(now.timestamp()))
            if new:
                w.commit([("recording.key_published", broker, kid, {"broker": broker, "key_id": kid}, now)])
        return kid, new

    def seal_keys(self) -> builtins.list[dict[str, Any]]:
        with self.ledger.store.read() as tx:
            rows = rs.list_seal_keys(tx.conn)
        return [{"key_id": r.key_id, "broker": r.broker, "public_key": r.public_key,
                 "first_seen": r.first_seen_us / 1e6, "last_seen": r.last_seen_us / 1e6} for r in rows]

    # ---------------------------------------------------------------- uploads

    def append(self, broker: str, *, ref: str, session_id: str, kind: str, metadata_json: str,
               started_at: float, data_offset: int, data: bytes, chain_offset: int, chain_bytes: bytes,
               final: bool) -> AppendResult:
        """Store the next bytes of a recording (only at the offsets the store holds)."""
        self.ledger.require_broker(broker)
        check_ref(ref, session_id)
        if len(data) + len(chain_bytes) > MAX_APPEND:
            raise JitError("invalid.too_long", f"one append carries at most {MAX_APPEND} bytes")
        row = self._row_for_append(broker, ref, session_id, kind, metadata_json, started_at)
        if row.complete_us is not None:
            return AppendResult(row.data_bytes, row.chain_bytes, True, False)
        if data_offset != row.data_bytes or chain_offset != row.chain_bytes:
            return self._result(row)  # the broker resends from the store's offsets
        # Parts are written before the transaction that counts them: a part no row points to
        # is overwritten by the next attempt at its offset; one the row counts is stored.
        if data:
            self.store.put(part_key(ref, "data", data_offset), data)
        if chain_bytes:
            self.store.put(part_key(ref, "chain", chain_offset), chain_bytes)
        now = self.ledger.clock()
        with self.ledger.write() as w:
            current = rs.get_recording(w.tx.conn, ref)
            assert current is not None
            if current.data_bytes != data_offset or current.chain_bytes != chain_offset:
                return self._result(current)  # another attempt of this broker got there first
            values: dict[str, Any] = {}
            if data:
                rs.add_part(w.tx.conn, ref, "data", data_offset, len(data))
                values["data_bytes"] = data_offset + len(data)
            if chain_bytes:
                rs.add_part(w.tx.conn, ref, "chain", chain_offset, len(chain_bytes))
                values["chain_bytes"] = chain_offset + len(chain_bytes)
            if values:
                rs.update_recording(w.tx.conn, ref, **values)
        self._hash_along(ref, data_offset, data)
        if final:
            return self._complete(ref, now.timestamp())
        latest = rs.RecordingRow(**{**{f: getattr(row, f) for f in row.__dataclass_fields__}, **values})
        return self._result(latest)

    def _result(self, row: rs.RecordingRow) -> AppendResult:
        return AppendResult(row.data_bytes, row.chain_bytes, row.complete_us is not None,
                            row.watched_until_us > _us(self._now()))

    def _row_for_append(self, broker: str, ref: str, session_id: str, kind: str, metadata_json: str,
                        started_at: float) -> rs.RecordingRow:
        with self.ledger.store.read() as tx:
            row = rs.get_recording(tx.conn, ref)
        if row is not None:
            if row.broker != broker:
                raise JitError("permission.denied", f"recording `{ref}` belongs to broker `{row.broker}`")
            return row
        try:
            Kind(kind)
        except ValueError:
            raise JitError("invalid.argument", f"`{kind[:64]}` is not a recording kind") from None
        if len(metadata_json) > MAX_METADATA:
            raise JitError("invalid.too_long", f"recording metadata is over {MAX_METADATA} bytes")
        try:
            meta = json.loads(metadata_json or "{}")
        except ValueError:
            raise JitError("invalid.argument", "recording metadata is not JSON") from None
        if not isinstance(meta, dict):
            raise JitError("invalid.argument", "recording metadata is not a JSON object")
        now = self.ledger.clock()
        with self.ledger.write() as w:
            sess = w.tx.get_session(session_id)
            if sess is None:
                raise JitError("session.not_found", f"no session `{session_id}`")
            if sess.broker != broker:
                raise JitError("permission.denied", f"session `{session_id}` belongs to broker `{sess.broker}`")
            existing = rs.get_recording(w.tx.conn, ref)
            if existing is not None:
                return existing
            row = rs.RecordingRow(
                ref=ref, session_id=session_id, kind=kind, user=sess.user, broker=broker,
                metadata_json=json.dumps(meta, ensure_ascii=False), started_at=started_at, ended_at=None,
                end_reason="", location=self.store.location(ref), data_bytes=0, chain_bytes=0, sealed=False,
                complete_us=None, sha256="", final_hash="", events=0, hold=False, watched_until_us=0,
                created_us=_us(now.timestamp()))
            rs.insert_recording(w.tx.conn, row)
        return row

    def _hash_along(self, ref: str, offset: int, data: bytes) -> None:
        with self._lock:
            hasher = self._hashers.get(ref)
            if hasher is None and offset == 0:
                hasher = self._hashers[ref] = _Hasher(0, hashlib.sha256())
            if hasher is not None and hasher.offset == offset:
                hasher.h.update(data)
                hasher.offset += len(data)

    def _complete(self, ref: str, now: float) -> AppendResult:
        """The broker sent everything: read the seal from the stored chain, fix size and hash."""
        with self.ledger.store.read() as tx:
            row = rs.get_recording(tx.conn, ref)
        assert row is not None
        seal = self._stored_seal(row)
        if seal is None:
            raise JitError("recording.unsealed", f"recording `{ref}` was sent as final without a seal")
        with self._lock:
            hasher = self._hashers.pop(ref, None)
        if hasher is not None and hasher.offset == row.data_bytes:
            digest = hasher.h.hexdigest()
        else:  # another control plane took the first parts, or this one restarted: read them back
            h = hashlib.sha256()
            for piece in self.chunks(row, "data"):
                h.update(piece)
            digest = h.hexdigest()
        at = self.ledger.clock()
        with self.ledger.write() as w:
            rs.update_recording(w.tx.conn, ref, sealed=True, complete_us=_us(now), sha256=digest,
                                final_hash=seal.final_hash, events=seal.events, ended_at=seal.ended_at,
                                end_reason=seal.end_reason)
            w.commit([("recording.stored", row.broker, row.session_id,
                       {"ref": ref, "location": row.location, "size": row.data_bytes, "sha256": digest,
                        "final_hash": seal.final_hash, "key_id": seal.key_id}, at)])
        return AppendResult(row.data_bytes, row.chain_bytes, True, False)

    def _stored_seal(self, row: rs.RecordingRow) -> chain.Seal | None:
        with self.ledger.store.read() as tx:
            parts = rs.parts_of(tx.conn, row.ref, "chain", max(0, row.chain_bytes - 1))
        if not parts:
            return None
        offset, length = parts[-1]
        tail = self.store.get(part_key(row.ref, "chain", offset))[:length]
        if len(tail) < 4096 and offset > 0:  # the seal line may start in the part before
            before = self._part_before(row.ref, offset)
            tail = before + tail
        last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            return chain.Seal.from_line(last.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def _part_before(self, ref: str, offset: int) -> bytes:
        with self.ledger.store.read() as tx:
            parts = rs.parts_of(tx.conn, ref, "chain", max(0, offset - 1))
        for o, n in parts:
            if o + n == offset:
                return self.store.get(part_key(ref, "chain", o))[:n]
        return b""

    # ---------------------------------------------------------------- reading

    def may_read(self, actor: str, row: rs.RecordingRow) -> bool:
        return self.sees_all(actor) or (bool(row.user) and row.user == actor)

    def sees_all(self, actor: str) -> bool:
        return self.ledger.is_admin(actor) or self.auditors_group in self.ledger.policy.current.groups_of(actor)

    def list(self, actor: str, *, session_id: str = "", user: str = "", kind: str = "",
             before_created_us: int | None = None, limit: int = 100) -> builtins.list[rs.RecordingRow]:
        """The recordings `actor` may see, newest first (audited as one read of the list)."""
        if not self.sees_all(actor):
            if user and user != actor:
                self.ledger.refuse(actor, user, "recording.refused", "permission.denied",
                                   f"`{actor}` may not list `{user}`'s recordings", {"what": "list"})
            user = actor
        with self.ledger.store.read() as tx:
            rows = rs.query_recordings(tx.conn, session_id=session_id, user=user, kind=kind,
                                       before_created_us=before_created_us, limit=limit)
        self.ledger.record("recording.listed", actor, session_id or user or "*",
                           {"session_id": session_id, "user": user, "kind": kind, "count": len(rows)})
        return rows

    def open_for(self, actor: str, ref: str, purpose: str) -> rs.RecordingRow:
        """The recording, if `actor` may read it; the read is audited (refusals too)."""
        with self.ledger.store.read() as tx:
            row = rs.get_recording(tx.conn, ref)
            if row is None:  # a session id: its only (or first) recording
                rows = rs.query_recordings(tx.conn, session_id=ref, limit=1000)
                row = rows[-1] if rows else None
        if row is None or not self.may_read(actor, row):
            # The same answer whether it exists or not: nobody learns of others' sessions.
            self.ledger.refuse(actor, ref, "recording.refused", "recording.not_found",
                               f"no recording `{ref}` that `{actor}` may read", {"what": purpose})
        # A live watch has its own type: brokers hear it on their event stream and send at once.
        etype = "recording.watched" if purpose == "watch" else "recording.read"
        self.ledger.record(etype, actor, row.session_id, {"ref": row.ref, "purpose": purpose[:64], "user": row.user})
        return row

    def current(self, ref: str) -> rs.RecordingRow:
        with self.ledger.store.read() as tx:
            row = rs.get_recording(tx.conn, ref)
        if row is None:
            raise JitError("recording.not_found", f"no recording `{ref}`")
        return row

    def chunks(self, row: rs.RecordingRow, part: str, offset: int = 0,
               size: int = READ_CHUNK) -> Iterator[bytes]:
        """The stored bytes of `part` from `offset`, part by part, cut to `size`."""
        with self.ledger.store.read() as tx:
            parts = rs.parts_of(tx.conn, row.ref, part, offset)
        for o, n in parts:
            body = self.store.get(part_key(row.ref, part, o))[:n]
            if len(body) < n:
                raise ObjectStoreError(f"recording {row.ref}: part at {o} is short in the store", unavailable=False)
            start = max(0, offset - o)
            for i in range(start, n, size):
                yield body[i:i + size]

    def watch_hint(self, ref: str) -> None:
        """Someone follows `ref` live: the broker is told to send small parts often."""
        with self.ledger.write() as w:
            rs.update_recording(w.tx.conn, ref, watched_until_us=_us(self._now() + WATCH_HINT_SECONDS))

    def reader(self, row: rs.RecordingRow) -> RecordingReader:
        """A RecordingReader over the stored parts (for search, run where the data is)."""
        from recorder.objectstore import open_chunks

        return RecordingReader(info_of(row), lambda: open_chunks(self.chunks(row, "data")),
                               lambda: b"".join(self.chunks(row, "chain")))

    # ---------------------------------------------------------------- hold, retention

    def hold(self, actor: str, session_or_ref: str, *, release: bool, reason: str) -> builtins.list[str]:
        if not self.ledger.is_admin(actor):
            self.ledger.refuse(actor, session_or_ref, "recording.refused", "permission.denied",
                               f"`{actor}` may not place legal holds: it needs the admin role", {"what": "hold"})
        now = self.ledger.clock()
        with self.ledger.write() as w:
            rows = rs.query_recordings(w.tx.conn, session_id=session_or_ref, limit=10_000)
            if not rows:
                raise JitError("recording.not_found", f"no recording `{session_or_ref}`")
            for row in rows:
                rs.update_recording(w.tx.conn, row.ref, hold=not release)
            w.commit([("recording.hold_released" if release else "recording.held", actor, session_or_ref,
                       {"refs": [r.ref for r in rows], "reason": reason}, now)])
        return [r.ref for r in rows]

    async def retention_loop(self, executor: Any) -> None:
        """Run retention now and then hourly (a task of the server; nothing when retention is off)."""
        if self.retention_days > 0:
            await _retention_forever(self, executor)

    def sweep_retention(self, batch: int = 100) -> int:
        """Delete recordings older than the retention period and not held; returns how many."""
        if self.retention_days <= 0:
            return 0
        cutoff = _us(self._now() - self.retention_days * 86400)
        with self.ledger.store.read() as tx:
            rows = rs.expired_recordings(tx.conn, cutoff, batch)
        done = 0
        for row in rows:
            try:
                objects = self.store.delete_prefix(row.ref + "/")
            except ObjectStoreError as exc:
                log.warning("retention: cannot delete recording %s now: %s", row.ref, exc)
                break
            now = self.ledger.clock()
            with self.ledger.write() as w:
                rs.delete_recording(w.tx.conn, row.ref)
                w.commit([("recording.deleted", "retention", row.session_id,
                           {"ref": row.ref, "location": row.location, "objects": objects,
                            "retention_days": self.retention_days, "sha256": row.sha256}, now)])
            done += 1
        return done


def info_of(row: rs.RecordingRow) -> RecordingInfo:
    meta = json.loads(row.metadata_json or "{}")
    return RecordingInfo(ref=row.ref, session_id=row.session_id, kind=Kind(row.kind), started_at=row.started_at,
                         metadata=meta, command=meta.get("command") if isinstance(meta.get("command"), str) else None,
                         location=row.location, sealed=row.sealed, ended_at=row.ended_at,
                         end_reason=row.end_reason or None, events=row.events if row.sealed else None,
                         final_hash=row.final_hash or None)


RETENTION_INTERVAL = 3600.0  # retention runs hourly; days are its unit


def open_archive(config: Any, ledger: Ledger) -> RecordingArchive:
    """The archive the server config names: `recordings: s3://bucket/prefix`, or a directory
    (default DATA_DIR/recording-store: the embedded store `make run` uses)."""
    from recorder.objectstore import open_object_store

    url = config.recordings or str(config.data_dir / "recording-store")
    store = open_object_store(url, endpoint=config.recordings_endpoint or None,
                              region=config.recordings_region or None)
    return RecordingArchive(ledger, store, auditors_group=config.auditors_group,
                            retention_days=config.recordings_retention_days)


async def _retention_round(archive: RecordingArchive, executor: Any) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(executor, archive.sweep_retention) > 0:
        pass  # a full batch: there may be more


async def _retention_forever(archive: RecordingArchive, executor: Any) -> None:
    import asyncio

    while True:
        try:
            await _retention_round(archive, executor)
        except Exception:  # a store outage: the next round tries again
            log.exception("recording retention failed")
        await asyncio.sleep(RETENTION_INTERVAL)
