"""The control-plane client every broker uses: mTLS gRPC, broker calls, the event watch.

A broker reaches the control plane only over gRPC (never its store). This
module is shared by the SSH broker and the PostgreSQL broker:

    client = ControlPlaneClient.from_identity_dir("cp-a:7443,cp-b:7443", Path("id/broker-1"))
    auth = await client.authorize_session(kind="ssh", resource="web-01", login="root",
                                          ssh=SshCredential(key_id, serial, principal, cert_line),
                                          client_address="127.0.0.1:50000", channel="shell")
    watcher = client.watch(on_change=..., on_sync=..., live_grants=hub.grant_ids)
    # reconnects and re-syncs by itself (on the next plane when its plane went away);
    # while the stream is down, polls the live grants
    ...
    await watcher.stop(); await client.close()

Every call raises `ControlPlaneError` (with the gRPC status name as `code`, the
control plane's stable error code as `reason` (`jitgate.errors`, e.g.
`session.channel_not_allowed`), a readable `message` and `unavailable` when the
control plane could not be reached), never a raw grpc exception. A broker
decides on `reason` or `code`, never on the message text.

Several addresses fail over as `jitgate.endpoints` says (`broker/failover.py`
does the I/O): a call that changes state and may have reached a plane that then
went away is not repeated; it raises `unavailable` with the reason
`client.outcome_unknown`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from broker.failover import (
    ACCESS,
    BROKER,
    LOCKS,
    RECORDINGS,
    CallObserver,
    FailoverStub,
    PlaneChannels,
    PlanesUnreachable,
    Service,
)
from ca import peer_name_from_cert, read_identity_bundle
from jitgate import wire
from jitgate.endpoints import UNREACHABLE, ServerList
from jitgate.status import reason_of
from jitgate.v1 import access_pb2, broker_pb2, locks_pb2, types_pb2

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
# Reconnect back-off of the watch: short first, so a revocation during a
# control-plane restart still reaches live sessions quickly.
WATCH_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
# While the event stream is down (or has not re-synced), the grants of live sessions are
# asked for this often, so a revocation reaches them within about this long plus one call.
RESYNC_INTERVAL = 1.0
# One grant's poll may take this long; a slower answer waits for the next round.
RESYNC_TIMEOUT = 2.0
# Grants polled at once (a broker with many live grants does not open thousands of calls).
RESYNC_CONCURRENCY = 16

_STATE_NAMES = {v: k.removeprefix("REQUEST_STATE_") for k, v in types_pb2.RequestState.items()}


class ControlPlaneError(Exception):
    """A control-plane call failed. `code` is the gRPC status name ("PERMISSION_DENIED", ...),
    `reason` the control plane's error code ("session.channel_not_allowed", ...; "" if none came)."""

    def __init__(self, code: str, message: str, unavailable: bool = False, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.unavailable = unavailable
        self.reason = reason

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------- plain data


@dataclass(frozen=True)
class SshCredential:
    """What the SSH broker read from the presented user certificate."""

    key_id: str
    serial: int
    principal: str
    certificate: str


@dataclass(frozen=True)
class SessionOptions:
    """What the decision allows inside a session."""

    pty: bool = False
    exec: bool = False
    sftp: bool = False
    port_forwarding: bool = False


@dataclass(frozen=True)
class Target:
    """Where the broker connects upstream and how it checks the target's identity."""

    name: str
    kind: str
    address: str  # host:port
    host_key: str = ""  # pinned OpenSSH host key line
    host_ca: str = ""  # OpenSSH host CA key line
    database: str = ""
    credentials: str = ""  # "env:NAME" / "file:PATH", resolved by the broker

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        host_port = self.address.rsplit(":", 1)
        return int(host_port[1]) if len(host_port) == 2 and host_port[1].isdigit() else 22


@dataclass(frozen=True)
class Authorization:
    """An authorized session: its id, the grant's deadline and what the session may do."""

    session_id: str
    grant_id: str
    user: str
    resource: str
    login: str
    role: str
    expires_at: dt.datetime
    grace_period: dt.timedelta
    options: SessionOptions
    target: Target
    grant: types_pb2.AccessRequest = field(repr=False, compare=False)


@dataclass(frozen=True)
class Trust:
    """What a broker trusts locally: SSH user CA key lines and revoked certificate serials."""

    user_ca_keys: tuple[str, ...]
    revoked_serials: frozenset[int]
    ca_pem: str = ""


@dataclass(frozen=True)
class LockChange:
    """A lock placed (`lock.created`): what it covers, for the brokers' immediate cut."""

    target: str  # "user", "resource", "login" or "all"
    value: str
    reason: str
    created_by: str

    def matches(self, user: str, resource: str, login: str) -> bool:
        if self.target == "all":
            return True
        return {"user": user, "resource": resource, "login": login}.get(self.target) == self.value


@dataclass(frozen=True)
class GrantChange:
    """The state of one grant as the event stream last reported it."""

    grant_id: str
    state: str  # "ACTIVE", "REVOKED", "EXPIRED", "PENDING", ...
    expires_at: dt.datetime | None
    message: str  # why it ended (revocation reason), may be empty
    event_type: str  # audit event type, or "snapshot"
    seq: int

    @property
    def active(self) -> bool:
        return self.state == "ACTIVE"


# ---------------------------------------------------------------- conversions


def to_datetime(ts: timestamp_pb2.Timestamp) -> dt.datetime:
    """A protobuf Timestamp -> aware UTC datetime."""
    return ts.ToDatetime(tzinfo=dt.UTC)


def to_timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


def to_timedelta(d: duration_pb2.Duration) -> dt.timedelta:
    return d.ToTimedelta()


def grant_change(request: types_pb2.AccessRequest, event_type: str = "", seq: int = 0) -> GrantChange:
    """The GrantChange a broker needs from an AccessRequest message."""
    expires = to_datetime(request.expires_at) if request.HasField("expires_at") else None
    return GrantChange(
        grant_id=request.id,
        state=_STATE_NAMES.get(request.state, "UNSPECIFIED"),
        expires_at=expires,
        message=request.message or request.end_reason,
        event_type=event_type,
        seq=seq,
    )


def _error(exc: grpc.RpcError, what: str) -> ControlPlaneError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    detail = exc.details() if hasattr(exc, "details") else ""
    unavailable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    if unavailable:
        message = f"control plane unreachable ({what})"
    else:
        message = detail or f"{what} failed: {code.name.lower()}"
    return ControlPlaneError(code.name, message, unavailable, reason_of(exc))


# ---------------------------------------------------------------- client


class ControlPlaneClient:
    """An asyncio gRPC client of the control plane with a broker's mTLS identity.

    `server` is one address or several (`a:7443,b:7443`, `jitgate.endpoints`): calls go to
    the plane that last answered and fail over as that module's policy says
    (`broker/failover.py` does the I/O)."""

    def __init__(self, server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
                 name: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 observer: CallObserver | None = None) -> None:
        self.servers = ServerList.parse(server)
        self.server = self.servers.text
        self.name = name or peer_name_from_cert(cert_pem)
        self.timeout = timeout
        creds = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem,
                                             certificate_chain=cert_pem)
        # Message limits and keepalive as the server expects them (jitgate.wire); a short reconnect
        # back-off, so a restarted plane is used again within about 1 s (a connect attempt to a
        # dead address on the broker's own list is cheap).
        self.planes = PlaneChannels(self.servers, creds, [
            *wire.client_options(),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1_000),
        ], observer=observer)
        # Seconds from an event's commit to its arrival here (the broker's metrics), or None.
        self.lag_observer: Callable[[float], None] | None = None

    @classmethod
    def from_identity_dir(cls, server: str, identity_dir: Path, timeout: float = DEFAULT_TIMEOUT,
                          observer: CallObserver | None = None) -> ControlPlaneClient:
        """A client from an identity bundle directory (ca.pem, cert.pem, key.pem)."""
        ca_pem, cert_pem, key_pem = read_identity_bundle(Path(identity_dir))
        return cls(server, ca_pem, cert_pem, key_pem, timeout=timeout, observer=observer)

    @property
    def current(self) -> str:
        """The control plane calls go to now."""
        return self.servers.current

    @property
    def recordings(self) -> Any:
        """Recording uploads (broker.uploader) through the plane calls go to now, with failover."""
        return FailoverStub(self.planes, RECORDINGS, self.timeout)

    async def _call(self, what: str, service: Service, name: str, request: Any,
                    timeout: float | None = None) -> Any:
        try:
            return await self.planes.unary(service, name, request, timeout or self.timeout)
        except PlanesUnreachable as exc:
            raise ControlPlaneError("UNAVAILABLE", f"control plane unreachable ({what}): {exc.message}", True,
                                    exc.reason) from None
        except grpc.RpcError as exc:
            raise _error(exc, what) from None

    async def open_stream(self, name: str, request: Any) -> tuple[str, Any]:
        """A server stream of AccessService on the current plane: (address, call)."""
        try:
            return await self.planes.stream(ACCESS, name, request)
        except PlanesUnreachable as exc:
            raise ControlPlaneError("UNAVAILABLE", exc.message, True) from None

    async def close(self) -> None:
        await self.planes.close()

    # -------------------------------------------------------- broker calls

    async def authorize_session(self, *, kind: str, resource: str, client_address: str, channel: str,
                                login: str = "", role: str = "", ssh: SshCredential | None = None,
                                db_token: str = "", refusal_counted: bool = False) -> Authorization:
        """Ask the control plane to open a session under an ACTIVE grant (refusals raise).

        `refusal_counted`: the broker counts a refusal in its per-source aggregate
        (broker/refusals.py), so the control plane does not audit it one by one.
        """
        req = broker_pb2.AuthorizeSessionRequest(
            broker=self.name, kind=kind, resource=resource, login=login, role=role,
            client_address=client_address, channel=channel, refusal_counted=refusal_counted)
        if ssh is not None:
            req.ssh.CopyFrom(broker_pb2.SshCredential(key_id=ssh.key_id, serial=ssh.serial,
                                                      principal=ssh.principal, certificate=ssh.certificate))
        elif db_token:
            req.database.CopyFrom(broker_pb2.DatabaseCredential(token=db_token))
        resp = await self._call("authorize session", BROKER, "AuthorizeSession", req)
        t, s, g = resp.target, resp.session, resp.grant
        # The control plane sends the policies' grace period (their one source). Without it the
        # broker invents none: no warning, and the deadline holds all the same.
        grace = to_timedelta(resp.grace_period) if resp.HasField("grace_period") else dt.timedelta(0)
        return Authorization(
            session_id=resp.session_id, grant_id=g.id, user=g.user, resource=g.resource or resource,
            login=g.login or login, role=g.role or role,
            expires_at=to_datetime(resp.expires_at if resp.HasField("expires_at") else g.expires_at),
            grace_period=grace,
            options=SessionOptions(pty=s.pty, exec=s.exec, sftp=s.sftp, port_forwarding=s.port_forwarding),
            target=Target(name=t.name, kind=t.kind, address=t.address, host_key=t.host_key,
                          host_ca=t.host_ca, database=t.database, credentials=t.credentials),
            grant=g,
        )

    async def issue_upstream_certificate(self, session_id: str, public_key: str) -> tuple[str, dt.datetime]:
        """The broker's own certificate towards the target: (certificate line, valid_before)."""
        resp = await self._call("issue upstream certificate", BROKER, "IssueUpstreamCertificate",
                                broker_pb2.IssueUpstreamCertificateRequest(session_id=session_id,
                                                                           public_key=public_key))
        return resp.certificate, to_datetime(resp.valid_before)

    async def report_session_end(self, session_id: str, reason: str, *, bytes_in: int = 0, bytes_out: int = 0,
                                 recording_ref: str = "", recording_hash: str = "",
                                 ended_at: dt.datetime | None = None,
                                 last_activity_at: dt.datetime | None = None) -> None:
        """Tell the control plane a session ended (reason: client_exit, expired, revoked, broker_shutdown, error)."""
        req = broker_pb2.ReportSessionEndRequest(
            session_id=session_id, reason=reason, bytes_in=bytes_in, bytes_out=bytes_out,
            recording_ref=recording_ref, recording_hash=recording_hash)
        req.ended_at.CopyFrom(to_timestamp(ended_at or dt.datetime.now(dt.UTC)))
        if last_activity_at is not None:
            req.last_activity_at.CopyFrom(to_timestamp(last_activity_at))
        await self._call("report session end", BROKER, "ReportSessionEnd", req)

    async def report_activity(self, session_id: str, last_activity_at: dt.datetime,
                              bytes_in: int = 0, bytes_out: int = 0) -> None:
        req = broker_pb2.ReportActivityRequest(session_id=session_id, bytes_in=bytes_in, bytes_out=bytes_out)
        req.last_activity_at.CopyFrom(to_timestamp(last_activity_at))
        await self._call("report activity", BROKER, "ReportActivity", req)

    async def report_refusal(self, *, kind: str, user: str, resource: str, code: str, message: str,
                             client_address: str, count: int = 1, first_at: dt.datetime | None = None,
                             last_at: dt.datetime | None = None, codes: dict[str, int] | None = None,
                             samples: Iterable[str] = ()) -> None:
        """Audit a refusal the broker made itself (bad certificate, malformed user name, ...), or
        (`count` > 1) one source's refusals over a window with their tallies (broker/refusals.py)."""
        req = broker_pb2.ReportRefusalRequest(
            broker=self.name, kind=kind, user=user, resource=resource, code=code, message=message,
            client_address=client_address, count=count, codes=codes or {}, samples=list(samples))
        for name, value in (("first_at", first_at), ("last_at", last_at)):
            if value is not None:
                getattr(req, name).CopyFrom(to_timestamp(value))
        await self._call("report refusal", BROKER, "ReportRefusal", req)

    async def get_grant(self, grant_id: str, timeout: float | None = None) -> GrantChange:
        """The grant's current state, asked directly (the re-sync while the event stream is down)."""
        resp = await self._call("get grant", ACCESS, "GetRequest", access_pb2.GetRequestRequest(id=grant_id),
                                timeout)
        return grant_change(resp, "resync", 0)

    async def list_locks(self) -> list[locks_pb2.Lock]:
        """The locks in force (the broker's lock-state poll while the event stream is down)."""
        resp = await self._call("list locks", LOCKS, "ListLocks", locks_pb2.ListLocksRequest())
        return list(resp.locks)

    async def get_trust(self) -> Trust:
        resp = await self._call("get trust", BROKER, "GetTrust", broker_pb2.GetTrustRequest())
        return Trust(user_ca_keys=tuple(resp.user_ca_keys), revoked_serials=frozenset(resp.revoked_serials),
                     ca_pem=resp.ca_pem)

    # -------------------------------------------------------- events

    def watch(self, on_change: Callable[[GrantChange], Awaitable[None] | None],
              on_sync: Callable[[dict[str, GrantChange]], Awaitable[None] | None] | None = None,
              on_connection: Callable[[bool], Awaitable[None] | None] | None = None,
              on_event: Callable[[str], Awaitable[None] | None] | None = None,
              types: Iterable[str] = (),
              live_grants: Callable[[], Iterable[str]] | None = None,
              on_lock: Callable[[LockChange], Awaitable[None] | None] | None = None) -> EventWatcher:
        """Start a reconnecting WatchEvents subscription (see EventWatcher)."""
        watcher = EventWatcher(self, on_change, on_sync, on_connection, tuple(types), on_event, live_grants,
                               on_lock)
        watcher.start()
        return watcher


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if inspect.isawaitable(value):
        await value


