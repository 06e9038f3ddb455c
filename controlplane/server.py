"""`jitgate server`: the gRPC control plane over mTLS, with health and reflection.

Start-up, in order: take the data directory's lock (one server per data dir),
load or create the CAs and the server certificate, compile the policies
(refuse to start on any error), open the store, end what became overdue while
the server was down (the sweeper's first pass), then listen. SIGHUP and file
changes reload the policies; SIGTERM/SIGINT stop gracefully.
"""
from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import grpc
from grpc_health.v1 import _async as health_aio  # what `health.aio` names
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ca.errors import CAError
from ca.keystore import ensure_private_dir
from controlplane.config import ServerConfig
from controlplane.events import EventHub
from controlplane.identity import DataDir, ServerPki, init_pki, write_server_addr
from controlplane.metrics import start_metrics
from controlplane.policy_watch import PolicyHolder, error_lines
from controlplane.scaleout.health import follow_store
from controlplane.scaleout.plane import PlaneStartError, SharedPlane
from controlplane.scaleout.shared_ca import SharedCAError
from controlplane.scaleout.storeurl import is_postgresql, shown
from controlplane.servicers.access import AccessServicer
from controlplane.servicers.admin import AdminServicer
from controlplane.servicers.audit import AuditServicer
from controlplane.servicers.broker import BrokerServicer
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import Guard, GuardedRegistry
from controlplane.servicers.lifecycle import GrantLifecycleServicer
from controlplane.servicers.locks import LockServicer
from controlplane.servicers.policy import PolicyServicer
from controlplane.signin.directory import PeopleDirectory
from jitgate import wire
from jitgate.errors import JitgateError
from jitgate.services import api_services
from jitgate.v1 import (
    access_pb2_grpc,
    admin_pb2_grpc,
    audit_pb2_grpc,
    broker_pb2_grpc,
    lifecycle_pb2_grpc,
    locks_pb2_grpc,
    policy_pb2_grpc,
    recordings_pb2_grpc,
)

log = logging.getLogger("controlplane.server")

SERVICE_NAMES = tuple(s.full_name for s in api_services())  # the API port's services (jitgate.services)


class StartError(JitgateError):
    """The server cannot start; the message (maybe several lines) says why."""

    code = "server.start_failed"


@dataclass
class DataDirLock:
    """An exclusive flock on `server.lock`; the kernel drops it when the process dies."""

    handle: IO[str]

    @classmethod
    def acquire(cls, data_dir: DataDir) -> DataDirLock:
        handle = open(data_dir.lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StartError(f"another jitgate server is using the data directory `{data_dir.root}`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return cls(handle)

    def release(self) -> None:
        self.handle.close()


def open_core(data_dir: DataDir, holder: Any, pki: ServerPki | None, admins: frozenset[str] = frozenset(),
              brokers: frozenset[str] = frozenset(), with_recommender: bool = True,
              recommend_coverage: float | None = None, store: Any = None) -> Any:
    """An AccessCore on `store` (an open SqlStore or a URL), by default the data directory's
    SQLite store (also used by local admin commands)."""
    from controlplane.core import AccessCore
    from controlplane.store import open_store

    if store is None or isinstance(store, str):
        store = open_store(store or str(data_dir.db_path))
    return AccessCore(
        store, holder, admins=set(admins), brokers=set(brokers),
        ssh_user_ca=pki.ssh_user_ca if pki else None, ssh_upstream_ca=pki.ssh_upstream_ca if pki else None,
        recommender=load_recommender(data_dir, recommend_coverage) if with_recommender else None,
    )


class LazyRecommender:
    """recommend.Recommender on `<data dir>/model`, imported and loaded on first use (or `warm()`).

    Importing LightGBM costs about a second; the server listens first and warms
    the model in the background. Without a trained model the recommender answers
    from per-resource statistics.
    """

    def __init__(self, model_dir: Path, coverage: float | None = None) -> None:
        self._model_dir = model_dir
        self._coverage = coverage  # None: recommend/'s default
        self._lock = threading.Lock()
        self._inner: Any = None
        self._failed = False

    def warm(self) -> Any:
        with self._lock:
            if self._inner is None and not self._failed:
                try:
                    from recommend import Recommender

                    self._inner = (Recommender(self._model_dir) if self._coverage is None
                                   else Recommender(self._model_dir, coverage=self._coverage))
                except Exception:
                    self._failed = True
                    log.exception("duration recommender unavailable")
            return self._inner

    def reload(self) -> None:
        """Load the model files again (SIGHUP); the recommender also notices new files itself."""
        inner = self.warm()
        if inner is not None:
            inner.reload()

    def recommend(self, *args: Any, **kwargs: Any) -> Any:
        inner = self.warm()
        return inner.recommend(*args, **kwargs) if inner is not None else None

    def risk(self, ask: Any, mine: Any, on_resource: Any) -> Any:
        inner = self.warm()
        if inner is None:
            from recommend.risk import unknown
            return unknown("the duration recommender could not start (see the server log)")
        return inner.risk(ask, mine, on_resource)


def load_recommender(data_dir: DataDir, coverage: float | None = None) -> LazyRecommender:
    """The duration recommender for the data directory (lazy; see LazyRecommender), its offers
    calibrated to `coverage` (the config's `recommend_coverage`)."""
    return LazyRecommender(data_dir.root / "model", coverage)


def load_policies(config: ServerConfig) -> PolicyHolder:
    """The policies at start; any problem is a StartError listing `file:line:col: message` lines."""
    if not config.policies.exists():
        raise StartError(f"policies `{config.policies}` do not exist")
    try:
        return PolicyHolder.load(config.policies)
    except Exception as e:
        raise StartError("policies refused:\n" + "\n".join(error_lines(e))) from None


def _add_services(server: grpc.aio.Server, deps: Deps) -> health_aio.HealthServicer:
    # Every jitgate service behind the Guard, wrapped once at registration (not per call).
    guarded = GuardedRegistry(server, Guard(deps.core.ledger.roles_of))
    access_pb2_grpc.add_AccessServiceServicer_to_server(AccessServicer(deps), guarded)
    broker_pb2_grpc.add_BrokerServiceServicer_to_server(BrokerServicer(deps), guarded)
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(PolicyServicer(deps), guarded)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(deps), guarded)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(deps), guarded)
    from controlplane.recordings import open_archive
    from controlplane.servicers.recordings import RecordingServicer

    archive = open_archive(deps.config, deps.core.ledger)
    recordings_pb2_grpc.add_RecordingServiceServicer_to_server(RecordingServicer(deps, archive), guarded)
    deps.recordings = archive
    locks_pb2_grpc.add_LockServiceServicer_to_server(LockServicer(deps), guarded)
    lifecycle_pb2_grpc.add_GrantLifecycleServiceServicer_to_server(GrantLifecycleServicer(deps), guarded)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return health_servicer


