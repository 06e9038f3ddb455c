"""What a server on a shared PostgreSQL store runs besides a lone server's parts (see the package doc)."""
from __future__ import annotations

import logging
from typing import Any

from controlplane.errors import JitError
from controlplane.identity import DataDir, ServerPki, init_pki
from controlplane.scaleout.lease import SweepLease
from controlplane.scaleout.shared_ca import with_shared_cas
from controlplane.scaleout.storeurl import shown
from controlplane.scaleout.tailer import AuditTailer
from controlplane.store import SqlStore
from jitgate.errors import JitgateError

log = logging.getLogger("jitgate.plane")


class PlaneStartError(JitgateError):
    code = "server.start_failed"


class SharedPlane:
    """One plane among several on the store at `url`: opening, CAs, the event tail, the sweeper lease."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store: SqlStore | None = None
        self.lease: SweepLease | None = None  # made by open_store()
        self.tailer: AuditTailer | None = None

    def open_store(self) -> SqlStore:
        """Open and migrate the store (two planes starting at once migrate one after the other)."""
        try:
            self.store = SqlStore.open_url(self.url)
        except JitError as e:  # e.g. store.schema_newer
            raise PlaneStartError(str(e)) from None
        except Exception as e:  # the driver's message names the host, never the password
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PlaneStartError(f"cannot open the store `{shown(self.url)}`: {first}") from None
        self.lease = SweepLease(self.store.engine)
        return self.store

    def may_sweep(self) -> bool:
        """The sweeper's gate: whether this plane holds the sweeper lease now."""
        return self.lease is not None and self.lease.held()

    def shared_pki(self, data_dir: DataDir, config: Any) -> ServerPki:
        assert self.store is not None
        return with_shared_cas(self.store, data_dir,
                               lambda: init_pki(data_dir, list(config.server_names), list(config.server_ips)))

    def follow(self, core: Any, holder: Any) -> None:
        """Publish other planes' changes here; reload the policies when another plane loaded a new version."""
        assert self.store is not None

        def policy_version(version: str) -> None:
            if version != holder.current.version:
                holder.reload()

        self.tailer = AuditTailer(self.store, core.ledger, on_policy_version=policy_version,
                                  prepared=core.grants.prepared)
        self.tailer.start()

    def stop(self) -> None:
        if self.tailer is not None:
            self.tailer.stop()
        if self.lease is not None:
            self.lease.release()


__all__ = ["PlaneStartError", "SharedPlane"]
