"""`jitgate ssh-broker`: run the SSH broker in the foreground until SIGTERM/SIGINT."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import click

from cli.broker_options import broker_options
from cli.client import IDENTITY_ENV, SERVER_ENV, fail, identity_dir, recording_bytes, server_address
from cli.foreground import run_foreground, serve_until_signal, start_logging
from cli.refusal_options import refusal_limits

if TYPE_CHECKING:
    from broker.ssh.config import BrokerConfig


@click.command("ssh-broker")
@click.option("--listen", default="127.0.0.1:2222", show_default=True, help="HOST:PORT to accept OpenSSH clients on")
@click.option("--identity", default=None, help=f"the broker's identity bundle directory (default ${IDENTITY_ENV})")
@click.option("--server", default=None, help=f"control plane host:port, or several as a,b (default ${SERVER_ENV})")
@click.option("--data-dir", default="~/.jitgate/ssh-broker", show_default=True,
              help="host key, key passphrase and recordings")
@click.option("--record-keystrokes", is_flag=True,
              help="also record what users type in terminals (passwords typed at prompts that do not echo too)")
@click.option("--max-recording-bytes", default="1GiB", show_default=True, metavar="SIZE",
              help="bytes one session's recording may take (e.g. 512MiB); past it the session is cut")
@broker_options(metrics_port=9465)
def ssh_broker(listen: str, identity: str | None, server: str | None, data_dir: str, record_keystrokes: bool,
               max_recording_bytes: str, lock_stale_after: float, uvloop: bool, log_level: str,
               metrics: str | None, **refusals: Any) -> None:
    """Accept `ssh -p PORT LOGIN@RESOURCE@HOST`, check the jitgate certificate, relay, record, cut at expiry.

    The broker's host key is made on first start in DATA_DIR (ssh_host_ed25519_key.pub);
    users pin it with `jitgate ssh-config`.
    """
    from broker.ssh.config import BrokerConfig
    from jitgate.metrics import parse_metrics_address

    start_logging(log_level)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    max_bytes = recording_bytes(max_recording_bytes)
    try:
        config = BrokerConfig.build(listen, identity_dir(identity), server_address(server), data_dir,
                                    record_keystrokes=record_keystrokes, max_recording_bytes=max_bytes,
                                    refusals=refusal_limits(**refusals), lock_stale_after=lock_stale_after)
        if metrics:
            parse_metrics_address(metrics)
    except ValueError as exc:
        fail(str(exc))
    run_foreground(_serve(config, metrics), uvloop, "ssh broker")


async def _serve(config: BrokerConfig, metrics: str | None = None) -> None:
    from broker.metrics import start_broker_metrics
    from broker.ssh.server import SSHBroker

    broker = SSHBroker(config)
    endpoint = start_broker_metrics(metrics, "ssh", broker.cp, broker.hub)
    if endpoint is not None:
        click.echo(f"metrics on http://{endpoint.address}/metrics", err=True)
    try:
        await _run(broker, config)
    finally:
        if endpoint is not None:
            endpoint.stop()


async def _run(broker: Any, config: BrokerConfig) -> None:
    await broker.start()
    click.echo(f"jitgate ssh broker on {config.listen_host}:{broker.port}", err=True)
    click.echo(f"host key: {broker.host_key_line}", err=True)
    try:
        await serve_until_signal(config.data_dir / "listen.addr", config.listen_host, broker.port)
    finally:
        await broker.stop()
