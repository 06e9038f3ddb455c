"""Watch fan-out: core changes -> every WatchEvents subscriber, each with a bounded queue.

The core calls `EventHub.publish` after each commit, from whatever thread made
the change; publish only queues the change, so neither the caller's RPC nor a
sweep of thousands of expiries waits for it. One converter thread turns queued
changes into protobuf once each and hands them, in batches, to the event loop,
which copies them into each subscriber's queue (order of publication is kept). A subscriber that
falls more than `queue_size` events behind is cut off (its stream ends with
RESOURCE_EXHAUSTED) rather than silently missing events: it reconnects and
gets a fresh snapshot.

Each event carries the current state of the request or session concerned, so
a change seen twice (once in the snapshot, once live) is harmless.

Ahead of a deadline the sweeper's prepared records (controlplane/prepared.py) reach `prepare`:
the converter thread builds their `grant.expired` events then, a chunk at a time between live
changes, so a mass expiry's events only need their seq and time once committed. A change uses
its prepared event only if it carries that very record object (handed out only when stored rows
match it).
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from controlplane import convert
from controlplane.model import Change, RequestRecord
from jitgate.v1 import types_pb2

log = logging.getLogger(__name__)

PREPARE_CHUNK = 200  # prepared records converted per turn (~10 ms): live changes wait at most that long


@dataclass(eq=False)
class _Prepared:
    """Records whose grant.expired events to build ahead (a queue item of the converter)."""

    records: list[RequestRecord]
    generation: int


def owner_of(event: types_pb2.Event) -> str:
    """The user an event concerns (requester or session user), "" if none."""
    if event.HasField("request"):
        return event.request.user
    if event.HasField("session"):
        return event.session.user
    return ""


def type_matches(event_type: str, wanted: tuple[str, ...]) -> bool:
    """Empty `wanted`: all. A wanted entry ending in "." is a prefix ("grant." matches "grant.expired")."""
    if not wanted:
        return True
    return any(event_type == w or (w.endswith(".") and event_type.startswith(w)) for w in wanted)


@dataclass(eq=False)
class Subscription:
    """One watcher: its filter and its queue (None in the queue = cut off)."""

    name: str
    see_all: bool
    types: tuple[str, ...]
    limit: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    overflowed: bool = False
    _held: types_pb2.Event | None = None  # taken from the queue but over the last batch's budget

    def wants(self, event: types_pb2.Event) -> bool:
        if not type_matches(event.type, self.types):
            return False
        return self.see_all or owner_of(event) == self.name

    def offer(self, event: types_pb2.Event) -> bool:
        """Queue `event`; False (and a cut-off marker) when the watcher is too far behind."""
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(None)
            return False
        self.queue.put_nowait(event)
        return True

    async def next_batch(self, budget: int = 0) -> tuple[list[types_pb2.Event], bool]:
        """Wait for the next event, then take the events queued behind it (in order) while their
        encoded sizes add up to at most `budget` bytes (0: one event). Never waits for more to
        come: a lone event goes out at once, a burst in few messages. The flag is True when this
        watcher was cut off (after the events before the cut-off marker)."""
        first, self._held = self._held, None
        if first is None:
            first = await self.queue.get()
        if first is None:
            return [], True
        batch = [first]
        if budget <= 0:
            return batch, False
        used = first.ByteSize()
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event is None:
                return batch, True
            used += event.ByteSize() + 8  # + the repeated field's tag and length
            if used > budget:
                self._held = event
                break
            batch.append(event)
        return batch, False


class EventHub:
    """Fans core changes out to subscribers; lives on one asyncio event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue_size: int = 10000) -> None:
        self._loop = loop
        self._queue_size = queue_size
        self._subs: set[Subscription] = set()
        self._pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Converter thread only: id(record) -> (record, its grant.expired event without seq/at).
        self._ready: dict[int, tuple[RequestRecord, types_pb2.Event]] = {}
        self._generation = 0  # the latest prepared batch (older remainders are dropped)
        self._ready_generation = 0  # the batch `_ready` holds

    def start(self) -> None:
        """Start the converter thread (publish before start() queues until then)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._convert_loop, name="event-hub", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def subscribe(self, name: str, see_all: bool, types: tuple[str, ...] = ()) -> Subscription:
        """Start receiving changes (call on the loop, before reading the snapshot)."""
        sub = Subscription(name, see_all, types, self._queue_size)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, change: Change) -> None:
        """Core listener (any thread, right after a commit): queue the change, return at once."""
        if self._subs:  # nobody watching: nothing to convert (a watcher subscribes before its snapshot)
            self._pending.put(change)

    def prepare(self, records: list[RequestRecord]) -> None:
        """Prepared-records listener (any thread): build their grant.expired events ahead of the
        deadline, on the converter thread (replacing those of any earlier batch)."""
        if self._subs:
            self._generation += 1
            self._pending.put(_Prepared(records, self._generation))

    def _convert_loop(self) -> None:
        while True:
            batch = [self._pending.get()]
            while len(batch) < 1000:  # take what else is waiting: one hand-over per batch
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            stop = any(c is None for c in batch)
            events = []
            for change in batch:
                if change is None:
                    continue
                if isinstance(change, _Prepared):
                    self._build_ahead(change)
                    continue
                try:
                    events.append(self._event_of(change))
                except Exception:  # one bad change must not stop the stream of the others
                    log.exception("cannot convert change %s", getattr(change, "type", "?"))
            if events:
                try:
                    self._loop.call_soon_threadsafe(self._fanout_many, events)
                except RuntimeError:
                    return  # the loop is closed: the server is stopping
            if stop:
                return

    def _build_ahead(self, item: _Prepared) -> None:
        """Build one chunk of a prepared batch's events; queue the rest behind the waiting changes."""
        if item.generation != self._generation:
            return  # a newer batch replaced this one
        if item.generation != self._ready_generation:  # the first chunk of a new batch
            self._ready = {}
            self._ready_generation = item.generation
        part, rest = item.records[:PREPARE_CHUNK], item.records[PREPARE_CHUNK:]
        for rec in part:
            try:
                event = types_pb2.Event(type="grant.expired", request=convert.access_request(rec))
                self._ready[id(rec)] = (rec, event)
            except Exception:  # a record that cannot be built ahead is built when its change comes
                log.exception("cannot build the event of prepared request %s", rec.id)
        if rest:
            self._pending.put(_Prepared(rest, item.generation))

    def _event_of(self, change: Change) -> types_pb2.Event:
        """The change's event: its prepared one (seq and time filled in) when it carries a prepared record."""
        if change.type == "grant.expired" and change.request is not None:
            hit = self._ready.pop(id(change.request), None)
            if hit is not None and hit[0] is change.request:
                event = hit[1]
                event.seq = change.seq
                event.at.CopyFrom(convert.ts_at(change.at))
                return event
        return convert.change_event(change)

    def _fanout_many(self, events: list[types_pb2.Event]) -> None:
        for event in events:
            self._fanout(event)

    def publish_event(self, event: types_pb2.Event) -> None:
        """Fan out an already built event (on the loop)."""
        self._fanout(event)

    def _fanout(self, event: types_pb2.Event) -> None:
        for sub in list(self._subs):
            if sub.wants(event) and not sub.offer(event):
                log.warning("watcher %s fell %d events behind; cut off", sub.name, sub.limit)
                self._subs.discard(sub)
