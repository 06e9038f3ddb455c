"""The API as the signed-in person: stubs over their mTLS channel, called off the event loop."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from cli.client import Client
from web.session import Person

T = TypeVar("T")
TIMEOUT = 15.0  # seconds per call: a page never hangs on a plane that does not answer


def api(person: Person) -> Client:
    """Stubs of every jitgate.v1 service on the person's channel (never close it: the session owns it)."""
    return Client(person.channel, TIMEOUT)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking stub call in the thread pool, with the default timeout unless one is given."""
    kwargs.setdefault("timeout", TIMEOUT)
    return await run_in_threadpool(fn, *args, **kwargs)


__all__ = ["TIMEOUT", "api", "call"]
