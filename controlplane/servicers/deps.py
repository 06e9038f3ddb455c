"""What every servicer needs: the core, the policies in force, the event hub, the PKI, config."""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from controlplane.config import ServerConfig
from controlplane.events import EventHub
from controlplane.identity import ServerPki
from controlplane.policy_watch import PolicyHolder

if TYPE_CHECKING:  # the servicers reach the core only through Deps
    from controlplane.core import AccessCore

T = TypeVar("T")


@dataclass
class Deps:
    """Shared by the servicers of one server; `run` moves blocking core calls off the event loop."""

    config: ServerConfig
    core: AccessCore
    policies: PolicyHolder
    hub: EventHub
    pki: ServerPki
    executor: ThreadPoolExecutor
    inline: bool = True  # quick core calls on the event loop thread (config `inline_core`)
    recordings: Any = None  # controlplane.recordings.RecordingArchive, set when the services are added

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A quick core call (one request's worth of work): on the loop thread when `inline`.

        SQLite serializes writes anyway; running short calls inline saves two GIL
        hand-offs per call (measured: ~20% more throughput, lower p99).
        """
        if self.inline:
            return fn(*args, **kwargs)
        return await self.run_slow(fn, *args, **kwargs)

    async def run_slow(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A call that may take long (lists, exports, chain checks): always in the worker pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
