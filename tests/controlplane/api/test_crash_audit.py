"""kill -9 mid-workload loses nothing acknowledged; overdue grants end on restart; the audit
chain verifies, and `jitgate audit verify` catches a row edited or removed in the SQLite file."""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from jitgate.v1 import access_pb2, audit_pb2, types_pb2
from tests.cluster import NO_MODEL, ControlPlane
from tests.controlplane.api.conftest import POLICIES, duration, jitgate

S = types_pb2


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("crash"), POLICIES, config=NO_MODEL) as cp:
        yield cp


class Workload:
    """Clients creating and approving requests until told to stop; records what the server acknowledged."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.acked: dict[str, Any] = {}  # request id -> last acknowledged AccessRequest
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []

    def _ack(self, req: Any) -> None:
        with self.lock:
            self.acked[req.id] = req

    def short_grants(self) -> None:
        client = self.cp.client("alice", timeout=10)
        n = 0
        while not self.stop.is_set():
            n += 1
            msg = access_pb2.CreateRequestRequest(resource="dev-db", role="readonly", reason=f"crash {n}")
            msg.duration.CopyFrom(duration(2 if n % 2 else 3600))
            try:
                self._ack(client.access.CreateRequest(msg).request)
            except grpc.RpcError as e:
                self.errors.append(e.code().name)
                return
            except ValueError:  # the test closed this client's channel after the kill
                self.errors.append("CLOSED")
                return

    def approvals(self) -> None:
        alice, bob, sam = (self.cp.client(n, timeout=10) for n in ("alice", "bob", "sam"))
        n = 0
        while not self.stop.is_set():
            n += 1
            msg = access_pb2.CreateRequestRequest(resource="web-prod-01", login="deploy", reason=f"prod {n}")
            msg.duration.CopyFrom(duration(1800))
            try:
                req = alice.access.CreateRequest(msg).request
                self._ack(req)
                for who in (bob, sam):
                    self._ack(who.access.Approve(access_pb2.DecideRequest(id=req.id)))
            except grpc.RpcError as e:
                self.errors.append(e.code().name)
                return
            except ValueError:  # the test closed this client's channel after the kill
                self.errors.append("CLOSED")
                return


def test_kill_9_mid_workload(plane: ControlPlane):
    work = Workload(plane)
    threads = [threading.Thread(target=work.short_grants), threading.Thread(target=work.short_grants),
               threading.Thread(target=work.approvals)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(work.acked) < 60 and time.monotonic() < deadline:  # let the workload get going
        time.sleep(0.02)
    plane.kill()  # in the middle of calls: no shutdown code runs
    work.stop.set()
    for t in threads:
        t.join(10)
    acked = dict(work.acked)
    assert len(acked) >= 60 and work.errors, "the workload must have been interrupted by the kill"

    # Wait (on the known deadline, not a guess) until every short grant is overdue, then restart.
    overdue_at = max(r.expires_at.ToDatetime(tzinfo=dt.UTC) for r in acked.values()
                     if r.state == S.REQUEST_STATE_ACTIVE and r.duration.seconds == 2)
    while dt.datetime.now(dt.UTC) < overdue_at:
        time.sleep(0.05)
    plane.start()

    client = plane.client("ada")
    expired = 0
    for rid, ack in acked.items():
        now = client.access.GetRequest(access_pb2.GetRequestRequest(id=rid))
        assert now.user == ack.user and now.duration == ack.duration
        assert len(now.approvals) >= len(ack.approvals), rid  # no acknowledged approval lost
        if ack.state == S.REQUEST_STATE_ACTIVE and ack.duration.seconds == 2:
            # Overdue grants are ended by the first sweep, before the server listens.
            assert now.state == S.REQUEST_STATE_EXPIRED, rid
            expired += 1
        elif ack.state == S.REQUEST_STATE_ACTIVE:
            assert now.state == S.REQUEST_STATE_ACTIVE and now.expires_at == ack.expires_at
        else:
            assert now.state in (S.REQUEST_STATE_PENDING, S.REQUEST_STATE_ACTIVE)
    assert expired > 0
    chain = client.audit.VerifyChain(audit_pb2.VerifyChainRequest())
    assert chain.ok, chain.problems
    created = {e.subject for e in _all_events(client) if e.type == "request.created"}
    assert set(acked) <= created


def _all_events(client: Any) -> list[Any]:
    out, after = [], 0
    while True:
        page = client.audit.ListEvents(audit_pb2.ListEventsRequest(after_seq=after, page_size=1000)).events
        out.extend(page)
        if len(page) < 1000:
            return out
        after = page[-1].seq


def _verify(plane: ControlPlane) -> tuple[int, str]:
    proc = jitgate("audit", "verify", env=plane.cli_env("ada"), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_audit_verify_catches_tampering(plane: ControlPlane):
    alice = plane.client("alice")
    for n in range(3):
        msg = access_pb2.CreateRequestRequest(resource="web-dev-01", login="deploy", reason=f"tamper {n}")
        msg.duration.CopyFrom(duration(600))
        alice.access.CreateRequest(msg)
    code, out = _verify(plane)
    assert code == 0 and "audit chain ok" in out

    db = Path(plane.data.db_path)
    with sqlite3.connect(db) as conn:
        seq, data = conn.execute("SELECT seq, data FROM audit WHERE type = 'request.created' "
                                 "ORDER BY seq DESC LIMIT 1").fetchone()
        conn.execute("UPDATE audit SET data = ? WHERE seq = ?", (data.replace("tamper", "innocent"), seq))
    code, out = _verify(plane)
    assert code == 1 and "BROKEN" in out and str(seq) in out

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit SET data = ? WHERE seq = ?", (data, seq))
    assert _verify(plane)[0] == 0

    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT * FROM audit WHERE seq = ?", (seq - 1,)).fetchone()
        conn.execute("DELETE FROM audit WHERE seq = ?", (seq - 1,))
    code, out = _verify(plane)
    assert code == 1 and "BROKEN" in out
    with sqlite3.connect(db) as conn:
        conn.execute(f"INSERT INTO audit VALUES ({','.join('?' * len(row))})", row)
    assert _verify(plane)[0] == 0
