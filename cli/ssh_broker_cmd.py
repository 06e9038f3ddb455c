"""`jitgate ssh-broker`: run the SSH broker in the foreground until SIGTERM/SIGINT."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from broker.listen_file import publish_listen_address

from cli.client import IDENTITY_ENV, SERVER_ENV, fail, identity_dir, server_address


@click.command("ssh-broker")
@click.option("--listen", default="127.0.0.1:2222", show_default=True, help="HOST:PORT to accept OpenSSH clients on")
@click.option("--identity", default=None, help=f"the broker's identity bundle directory (default ${IDENTITY_ENV})")
@click.option("--server", default=None, help=f"control plane host:port (default ${SERVER_ENV})")
@click.option("--data-dir", default="~/.jitgate/ssh-broker", show_default=True,
              help="host key, key passphrase and recordings")
@click.option("--uvloop/--no-uvloop", default=True, show_default=True, help="run on uvloop")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def ssh_broker(listen: str, identity: str | None, server: str | None, data_dir: str, uvloop: bool,
               log_level: str) -> None:
    """Accept `ssh -p PORT LOGIN@RESOURCE@HOST`, check the jitgate certificate, relay, record, cut at expiry.

    The broker's host key is made on first start in DATA_DIR (ssh_host_ed25519_key.pub);
    users pin it with `jitgate ssh-config`.
    """
    from broker.ssh.config import BrokerConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        config = BrokerConfig.build(listen, identity_dir(identity), server_address(server), data_dir)
    except ValueError as exc:
        fail(str(exc))
        return
    runner = asyncio.run
    if uvloop:
        import uvloop as _uvloop

        runner = _uvloop.run
    try:
        runner(_serve(config))
    except Exception as exc:  # start-up failures: one plain line
        fail(f"ssh broker stopped: {exc}")


async def _serve(config: object) -> None:
    from broker.ssh.server import SSHBroker

    broker = SSHBroker(config)  # type: ignore[arg-type]
    await broker.start()
    click.echo(f"jitgate ssh broker on {config.listen_host}:{broker.port}", err=True)  # type: ignore[attr-defined]
    click.echo(f"host key: {broker.host_key_line}", err=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    addr_file = config.data_dir / "listen.addr"  # type: ignore[attr-defined]
    publish_listen_address(addr_file, config.listen_host, broker.port)  # type: ignore[attr-defined]
    try:
        await stop.wait()
    finally:
        addr_file.unlink(missing_ok=True)
        await broker.stop()
