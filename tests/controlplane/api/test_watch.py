"""WatchEvents: a late subscriber gets the live state first, then changes; users see their own."""
from __future__ import annotations

import queue
import threading
from typing import Any

from jitgate.v1 import access_pb2, types_pb2
from tests.controlplane.api.conftest import duration


class Watcher:
    """Reads a WatchEvents stream in a thread into a queue."""

    def __init__(self, client: Any, types: tuple[str, ...] = ()) -> None:
        self.stream = client.access.WatchEvents(access_pb2.WatchEventsRequest(types=list(types)))
        self.events: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.stream:
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