class ControlPlaneServer:
    """One running control plane; `start()` then `wait()`; `stop()` from a signal."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = DataDir(config.data_dir)
        self.address = ""
        self._stopping: asyncio.Event | None = None

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop gracefully."""
        config, data_dir = self.config, self.data_dir
        ensure_private_dir(data_dir.root)
        lock = DataDirLock.acquire(data_dir)
        data_dir.addr_path.unlink(missing_ok=True)  # stale after a kill -9
        executor = ThreadPoolExecutor(config.workers, thread_name_prefix="core")
        core = sweeper = holder = plane = metrics_endpoint = notifier = None
        stop_signin: Any = None
        try:
            loop = asyncio.get_running_loop()
            plane = SharedPlane(config.store) if is_postgresql(config.store) else None
            if plane is not None:  # the store first: the CAs come from it (scaleout/shared_ca.py)
                store: Any = await loop.run_in_executor(executor, plane.open_store)
                pki = await loop.run_in_executor(executor, plane.shared_pki, data_dir, config)
            else:
                store = config.store or None
                pki = init_pki(data_dir, list(config.server_names), list(config.server_ips))
            holder = load_policies(config)
            # With sign-in on, signed-in people join the policies' users (controlplane/signin/directory.py).
            policies = PeopleDirectory(holder) if config.oidc is not None else holder
            core = await loop.run_in_executor(
                executor, open_core, data_dir, policies, pki, config.admins, config.brokers, config.recommender,
                config.recommend_coverage, store)
            hub = EventHub(loop, config.watch_queue_size)
            hub.start()
            core.ledger.subscribe(hub.publish)
            core.grants.prepared.add_listener(hub.prepare)  # a mass expiry's events built before its deadline
            holder.on_reload(lambda version, ok, errors: core.audit.record_policy_reload(version, ok, errors))
            if plane is not None:
                plane.follow(core, holder)  # other planes' changes -> this plane's watchers and sweeper
            notifier = self._start_notifier(core)
            sweeper = self._start_sweeper(core, plane.may_sweep if plane is not None else None)
            deps = Deps(config, core, cast(PolicyHolder, policies), hub, pki, executor, inline=config.inline_core)
            try:
                metrics, metrics_endpoint = start_metrics(config.metrics, core)  # none without --metrics
            except ValueError as e:  # e.g. the metrics port is taken
                raise StartError(str(e)) from None
            # Message limits and the keepalive ping policy agree with every client (jitgate.wire).
            server = grpc.aio.server(interceptors=[metrics] if metrics else None,
                                     options=[("grpc.so_reuseport", 0), *wire.server_options()])
            health_servicer = _add_services(server, deps)
            creds = grpc.ssl_server_credentials(
                [(pki.server_key_pem, pki.server_cert_pem)], root_certificates=pki.ca_pem,
                require_client_auth=True)
            try:
                port = server.add_secure_port(config.listen, creds)
            except RuntimeError as e:
                raise StartError(f"cannot listen on {config.listen}: {e}") from None
            if not port:
                raise StartError(f"cannot listen on {config.listen}: address in use or not available")
            await server.start()
            for name in ("", *SERVICE_NAMES):
                await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
            health_task = asyncio.create_task(follow_store(
                core.ledger.store, executor, ("", *SERVICE_NAMES), health_servicer.set))
            if config.oidc is not None:
                stop_signin = await self._start_signin(config, core, policies, pki, executor)
            self.address = f"{config.host}:{port}"
            write_server_addr(data_dir, self.address)
            holder.start_watching(config.policy_poll_seconds)
            if core.history.recommender is not None:
                loop.run_in_executor(executor, core.history.recommender.warm)
            self._stopping = asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
            loop.add_signal_handler(signal.SIGINT, self._stopping.set)
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(executor, self._reload, holder, core))
            # Everything loaded so far (gRPC, protobuf, SQLAlchemy, the policies) lives as long as the
            # process: kept out of the collector's full passes, which otherwise scan it all, with every
            # thread stopped, several times while a mass expiry's 10,000 events are built and sent.
            # The cost: a startup object that later becomes cyclic garbage (say, the first policy set
            # after a reload, if it holds a reference cycle) is never freed: once, not per reload.
            gc.freeze()
            print(
                f"jitgate server listening on {self.address} (data dir {data_dir.root}, "
                f"policy {holder.current.version}{', store ' + shown(config.store) if config.store else ''})",
                flush=True)
            log.info("listening on %s", self.address)
            retention = loop.create_task(deps.recordings.retention_loop(executor)) if deps.recordings else None
            await self._stopping.wait()
            log.info("stopping")
            health_task.cancel()
            if retention is not None:
                retention.cancel()
            await health_servicer.enter_graceful_shutdown()
            if stop_signin is not None:
                await stop_signin()
            await server.stop(grace=2)
            hub.stop()
        finally:
            if metrics_endpoint is not None:
                metrics_endpoint.stop()
            if holder is not None:
                holder.stop()
            if sweeper is not None:
                sweeper.stop()
            if plane is not None:
                plane.stop()
            if notifier is not None:
                notifier.stop()
            executor.shutdown(wait=True, cancel_futures=True)
            if core is not None:
                core.ledger.store.close()
            if self.address:
                data_dir.addr_path.unlink(missing_ok=True)
            lock.release()

    async def _start_signin(self, config: ServerConfig, core: Any, policies: Any, pki: ServerPki,
                            executor: ThreadPoolExecutor) -> Any:
        from controlplane.signin.service import SignInService
        from controlplane.signin.servicer import start_listener

        service = SignInService(config.oidc, core.ledger, pki.x509_ca, policies)
        await asyncio.get_running_loop().run_in_executor(executor, service.load_people)
        return await start_listener(config.login_listen, service, pki.server_key_pem, pki.server_cert_pem, executor,
                                    self.data_dir.root / "login.addr")

    @staticmethod
    def _reload(holder: PolicyHolder, core: Any) -> None:
        """SIGHUP: the policies (audited either way) and the duration model."""
        holder.reload(force=True)
        if core.history.recommender is not None:
            core.history.recommender.reload()

    def _start_notifier(self, core: Any) -> Any:
        """The notification outbox's planner and worker (README, Notifications); None when off."""
        config = self.config
        if config.notify is None:
            return None
        from controlplane.notify import start_notifications

        # Installed before the sweeper's first pass: its timeouts owe messages too.
        return start_notifications(core, config.notify, data_dir=config.data_dir, policies=config.policies,
                                   recommender=config.recommender, recommend_coverage=config.recommend_coverage,
                                   store_url=config.store, people=config.oidc is not None)

    def _start_sweeper(self, core: Any, gate: Any = None) -> Any:
        from controlplane.sweeper import Sweeper

        # start() sweeps once before returning: grants that expired while down end before we listen.
        # `gate`: on a shared store, only the plane holding the sweeper lease sweeps.
        sweeper = Sweeper(core, gate=gate)
        sweeper.start()
        return sweeper


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per plugin and step at every start


def run_server(config: ServerConfig) -> int:
    """Run until stopped; returns the process exit code (StartError: printed, 2)."""
    configure_logging(os.environ.get("JITGATE_LOG_LEVEL", "INFO"))
    # The event loop thread and the core's worker threads hand the GIL back and forth on
    # every call; the default 5 ms switch interval would add up to 5 ms of waiting to each.
    sys.setswitchinterval(float(os.environ.get("JITGATE_SWITCH_INTERVAL", "0.0005")))
    try:
        profile = os.environ.get("JITGATE_PROFILE")  # a path: cProfile the event loop thread into it
        if profile:
            import cProfile

            cProfile.runctx("asyncio.run(ControlPlaneServer(config).run())", globals(), locals(), profile)
        else:
            asyncio.run(ControlPlaneServer(config).run())
    except (StartError, CAError, PlaneStartError, SharedCAError) as e:  # CAError: a key or its passphrase
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["SERVICE_NAMES", "ControlPlaneServer", "StartError", "open_core", "run_server"]
