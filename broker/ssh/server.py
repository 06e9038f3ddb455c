"""The SSH broker: listens for OpenSSH clients, checks certificates, relays, records, cuts.

    broker = SSHBroker(BrokerConfig.build("127.0.0.1:2222", "id/broker", "127.0.0.1:7443", "data"))
    await broker.start()      # host key, trust, event watch, listener
    ...
    await broker.stop()       # cuts live sessions with a line saying why

Per connection (`BrokerConnection`): the user name names the target
(`LOGIN@RESOURCE`); public key authentication only, with a certificate signed
by a user CA the control plane trusts (`GetTrust`, refreshed on events), whose
principal equals the user name, inside its window and not revoked. A refusal
is shown to the user as an authentication banner and reported to the control
plane. Each session channel is then authorized, relayed and recorded by
`broker.ssh.relay.BrokerSession`, each forwarded connection by
`broker.ssh.forward.ForwardSession` (both over `broker.ssh.channel`). What both
brokers share (tasks, the event watch, activity rounds, session-end reports, the
refusal gate) is `broker.runtime`; the trust (`GetTrust`) is this broker's own.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncssh
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.cpclient import ControlPlaneClient, ControlPlaneError, SshCredential, Trust
from broker.lockstate import LockState
from broker.monitor import Clock, MonitorHub
from broker.runtime import BrokerRuntime, LiveSession
from broker.ssh.auth import Refusal, Target, check_certificate, install_certificate_hook, parse_user_name
from broker.ssh.config import BrokerConfig
from broker.ssh.cork import corked
from broker.ssh.forward import open_forward
from broker.ssh.relay import BrokerSession
from broker.ssh.upstream import FAST_CIPHERS
from ca.keystore import load_private_key, passphrase_at_start, save_private_key
from recorder import FileRecordingStore

log = logging.getLogger(__name__)

# Event types after which the broker fetches its trust again (revoked serials, CA rotation).
_TRUST_EVENTS = ("revoked", "ca.", "rotat", "trust", "certificate")
# Ciphers offered to users. OpenSSH clients prefer chacha20-poly1305, which asyncssh runs as two
# passes (about 20% less bulk throughput through the broker, bench/ssh_bench.py): the broker offers
# AES-GCM (and AES-CTR for old clients) only.
USER_CIPHERS = tuple(c for c in FAST_CIPHERS if not c.startswith("chacha20"))
# How long the bookkeeping of ended sessions yields to cuts still under way, at most.
CUT_QUIET_LIMIT = 5.0
# ...and how long no cut must have been under way before it starts. Grants that end "in the same
# second" come to their cut one every few ms, with gaps; a recording's seal runs in a worker thread,
# and while seals ran between two cuts the loop's sends (os.urandom per SSH packet releases the GIL)
# waited for it again and again: measured, 500 sessions, seals took most of the broker's time in the
# cut window (py-spy) and pushed the clients' p99 up. A quarter second bridges those gaps.
CUT_QUIET = 0.25
# How many cut sessions are finished (target closed, recording sealed, end reported) at a time.
BOOKKEEPING_SLOTS = 8
# How long what a cut does after its user was told (`when_told`: the target command's kill) waits
# for the other cuts under way to have told theirs, at most.
TOLD_LIMIT = 1.0
# ...and how many of those steps run in one turn of the loop.
TOLD_BATCH = 32


def load_or_create_host_key(path: Any, passphrase: bytes) -> tuple[asyncssh.SSHKey, str]:
    """The broker's persistent Ed25519 host key (encrypted, 0600) and its public line (also `.pub`)."""
    if not path.exists():
        save_private_key(path, Ed25519PrivateKey.generate(), passphrase)
    key = load_private_key(path, passphrase)
    raw = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    ssh_key = asyncssh.import_private_key(raw)
    line = ssh_key.export_public_key().decode().strip()
    pub = path.with_name(path.name + ".pub")
    if not pub.exists() or pub.read_text().strip() != line:
        pub.write_text(line + "\n")
    return ssh_key, line


