"""Run a broker in the foreground: log set-up, the event loop, and waiting for SIGTERM/SIGINT."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from broker.listen_file import publish_listen_address
from cli.client import fail


def start_logging(level: str) -> None:
    """Timestamped log lines on stderr at `level` (`info`, `debug`, ...)."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def run_foreground(main: Coroutine[Any, Any, None], use_uvloop: bool, what: str) -> None:
    """Run `main` on uvloop or asyncio; a start-up failure becomes one plain line and exit 1."""
    runner = asyncio.run
    if use_uvloop:
        import uvloop

        runner = uvloop.run
    try:
        runner(main)
    except Exception as exc:  # start-up failures: one plain line
        fail(f"{what} stopped: {exc}")


async def serve_until_signal(addr_file: Path, host: str, port: int) -> None:
    """Publish `HOST:PORT` in `addr_file`, wait for SIGTERM/SIGINT, then remove the file."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    publish_listen_address(addr_file, host, port)
    try:
        await stop.wait()
    finally:
        addr_file.unlink(missing_ok=True)
