"""Two control planes on one PostgreSQL, both active (controlplane/scaleout/).

One database of the local PostgreSQL for the module (tests.pgstore, dropped after); plane A connects directly,
plane B through a TCP relay the test can cut (a store outage). The tests run in order and
share the planes: identities and CAs, events across planes, expiry with one sweeper, policy
reloads, a store outage, then kill -9 of the sweeping plane in the middle of a workload.
"""
from __future__ import annotations

import datetime as dt
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jitgate.status import reason_of
from jitgate.v1 import access_pb2, audit_pb2, broker_pb2, types_pb2
from tests.cluster import NO_MODEL, ControlPlane
from tests.controlplane.api.conftest import POLICIES, duration
from tests.pgstore import pg_store
from tests.tcpproxy import TcpProxy

S = types_pb2


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, ControlPlane, TcpProxy]]:
    tmp = tmp_path_factory.mktemp("two")
    policies = tmp / "policies.yaml"
    shutil.copy(POLICIES, policies)
    with pg_store("jg_two") as url, TcpProxy("127.0.0.1", 5432) as proxy:
        a = ControlPlane(tmp / "a", policies, store=url, config=NO_MODEL)
        try:
            b = ControlPlane(tmp / "b", policies, store=url.replace(":5432/", f":{proxy.port}/"), peer=a,
                             config=NO_MODEL)
            try:
                yield a, b, proxy
            finally:
                b.stop()
        finally:
            a.stop()


class Watch:
    """A WatchEvents stream read in a thread (past the snapshot) into a queue."""

    def __init__(self, client: Any, types: tuple[str, ...] = ()) -> None:
        self.stream = client.access.WatchEvents(access_pb2.WatchEventsRequest(types=list(types)))
        self.events: queue.Queue[Any] = queue.Queue()
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(10), "no snapshot.end"

    def _read(self) -> None:
        try:
            for event in self.stream:
                if event.type == "snapshot.end":
                    self.ready.set()
                elif self.ready.is_set():
                    self.events.put(event)
        except Exception as e:
            self.events.put(e)

    def wait_for(self, etype: str, request_id: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            assert not isinstance(event, Exception), event
            if event.type == etype and event.request.id == request_id:
                return event

    def close(self) -> None:
        self.stream.cancel()


def create(client: Any, resource: str = "dev-db", seconds: float = 1800, **kw: Any) -> Any:
    if resource == "dev-db":
        kw.setdefault("role", "readonly")
    msg = access_pb2.CreateRequestRequest(resource=resource, reason=kw.pop("reason", "two planes"), **kw)
    msg.duration.CopyFrom(duration(seconds))
    return client.access.CreateRequest(msg).request


def health(cp: ControlPlane) -> int:
    channel = cp.channel("admin")
    try:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=3).status
    finally:
        channel.close()


def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_both_planes_serve_the_same_identities_and_cas(planes):
    a, b, _ = planes
    trust_a = a.client("broker").broker.GetTrust(broker_pb2.GetTrustRequest())
    trust_b = b.client("broker").broker.GetTrust(broker_pb2.GetTrustRequest())
    assert trust_a.user_ca_keys and list(trust_a.user_ca_keys) == list(trust_b.user_ca_keys)
    assert trust_a.ca_pem == trust_b.ca_pem
    # An identity issued from A's CA is trusted by B; the CA's private key never left encrypted form.
    assert b.client("alice").access.WhoAmI(access_pb2.WhoAmIRequest()).name == "alice"
    key = (b.data.ca_dir / "x509-ca.key").read_bytes()
    assert b"ENCRYPTED" in key and (b.data.ca_dir / "x509-ca.key").stat().st_mode & 0o777 == 0o600
    assert not (b.data.ca_dir / "passphrase").exists()


def test_a_plane_with_other_ca_keys_is_refused(planes, tmp_path: Path):
    a, _, _ = planes
    stranger = ControlPlane(tmp_path / "c", a.policies, store=a.store, config=NO_MODEL, start=False)
    stranger.env["JITGATE_CA_PASSPHRASE"] = a.env["JITGATE_CA_PASSPHRASE"]
    stranger.identity("admin")  # its own CA, made before it joins
    with pytest.raises(Exception, match="differ from the store's"):
        stranger.start(timeout=20)
    assert "Traceback" not in stranger.log() and stranger.proc is not None and stranger.proc.returncode == 2