class SSHBroker:
    """One SSH broker process: listener, trust, event watch, monitors, live sessions."""

    def __init__(self, config: BrokerConfig, cp: ControlPlaneClient | None = None, clock: Clock | None = None) -> None:
        self.config = config
        self.cp = cp or ControlPlaneClient.from_identity_dir(config.server, config.identity_dir)
        self.hub = MonitorHub(clock)
        self.runtime = BrokerRuntime("ssh", self.cp, self.hub, config.refusals, config.activity_interval,
                                     config.data_dir, LockState(config.lock_stale_after))
        self.refusals = self.runtime.refusals
        self.sessions: set[LiveSession] = self.runtime.sessions
        self.trust = Trust(user_ca_keys=(), revoked_serials=frozenset())
        self._trust_wanted = False  # a trust event arrived since the last refresh started
        self._trust_refreshing = False
        self.connections: set[BrokerConnection] = set()
        self.host_key_line = ""
        self.recordings: FileRecordingStore
        self._server: asyncssh.SSHAcceptor | None = None
        self._trust_lock = asyncio.Lock()
        self._next_trust = 0.0  # loop time of the next periodic trust refresh
        self._cuts = 0  # cuts under way (line sent, waiting for the client to close)
        self._quiet = asyncio.Event()  # set once no cut was under way for CUT_QUIET seconds
        self._quiet.set()
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._bookkeeping = asyncio.Semaphore(BOOKKEEPING_SLOTS)
        self._after_told: list[Callable[[], None]] = []  # see `when_told`
        self._told_timer: asyncio.Handle | None = None

    # -------------------------------------------------------- life cycle

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        passphrase = passphrase_at_start(cfg.key_dir)
        host_key, self.host_key_line = load_or_create_host_key(cfg.host_key_path, passphrase)
        # Flushed every 0.2 s (not 1 s): a live watch through the control plane stays under a second.
        self.recordings = FileRecordingStore(cfg.data_dir, passphrase=passphrase, flush_interval=0.2,
                                             max_recording_bytes=cfg.max_recording_bytes)
        # Sessions a crash left open; ends not yet acknowledged go at the watch's first sync.
        await self.runtime.recover(self.recordings, self.cp.name)
        try:
            self.trust = await self.cp.get_trust()
        except ControlPlaneError as exc:
            if not exc.unavailable:  # e.g. an identity without the broker role: fail at start
                raise RuntimeError(f"the control plane refuses this broker ({self.cp.name}): {exc.message}") from None
            log.warning("control plane unreachable at start; refusing logins until it answers")
        self.runtime.watch(after_sync=self.refresh_trust, on_event=self._on_event)
        self._server = await asyncssh.create_server(
            lambda: BrokerConnection(self), cfg.listen_host, cfg.listen_port,
            server_host_keys=[host_key], encoding=None, line_editor=False,  # bytes through untouched
            agent_forwarding=False, x11_forwarding=False,
            allow_scp=False, public_key_auth=True, password_auth=False, kbdint_auth=False,
            gss_host=None, login_timeout=cfg.login_grace_time, keepalive_interval=30,
            encryption_algs=list(USER_CIPHERS))
        self._next_trust = asyncio.get_running_loop().time() + cfg.trust_refresh_interval
        self.runtime.start(every_round=self._trust_round)
        log.info("ssh broker listening on %s:%d, host key %s", cfg.listen_host, self.port, self.host_key_line)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, cut live sessions (broker_shutdown) and report them, then disconnect."""
        if self._server is not None:
            self._server.close()
        self.hub.shutdown()
        deadline = asyncio.get_running_loop().time() + timeout
        while self.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.disconnect("jitgate: the broker is shutting down")
        await self.runtime.stop(deadline)
        await self.cp.close()

    # -------------------------------------------------------- cuts first, bookkeeping after

    @contextlib.contextmanager
    def cutting(self) -> Iterator[None]:
        """Mark one cut under way (see `after_cuts`)."""
        self._cuts += 1
        self._quiet.clear()
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
            self._quiet_timer = None
        try:
            yield
        finally:
            self._cuts -= 1
            if not self._cuts:
                self._quiet_timer = asyncio.get_running_loop().call_later(CUT_QUIET, self._quiet.set)
                self._run_after_told()

    def when_told(self, action: Callable[[], None]) -> None:
        """Run `action` (a cut's step after its user was told: the target command's kill) once
        no cut is waiting for its user any more, at most TOLD_LIMIT seconds from now; at once if
        none is. When many grants end in the same second, each such step (a send to the target,
        the target's answers to read) would delay the users still waiting for their line."""
        if not self._cuts:
            action()
            return
        self._after_told.append(action)
        if self._told_timer is None:
            self._told_timer = asyncio.get_running_loop().call_later(TOLD_LIMIT, self._run_after_told)

    def _run_after_told(self) -> None:
        """The steps owed, TOLD_BATCH at a time: the rest in later turns of the loop (measured, 500
        kills in one callback held the loop for a few hundred ms, and a deadline due then waited)."""
        if self._told_timer is not None:
            self._told_timer.cancel()
            self._told_timer = None
        actions, self._after_told = self._after_told[:TOLD_BATCH], self._after_told[TOLD_BATCH:]
        if self._after_told:
            self._told_timer = asyncio.get_running_loop().call_soon(self._run_after_told)
        for action in actions:
            try:
                action()
            except Exception:  # one failing step must not keep the others from running
                log.exception("a cut's step after its user was told failed")

    @contextlib.asynccontextmanager
    async def after_cuts(self) -> AsyncIterator[None]:
        """The bookkeeping of a cut session (its target connection closed, its recording sealed,
        its end reported): once no cut has been under way for CUT_QUIET seconds (at most
        CUT_QUIET_LIMIT seconds), and in one of BOOKKEEPING_SLOTS.

        When many grants end in the same second, every user's cut goes out first. The slots keep
        the bookkeeping of hundreds of sessions from running all at once afterwards: each
        finish's synchronous part (closing the target connection, signing the seal, spooling the
        report) is short, but hundreds queued together held the loop for most of a second, and a
        deadline that came then was cut that late (measured, 500 sessions: 5 cuts ~1 s late).
        """
        await self._wait_quiet()
        async with self._bookkeeping:
            await self._wait_quiet()  # another burst of cuts may have started meanwhile
            yield

    async def _wait_quiet(self) -> None:
        if self._quiet.is_set():
            return
        try:
            async with asyncio.timeout(CUT_QUIET_LIMIT):  # no task per wait, unlike wait_for
                await self._quiet.wait()
        except TimeoutError:
            pass

    # -------------------------------------------------------- trust and events

    async def refresh_trust(self) -> bool:
        async with self._trust_lock:
            try:
                self.trust = await self.cp.get_trust()
                return True
            except ControlPlaneError as exc:
                log.warning("cannot refresh trust: %s", exc)
                return False

    async def _on_event(self, event_type: str) -> None:
        if any(word in event_type for word in _TRUST_EVENTS):
            # Coalesced: a lock or a mass revocation brings hundreds of these at once, and one
            # GetTrust each (one after the other, behind `_trust_lock`) kept the broker busy
            # while it should be cutting. Every event still gets a refresh that starts after it.
            self._trust_wanted = True
            if not self._trust_refreshing:
                self._trust_refreshing = True
                self.runtime.spawn(self._refresh_while_wanted())

    async def _refresh_while_wanted(self) -> None:
        try:
            while self._trust_wanted:
                self._trust_wanted = False
                await self.refresh_trust()
        finally:
            self._trust_refreshing = False

    async def _trust_round(self) -> None:
        """In the runtime's periodic round: refresh the trust when its interval has passed."""
        now = asyncio.get_running_loop().time()
        if now >= self._next_trust:
            self._next_trust = now + self.config.trust_refresh_interval
            await self.refresh_trust()

    # -------------------------------------------------------- reports

    async def report_refusal(self, conn: BrokerConnection, code: str, message: str) -> None:
        try:
            await self.cp.report_refusal(
                kind="ssh",
                user=conn.username,
                resource=conn.target.resource if conn.target else "",
                code=code,
                message=message,
                client_address=conn.client_address,
            )
        except ControlPlaneError as exc:
            log.warning("refusal %s of %s not reported: %s", code, conn.username, exc)


class BrokerConnection(asyncssh.SSHServer):
    """One client connection: authentication and the session channels it opens."""

    def __init__(self, broker: SSHBroker) -> None:
        self.broker = broker
        self.conn: asyncssh.SSHServerConnection | None = None
        self.client_address = ""
        self.username = ""
        self.target: Target | None = None
        self.credential: SshCredential | None = None
        self._pending: SshCredential | None = None
        self._checked: dict[tuple[str, bytes], Any] = {}
        self._banners: set[str] = set()
        self._refused = 0  # refused attempts in this connection
        self._refusal: Refusal | None = None  # the one reported if the connection never logs in

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self.client_address = f"{peer[0]}:{peer[1]}"
        install_certificate_hook(conn, self._attempt)
        self.broker.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.broker.connections.discard(self)
        if self.credential is None and self._refusal is not None:  # a refused login: one failure
            r = self._refusal
            self.broker.refusals.refused(self.client_address, r.code, self.username,
                                         self.target.resource if self.target else "", r.message)

    def corked(self) -> contextlib.AbstractContextManager[None]:
        """Collect this connection's small writes and send them in one write on exit (`broker.ssh.cork`)."""
        return corked(self.conn)

    def disconnect(self, reason: str) -> None:
        """End the connection with `reason`, which OpenSSH prints ("Received disconnect ...").

        The DISCONNECT goes out alone, in one write, and the connection is then dropped: asyncssh's
        `disconnect` closes the channels before it sends it, and `ssh -W` exits at its channel's
        close without reading further (so a cut forward would not show its line); after a
        DISCONNECT the peer reads nothing more, so the channels' closes would only cost sends.
        asyncssh 2.x `_send_disconnect`, pinned by tests/security/test_ssh_recording.py; without
        it, asyncssh's own `disconnect`."""
        if self.conn is None or self.conn.is_closed():
            return
        send_disconnect = getattr(self.conn, "_send_disconnect", None)
        try:
            if send_disconnect is None:
                self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason)
                return
            with corked(self.conn):  # one write (asyncssh writes an IGNORE before each packet)
                send_disconnect(asyncssh.DISC_BY_APPLICATION, reason, "en-US")
            self.conn.abort()
        except OSError:
            pass

    # -------------------------------------------------------- authentication

    async def begin_auth(self, username: str) -> bool:
        self.username = username
        try:
            self.target = parse_user_name(username)
        except Refusal as refusal:
            self._refuse(refusal)
            await self._tarpit()
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # plain keys never; certificates only (see _on_key)

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # _on_key already checked the certificate against the same trust; asyncssh checks it again.
        data = key.public_data
        return any(_blob(line) == data for line in self.broker.trust.user_ca_keys)

    async def _attempt(self, username: str, key_data: bytes, signed: bool) -> bool:
        """`_on_key`, with a refusal answered as late as the source's failures call for."""
        if self._on_key(username, key_data, signed):
            return True
        await self._tarpit()
        return False

    async def _tarpit(self) -> None:
        # This connection's refusals count with the source's earlier failed logins.
        await self.broker.refusals.tarpit(self.client_address, extra=self._refused)

    def _on_key(self, username: str, key_data: bytes, signed: bool) -> bool:
        trust = self.broker.trust
        # OpenSSH offers a key (query), then signs with it: check each certificate once.
        cached = self._checked.get((username, key_data))
        try:
            if cached is not None and cached.serial not in trust.revoked_serials:
                info = cached
            else:
                info = check_certificate(key_data, username, trust.user_ca_keys, trust.revoked_serials)
                self._checked = {(username, key_data): info}
        except Refusal as refusal:
            self._refuse(refusal)
            return False
        if signed:
            self._pending = SshCredential(key_id=info.key_id, serial=info.serial, principal=username,
                                          certificate=info.line)
        return True

    def auth_completed(self) -> None:
        self.credential = self._pending

    def _refuse(self, refusal: Refusal) -> None:
        line = f"jitgate: access refused: {refusal.message}"
        # A plain key offered after a refused certificate adds nothing the user needs.
        quiet = refusal.code == "cert.required" and bool(self._banners)
        if not quiet and line not in self._banners and self.conn is not None:
            self._banners.add(line)
            try:
                self.conn.send_auth_banner(line + "\r\n")
            except OSError:
                pass
        self._refused += 1
        # Reported when the connection ends without a login (connection_lost): the first
        # refusal that says more than "a certificate is required".
        if self._refusal is None or self._refusal.code == "cert.required":
            self._refusal = refusal

    # -------------------------------------------------------- channels

    def session_requested(self) -> asyncssh.SSHServerSession | bool:
        if self.credential is None or self.target is None:
            return False
        return BrokerSession(self.broker, self)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        # asyncssh has already checked the certificate's permit-port-forwarding.
        if self.credential is None or self.target is None:
            return False
        return open_forward(self.broker, self, dest_host, dest_port)  # awaited by asyncssh

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False


def _blob(line: str) -> bytes:
    import base64
    import binascii

    parts = line.split()
    try:
        return base64.b64decode(parts[1]) if len(parts) >= 2 else b""
    except binascii.Error:
        return b""
