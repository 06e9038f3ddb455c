"""The PostgreSQL wire broker (asyncio; uvloop when available): listener, recording process, parts.

One connection, start to end: `broker.pg.login` takes it through TLS, the
token check (AuthorizeSession) and the upstream login as the approved role
(a CancelRequest is forwarded there instead); `broker.pg.session` greets the
client, relays both ways, records the statements in batches, warns
`grace_period` before the deadline and cuts at expiry or revocation;
`broker.runtime` holds what both brokers share (tasks, the event watch,
activity rounds, session-end reports, the refusal gate). This module ties
them to a listener and to the recording process, whose backlog pauses every
client's reads while it is behind.
"""
from __future__ import annotations

import asyncio
import logging

from broker.cpclient import Authorization
from broker.lockstate import LockState
from broker.monitor import MonitorHub
from broker.pg.config import PgBrokerConfig
from broker.pg.login import PgLogin
from broker.pg.pipe import Pipe
from broker.pg.recording import RecorderProcess
from broker.pg.session import Session
from broker.pg.upstream import UpstreamSession
from broker.runtime import BrokerRuntime, ControlPlane
from recorder import FileRecordingStore

log = logging.getLogger(__name__)


class PgBroker:
    """Accepts PostgreSQL clients, authorizes them with tokens, relays and records."""

    def __init__(self, config: PgBrokerConfig, control_plane: ControlPlane, recorder: RecorderProcess,
                 hub: MonitorHub | None = None) -> None:
        self.config = config
        self.cp = control_plane
        self.recorder = recorder
        self.hub = hub or MonitorHub()
        self.name: str = getattr(control_plane, "name", config.name)
        self.runtime = BrokerRuntime("postgres", control_plane, self.hub, config.refusals, config.activity_interval,
                                     recorder.data_dir, LockState(config.lock_stale_after))
        self.login = PgLogin(config, control_plane, self.runtime, recorder, self.name, self._new_session)
        self._server: asyncio.AbstractServer | None = None
        recorder.on_behind = self._recording_behind
        self.address: tuple[str, int] | None = None

    @property
    def sessions(self) -> int:
        """Live relayed sessions."""
        return len(self.runtime.sessions)

    async def start(self, watch: bool = True) -> tuple[str, int]:
        """Subscribe to grant changes (extensions, revocations), listen; returns the bound (host, port)."""
        loop = asyncio.get_running_loop()
        # Before the recorder opens anything: recordings a crash left unsealed are reported ended.
        await self.runtime.recover(FileRecordingStore(self.recorder.data_dir), self.name)
        if not self.recorder.alive:
            await self.recorder.start()
        if watch:
            self.runtime.watch()
        self._server = await loop.create_server(self._accept, self.config.host, self.config.port,
                                                reuse_address=True)
        sock = self._server.sockets[0]
        self.address = sock.getsockname()[:2]
        self.runtime.start()
        log.info("pg broker listening on %s:%s", *self.address)
        return self.address

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, cut live sessions (broker_shutdown) and wait for them."""
        deadline = asyncio.get_running_loop().time() + timeout
        if self._server is not None:
            self._server.close()
        for s in list(self._live()):
            if s.monitor is not None:
                s.monitor.shutdown()
            else:
                s.close_now()
        await self.runtime.stop(deadline)
        await self.recorder.stop()
        if self._server is not None:
            await self._server.wait_closed()

    def _live(self) -> list[Session]:
        return [s for s in self.runtime.sessions if isinstance(s, Session)]

    def _accept(self) -> Pipe:
        pipe = Pipe()
        self.runtime.spawn(self._handle(pipe))
        return pipe

    def _new_session(self, client: Pipe, upstream: UpstreamSession, auth: Authorization,
                     cancel_key: tuple[int, int], peer: str) -> Session:
        return Session(self, client, upstream, auth, cancel_key, peer)

    async def _handle(self, pipe: Pipe) -> None:
        session = await self.login.admit(pipe)
        if session is None:
            return
        self.runtime.sessions.add(session)
        if self.recorder.behind:
            session.client.hold("recording")
        try:
            await session.run()
        except Exception:
            log.exception("pg broker: session %s failed", session.auth.session_id)
            session.close_now()
        finally:
            self.runtime.sessions.discard(session)
            self.login.cancel_keys.forget(session.cancel_key)

    def _recording_behind(self, behind: bool) -> None:
        """While the recording process is behind, no client is read from: what is relayed
        never runs further ahead of what is recorded than the recorder's backlog."""
        for s in self._live():
            if behind:
                s.client.hold("recording")
            else:
                s.client.release("recording")
        if behind:
            log.warning("recording is behind (over %d bytes wait); clients are paused until it catches up",
                        self.recorder.backlog)
        else:
            log.info("recording caught up; clients are read again")