def test_changes_on_one_plane_reach_watchers_on_the_other(planes):
    a, b, _ = planes
    on_a, on_b = Watch(a.client("ada")), Watch(b.client("ada"))
    try:
        made_on_b = create(b.client("alice"))
        assert made_on_b.state == S.REQUEST_STATE_ACTIVE
        assert on_a.wait_for("grant.activated", made_on_b.id).request.state == S.REQUEST_STATE_ACTIVE
        b.client("ada").access.Revoke(access_pb2.RevokeRequest(id=made_on_b.id, reason="incident"))
        revoked = on_a.wait_for("grant.revoked", made_on_b.id)
        assert revoked.request.state == S.REQUEST_STATE_REVOKED and revoked.seq > 0
        made_on_a = create(a.client("alice"))
        a.client("ada").access.Revoke(access_pb2.RevokeRequest(id=made_on_a.id, reason="incident"))
        assert on_b.wait_for("grant.revoked", made_on_a.id).request.state == S.REQUEST_STATE_REVOKED
        # A broker's trust on B lists the serials revoked on A.
        ssh = create(a.client("alice"), "web-dev-01", login="deploy")
        cert = a.client("alice").access.IssueSshCertificate(access_pb2.IssueSshCertificateRequest(
            grant_id=ssh.id, public_key=_public_key()))
        a.client("ada").access.Revoke(access_pb2.RevokeRequest(id=ssh.id, reason="incident"))
        on_b.wait_for("grant.revoked", ssh.id)
        assert cert.serial in b.client("broker").broker.GetTrust(broker_pb2.GetTrustRequest()).revoked_serials
    finally:
        on_a.close()
        on_b.close()


def _public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_grants_expire_on_time_with_one_sweeper(planes):
    a, b, _ = planes
    assert [p.log().count("sweeper lease taken") for p in (a, b)] == [1, 0]  # A started first
    on_a = Watch(a.client("ada"), types=("grant.",))
    try:
        short = create(b.client("alice"), seconds=2)
        expired = on_a.wait_for("grant.expired", short.id)
        assert expired.request.state == S.REQUEST_STATE_EXPIRED
        assert expired.at.ToDatetime(tzinfo=dt.UTC) >= short.expires_at.ToDatetime(tzinfo=dt.UTC)
    finally:
        on_a.close()


def test_a_burst_of_expiries_reaches_watchers_on_both_planes_whole_and_in_order(planes):
    """Grants ending together (their records built ahead of the deadline on both planes,
    controlplane/prepared.py): each watcher gets every grant.expired once, in the same seq order
    on both planes, each carrying the request as stored."""
    a, b, _ = planes
    on_a, on_b = Watch(a.client("ada"), types=("grant.expired",)), Watch(b.client("ada"), types=("grant.expired",))
    try:
        alice = a.client("alice")
        ids = [create(alice, seconds=5, reason=f"burst {i}").id for i in range(40)]
        got = {}
        for name, watch in (("A", on_a), ("B", on_b)):
            seen = []
            while len(seen) < len(ids):
                event = watch.events.get(timeout=20)
                assert not isinstance(event, Exception), event
                if event.request.id in ids:
                    seen.append(event)
            got[name] = seen
        assert [e.seq for e in got["A"]] == [e.seq for e in got["B"]]
        seqs = [e.seq for e in got["A"]]
        assert seqs == sorted(set(seqs)) and sorted(e.request.id for e in got["A"]) == sorted(ids)
        for event in got["A"] + got["B"]:
            stored = alice.access.GetRequest(access_pb2.GetRequestRequest(id=event.request.id))
            assert event.request == stored and stored.state == S.REQUEST_STATE_EXPIRED
    finally:
        on_a.close()
        on_b.close()


def test_policy_reload_reaches_every_plane(planes):
    a, b, _ = planes
    before = create(b.client("alice")).decision.policy_version
    text = a.policies.read_text()
    a.policies.write_text(text.replace("  ada:   {groups: [admins]}",
                                       "  ada:   {groups: [admins]}\n  newcomer: {groups: [dev]}"))
    a.sighup()
    for plane in (a, b):
        until(lambda p=plane: create(p.client("alice")).decision.policy_version != before, 10,
              "the new policy version is not in B's decisions")
    assert b.client("newcomer").access.WhoAmI(access_pb2.WhoAmIRequest()).name == "newcomer"
    assert create(a.client("alice")).decision.policy_version == create(b.client("alice")).decision.policy_version


