"""A bare TCP byte relay on uvloop: the floor for any Python relay of PostgreSQL.

    python bench/bare_relay.py UPSTREAM_HOST UPSTREAM_PORT    (prints "port N" once listening)

No parsing, no TLS, no recording, no login of its own: each chunk read from one
side is written to the other, with flow control passed across. `pg_bench.py
--bare-relay` runs it beside jitgate's broker and pgbouncer, so the run shows
how much of the broker's distance from pgbouncer is the event loop itself and
how much is jitgate's own work (framing, tracking, recording).
"""
from __future__ import annotations

import asyncio
import sys

import uvloop


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []  # what the client sent before the upstream was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references

    def accept() -> _Side:
        client = _Side()
        task = loop.create_task(_connect(client))
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return client

    async def _connect(client: _Side) -> None:
        try:
            _, upstream = await loop.create_connection(_Side, host, port)
        except OSError:
            if client.transport is not None:
                client.transport.close()
            return
        client.peer, upstream.peer = upstream, client
        for data in client.early:
            upstream.transport.write(data)  # type: ignore[union-attr]
        client.early.clear()

    server = await loop.create_server(accept, "127.0.0.1", 0)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/bare_relay.py UPSTREAM_HOST UPSTREAM_PORT")
    uvloop.run(_serve(sys.argv[1], int(sys.argv[2])))


if __name__ == "__main__":
    main()
