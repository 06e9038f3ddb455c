"""WatchEvents: a late subscriber gets the live state first, then changes; users see their own.
WatchEventBatches: the same events in the same order, several per message."""
from __future__ import annotations

import queue
import threading
from typing import Any

from jitgate.v1 import access_pb2, types_pb2
from tests.controlplane.api.conftest import duration


class Watcher:
    """Reads a WatchEvents stream (or WatchEventBatches, its batches flattened) in a thread into a queue."""

    def __init__(self, client: Any, types: tuple[str, ...] = (), batched: bool = False) -> None:
        rpc = client.access.WatchEventBatches if batched else client.access.WatchEvents
        self.stream = rpc(access_pb2.WatchEventsRequest(types=list(types)))
        self.batched = batched
        self.messages: list[Any] = []  # what came in each message
        self.events: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.stream:
                self.messages.append(message)
                for event in message.events if self.batched else (message,):
                    self.events.put(event)
        except Exception as e:  # cancelled at the end of the test
            self.events.put(e)

    def until(self, predicate: Any, timeout: float = 10.0) -> list[types_pb2.Event]:
        """Events up to and including the first that satisfies `predicate`."""
        seen = []
        while True:
            event = self.events.get(timeout=timeout)
            assert not isinstance(event, Exception), event
            seen.append(event)
            if predicate(event):
                return seen

    def close(self) -> None:
        self.stream.cancel()
        self.thread.join(5)


def create(client: Any, resource: str, **kw: Any) -> types_pb2.AccessRequest:
    msg = access_pb2.CreateRequestRequest(resource=resource, reason="watch test", **kw)
    msg.duration.CopyFrom(duration(1800))
    return client.access.CreateRequest(msg).request


def test_snapshot_then_live_changes(cp):
    alice, bob, ada = cp.client("alice"), cp.client("bob"), cp.client("ada")
    before_alice = create(alice, "web-dev-01", login="deploy")
    before_bob = create(bob, "dev-db", role="readonly")

    admin_watch, alice_watch = Watcher(ada), Watcher(alice)
    try:
        snap = admin_watch.until(lambda e: e.type == "snapshot.end")
        snap_ids = {e.request.id for e in snap if e.type == "snapshot"}
        assert {before_alice.id, before_bob.id} <= snap_ids
        assert all(e.request.state in (types_pb2.REQUEST_STATE_ACTIVE, types_pb2.REQUEST_STATE_PENDING)
                   for e in snap if e.type == "snapshot")

        alice_snap = alice_watch.until(lambda e: e.type == "snapshot.end")
        alice_ids = {e.request.id for e in alice_snap if e.type == "snapshot"}
        assert before_alice.id in alice_ids and before_bob.id not in alice_ids
        assert {e.request.user for e in alice_snap if e.type == "snapshot"} == {"alice"}

        live_bob = create(bob, "dev-db", role="readonly")
        live_alice = create(alice, "web-dev-01", login="root")
        seen = admin_watch.until(lambda e: e.request.id == live_alice.id and e.type == "grant.activated")
        assert live_bob.id in {e.request.id for e in seen}
        assert {"request.created", "grant.activated"} <= {e.type for e in seen}
        assert all(e.seq > 0 for e in seen)

        alice_seen = alice_watch.until(lambda e: e.request.id == live_alice.id and e.type == "grant.activated")
        assert all(e.request.user == "alice" for e in alice_seen), [e.request.user for e in alice_seen]
        assert live_bob.id not in {e.request.id for e in alice_seen}
    finally:
        admin_watch.close()
        alice_watch.close()


def test_type_filter(cp):
    alice = cp.client("alice")
    watch = Watcher(cp.client("broker"), types=("grant.revoked",))
    try:
        watch.until(lambda e: e.type == "snapshot.end")
        req = create(alice, "web-dev-01", login="deploy")
        alice.access.Revoke(access_pb2.RevokeRequest(id=req.id, reason="done"))
        got = watch.until(lambda e: e.request.id == req.id)
        assert [e.type for e in got] == ["grant.revoked"]
        assert got[0].request.state == types_pb2.REQUEST_STATE_REVOKED
    finally:
        watch.close()


def test_batches_carry_the_same_events_in_order(cp):
    alice, bob, ada = cp.client("alice"), cp.client("bob"), cp.client("ada")
    create(alice, "web-dev-01", login="deploy")
    create(bob, "dev-db", role="readonly")
    single, batched, own = Watcher(ada), Watcher(ada, batched=True), Watcher(alice, batched=True)
    try:
        snap = batched.until(lambda e: e.type == "snapshot.end")
        assert len(snap) >= 3
        # The whole snapshot and its end fit in one message.
        assert [e.type for e in batched.messages[0].events] == [e.type for e in snap]
        single.until(lambda e: e.type == "snapshot.end")
        own.until(lambda e: e.type == "snapshot.end")

        made = [create(alice if i % 2 else bob, "web-dev-01" if i % 2 else "dev-db",
                       **({"login": "deploy"} if i % 2 else {"role": "readonly"})) for i in range(6)]
        alice.access.Revoke(access_pb2.RevokeRequest(id=made[-1].id, reason="done"))

        def last(e: Any) -> bool:
            return e.type == "grant.revoked" and e.request.id == made[-1].id
        got_single, got_batched = single.until(last), batched.until(last)
        key = [(e.seq, e.type, e.request.id, e.request.state) for e in got_single]
        assert key == [(e.seq, e.type, e.request.id, e.request.state) for e in got_batched]
        assert [e.seq for e in got_batched] == sorted(e.seq for e in got_batched)
        assert {m.id for m in made} <= {e.request.id for e in got_batched}

        # A user's batched stream holds only their own requests, like WatchEvents.
        mine = own.until(last)
        assert {e.request.user for e in mine} == {"alice"}
        assert {m.id for m in made if m.user == "alice"} <= {e.request.id for e in mine}
    finally:
        for w in (single, batched, own):
            w.close()