def test_store_outage_health_and_catch_up(planes):
    a, b, proxy = planes
    on_b = Watch(b.client("ada"), types=("grant.",))
    try:
        proxy.down()
        until(lambda: health(b) == health_pb2.HealthCheckResponse.NOT_SERVING, 10, "B still SERVING")
        assert health(a) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            create(b.client("alice"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and reason_of(info.value) == "store.unavailable"
        during = create(a.client("alice"))  # made while B cannot see the store
        proxy.up()
        until(lambda: health(b) == health_pb2.HealthCheckResponse.SERVING, 10, "B not SERVING again")
        # B's tail resumes from its cursor (the audit seq): nothing made meanwhile is missed.
        assert on_b.wait_for("grant.activated", during.id).request.id == during.id
    finally:
        proxy.up()
        on_b.close()


class Workload:
    """Clients spread over both planes creating (and approving) requests; what was acknowledged, by plane."""

    def __init__(self, planes: dict[str, ControlPlane]) -> None:
        self.planes = planes
        self.acked: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: dict[str, list[str]] = {name: [] for name in planes}

    def short_grants(self, name: str) -> None:
        client = self.planes[name].client("alice", timeout=10)
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                req = create(client, seconds=2 if n % 2 else 3600, reason=f"{name} {n}")
            except (grpc.RpcError, ValueError) as e:  # ValueError: kill() closed the plane's channels
                self.errors[name].append(e.code().name if isinstance(e, grpc.RpcError) else "UNAVAILABLE")
                return
            with self.lock:
                self.acked[req.id] = req

    def approvals(self, first: str, second: str) -> None:
        alice = self.planes[first].client("alice", timeout=10)
        bob, sam = self.planes[first].client("bob", timeout=10), self.planes[second].client("sam", timeout=10)
        n = 0
        while not self.stop.is_set():
            n += 1
            plane = first  # whose client failed, if one does
            try:
                req = create(alice, "web-prod-01", login="deploy", reason=f"prod {n}")
                with self.lock:
                    self.acked[req.id] = req
                for who, where in ((bob, first), (sam, second)):
                    plane = where
                    got = who.access.Approve(access_pb2.DecideRequest(id=req.id))
                    with self.lock:
                        self.acked[req.id] = got
            except (grpc.RpcError, ValueError) as e:  # ValueError: kill() closed the plane's channels
                self.errors[plane].append(e.code().name if isinstance(e, grpc.RpcError) else "UNAVAILABLE")
                return


def test_kill_9_of_the_sweeping_plane_mid_workload(planes):
    a, b, _ = planes
    work = Workload({"a": a, "b": b})
    threads = [threading.Thread(target=work.short_grants, args=("a",)),
               threading.Thread(target=work.short_grants, args=("b",)),
               threading.Thread(target=work.approvals, args=("a", "b")),
               threading.Thread(target=work.approvals, args=("b", "a"))]
    for t in threads:
        t.start()
    until(lambda: len(work.acked) >= 80, 30, "the workload did not get going")
    a.kill()  # the lease holder, in the middle of calls
    killed_at = time.monotonic()
    until(lambda: len(work.acked) >= 140 or time.monotonic() - killed_at > 3, 30, "B stopped")
    work.stop.set()
    for t in threads:
        t.join(15)
    acked = dict(work.acked)
    assert work.errors["a"], "A's clients must have been cut by the kill"
    assert not work.errors["b"], work.errors["b"]  # B's clients went on through the kill

    # B takes the sweeper lease and ends every short grant, wherever it was made, without A.
    overdue_at = max(r.expires_at.ToDatetime(tzinfo=dt.UTC) for r in acked.values()
                     if r.state == S.REQUEST_STATE_ACTIVE and r.duration.seconds == 2)
    client = b.client("ada")

    def all_short_expired() -> bool:
        if dt.datetime.now(dt.UTC) < overdue_at:
            return False
        return all(client.access.GetRequest(access_pb2.GetRequestRequest(id=rid)).state == S.REQUEST_STATE_EXPIRED
                   for rid, r in acked.items() if r.state == S.REQUEST_STATE_ACTIVE and r.duration.seconds == 2)
    until(all_short_expired, 20, "short grants not expired by B")
    assert "sweeper lease taken" in b.log()

    for rid, ack in acked.items():  # nothing acknowledged by either plane is lost
        now = client.access.GetRequest(access_pb2.GetRequestRequest(id=rid))
        assert now.user == ack.user and now.duration == ack.duration and len(now.approvals) >= len(ack.approvals)
    chain = client.audit.VerifyChain(audit_pb2.VerifyChainRequest())
    assert chain.ok, chain.problems

    # A restarted catches up: it serves what B did meanwhile, and its watchers hear B's changes.
    made_while_down = create(b.client("alice"))
    a.start()
    assert a.client("ada").access.GetRequest(
        access_pb2.GetRequestRequest(id=made_while_down.id)).state == S.REQUEST_STATE_ACTIVE
    on_a = Watch(a.client("ada"), types=("grant.",))
    try:
        b.client("ada").access.Revoke(access_pb2.RevokeRequest(id=made_while_down.id, reason="done"))
        assert on_a.wait_for("grant.revoked", made_while_down.id).request.state == S.REQUEST_STATE_REVOKED
    finally:
        on_a.close()