class EventWatcher:
    """A WatchEvents subscription that survives control-plane restarts and broken streams.

    After each (re)connect the stream starts with a snapshot of live grants;
    `on_sync(snapshot)` receives it whole (grant id -> GrantChange), so the
    caller can end sessions whose grant is no longer live (missed events while
    disconnected). Then every event with a request calls `on_change`.
    `on_connection(True/False)` reports whether the stream is up; `on_event(type)`
    sees the type of every change event (e.g. to refresh trust after a CA rotation).

    The broker is never blind: an event it cannot apply is logged and skipped
    (its grant is then asked for directly), and from the moment the stream
    fails until a new one has re-synced, the grants of live sessions
    (`live_grants()`) are asked for at once and then every RESYNC_INTERVAL,
    each answer going to `on_change` like an event. A grant the control plane
    no longer knows is reported REVOKED (fail closed).
    """

    def __init__(self, client: ControlPlaneClient,
                 on_change: Callable[[GrantChange], Awaitable[None] | None],
                 on_sync: Callable[[dict[str, GrantChange]], Awaitable[None] | None] | None,
                 on_connection: Callable[[bool], Awaitable[None] | None] | None,
                 types: tuple[str, ...],
                 on_event: Callable[[str], Awaitable[None] | None] | None = None,
                 live_grants: Callable[[], Iterable[str]] | None = None,
                 on_lock: Callable[[LockChange], Awaitable[None] | None] | None = None) -> None:
        self._client = client
        self._on_lock = on_lock
        self._on_event = on_event
        self._on_change = on_change
        self._on_sync = on_sync
        self._on_connection = on_connection
        self._types = types
        self._live_grants = live_grants
        self._task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._resync_wake = asyncio.Event()
        self._suspects: set[str] = set()  # grants whose event could not be applied: ask for them
        self.connected = False
        self.address = ""  # the plane the current (or last) stream is on
        self.syncs = 0  # how many snapshots were applied (tests await re-syncs)
        self.resyncs = 0  # how many rounds of direct asking ran while the stream was down
        self.skipped_events = 0  # events that could not be applied
        self._batched = True  # WatchEventBatches until a plane answers UNIMPLEMENTED

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="jitgate-watch")
            self._resync_task = loop.create_task(self._resync_loop(), name="jitgate-resync")

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the current stream's snapshot was applied; False on timeout."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        for task in (self._task, self._resync_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._task = self._resync_task = None

    async def _set_connected(self, up: bool) -> None:
        if not up:
            self._resync_wake.set()  # blind from now on: ask for the live grants at once
        if up != self.connected:
            self.connected = up
            if not up:
                self._synced.clear()
            if self._on_connection is not None:
                await _maybe_await(self._on_connection(up))

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._stream_once()
                attempt = 0  # the server ended the stream cleanly; reconnect at once
            except asyncio.CancelledError:
                raise
            except ControlPlaneError as exc:  # no plane reachable now
                log.info("event watch: %s", exc)
            except grpc.RpcError as exc:
                code = exc.code() if callable(getattr(exc, "code", None)) else exc
                log.info("event watch on %s interrupted: %s", self.address, code)
                if getattr(code, "name", "") in UNREACHABLE and self.address:
                    self._client.planes.unreachable(self.address)
            except Exception:  # a callback failed: keep watching, revocations matter more
                log.exception("event watch callback failed")
            await self._set_connected(False)
            await asyncio.sleep(WATCH_BACKOFF[min(attempt, len(WATCH_BACKOFF) - 1)])
            attempt += 1

    async def _stream_once(self) -> None:
        # On the plane calls go to now; when it breaks because the plane went away, the next stream
        # opens on the next plane (jitgate.endpoints) and its snapshot re-syncs the hub.
        # WatchEventBatches: the same events, several per message when they come in a burst (a lock,
        # a mass expiry); a plane without it (older) is watched through WatchEvents from then on.
        batched = self._batched
        address, call = await self._client.open_stream(
            "WatchEventBatches" if batched else "WatchEvents", access_pb2.WatchEventsRequest(types=list(self._types)))
        self.address = address
        snapshot: dict[str, GrantChange] | None = {}
        complete = True  # every snapshot entry could be read
        lag = self._client.lag_observer
        try:
            async for message in call:
                for event in message.events if batched else (message,):
                    if lag is not None and event.seq and event.HasField("at"):
                        lag((dt.datetime.now(dt.UTC) - to_datetime(event.at)).total_seconds())
                    if event.type == "snapshot":
                        if snapshot is not None and event.HasField("request"):
                            try:
                                change = grant_change(event.request, "snapshot", 0)
                            except Exception:
                                log.exception("unreadable snapshot entry for grant %r", event.request.id)
                                self._skipped(event.request.id)
                                complete = False
                                continue
                            snapshot[change.grant_id] = change
                        continue
                    if event.type == "snapshot.end":
                        await self._apply_snapshot(snapshot or {}, complete)
                        snapshot = None
                        continue
                    await self._apply_event(event)
        except grpc.RpcError as exc:
            if batched and callable(getattr(exc, "code", None)) and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.info("control plane %s has no WatchEventBatches; watching through WatchEvents", address)
                self._batched = False
            raise
        finally:
            call.cancel()

    async def _apply_snapshot(self, snapshot: dict[str, GrantChange], complete: bool) -> None:
        """Hand a whole snapshot over; an incomplete one is not (it would end the unread grants'
        sessions): the stream's events still apply and live grants keep being asked for."""
        if not complete:
            log.warning("snapshot incomplete: asking for live grants directly while this stream lasts")
            return
        if self._on_sync is not None:
            await _maybe_await(self._on_sync(dict(snapshot)))
        await self._set_connected(True)
        self.syncs += 1
        self._synced.set()

    async def _apply_event(self, event: Any) -> None:
        """One change event; one that cannot be applied is skipped (and its grant asked for), never fatal."""
        grant_id = event.request.id if event.HasField("request") else ""
        try:
            if self._on_event is not None:
                await _maybe_await(self._on_event(event.type))
            if self._on_lock is not None and event.HasField("lock") and event.type == "lock.created":
                lk = event.lock
                await _maybe_await(self._on_lock(LockChange(lk.target, lk.value, lk.reason, lk.created_by)))
            if grant_id:
                await _maybe_await(self._on_change(grant_change(event.request, event.type, event.seq)))
        except Exception:
            log.exception("event %s (seq %s) could not be applied; skipped", event.type, event.seq)
            self._skipped(grant_id)

    def _skipped(self, grant_id: str) -> None:
        self.skipped_events += 1
        if grant_id:
            self._suspects.add(grant_id)
            self._resync_wake.set()

    # -------------------------------------------------------- re-sync while blind

    async def _resync_loop(self) -> None:
        """Ask for grants directly: suspects whenever there are any; every live grant while blind."""
        while True:
            await self._resync_wake.wait()
            self._resync_wake.clear()
            grant_ids = set(self._suspects)
            self._suspects.clear()
            blind = not self.connected
            if blind and self._live_grants is not None:
                grant_ids.update(self._live_grants())
            if grant_ids:
                await self._resync(grant_ids)
            if blind:
                self.resyncs += 1
                self._resync_wake.set()  # keep asking until a stream has re-synced
                await asyncio.sleep(RESYNC_INTERVAL)

    async def _resync(self, grant_ids: set[str]) -> None:
        limit = asyncio.Semaphore(RESYNC_CONCURRENCY)

        async def one(grant_id: str) -> None:
            async with limit:
                change = await self._ask(grant_id)
            if change is not None:
                try:
                    await _maybe_await(self._on_change(change))
                except Exception:
                    log.exception("re-sync of grant %s could not be applied", grant_id)

        await asyncio.gather(*(one(g) for g in sorted(grant_ids)))

    async def _ask(self, grant_id: str) -> GrantChange | None:
        """The grant's state from the control plane; None when it cannot answer now."""
        try:
            return await self._client.get_grant(grant_id, timeout=RESYNC_TIMEOUT)
        except ControlPlaneError as exc:
            if exc.code == "NOT_FOUND":
                return GrantChange(grant_id=grant_id, state="REVOKED", expires_at=None,
                                   message="the control plane no longer knows this grant",
                                   event_type="resync", seq=0)
            log.debug("re-sync of grant %s failed: %s", grant_id, exc)
            return None
        except Exception:
            log.exception("re-sync of grant %s failed", grant_id)
            return None
