"""`jitgate psql`, `jitgate db-connect` (user side) and `jitgate pg-broker` (the PostgreSQL broker).

A database connection through jitgate: user name `ROLE@RESOURCE`, password = a
short-lived token from `IssueDatabaseToken`, TLS verified against the jitgate CA.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from cli.broker_options import broker_options
from cli.client import (
    DURATION,
    IDENTITY_ENV,
    SERVER_ENV,
    Client,
    command_options,
    duration_message,
    fail,
    identity_dir,
    print_json,
    recording_bytes,
    server_address,
    when,
)
from cli.foreground import run_foreground, serve_until_signal, start_logging
from cli.output import echo
from cli.refusal_options import refusal_limits


def _state(req: Any) -> str:
    from jitgate.v1 import types_pb2

    return types_pb2.RequestState.Name(req.state).removeprefix("REQUEST_STATE_")


def _find_grant(client: Client, resource: str, role: str) -> Any | None:
    from jitgate.v1 import access_pb2, types_pb2

    resp = client.access.ListRequests(access_pb2.ListRequestsRequest(
        resource=resource, mine=True, states=[types_pb2.REQUEST_STATE_ACTIVE], page_size=100),
        timeout=client.timeout)
    grants = [g for g in resp.requests if g.kind in ("postgres", "") and (not role or g.role == role)]
    if not grants:
        return None
    return max(grants, key=lambda g: g.expires_at.seconds)


def grant_and_token(client: Client, resource: str, role: str, reason: str | None, duration: dt.timedelta | None,
                    wait: bool, broker: str | None) -> tuple[Any, Any, str]:
    """An ACTIVE grant on `resource` (found, or asked for), its database token and the broker address."""
    from jitgate.v1 import access_pb2

    grant = _find_grant(client, resource, role)
    if grant is None:
        if not reason:
            fail(f"you have no active grant on `{resource}`{f' as `{role}`' if role else ''}; "
                 "ask for one with --reason (and --duration)")
        if not role:
            fail("give --role to ask for a new grant")
        req = access_pb2.CreateRequestRequest(resource=resource, role=role, reason=reason or "")
        if duration:
            req.duration.CopyFrom(duration_message(duration))
        grant = client.access.CreateRequest(req, timeout=client.timeout).request
        echo(f"request {grant.id}: {_state(grant)}", err=True)
        while _state(grant) == "PENDING" and wait:
            time.sleep(2)
            grant = client.access.GetRequest(access_pb2.GetRequestRequest(id=grant.id), timeout=client.timeout)
        if _state(grant) != "ACTIVE":
            hint = " (use --wait to wait for approval)" if _state(grant) == "PENDING" else ""
            fail(f"request {grant.id} is {_state(grant)}{hint}{': ' + grant.message if grant.message else ''}")
    token = client.access.IssueDatabaseToken(access_pb2.IssueDatabaseTokenRequest(grant_id=grant.id),
                                             timeout=client.timeout)
    address = broker or token.broker_address
    if not address:
        fail("the control plane does not know the PostgreSQL broker's address; give --broker HOST:PORT")
    return grant, token, address


def server_dir_name(server: str) -> str:
    """A control plane's host:port as one file name, different for every address: percent-encoded
    (`127.0.0.1:7443` -> `127.0.0.1%3A7443`), and never `.` or `..`."""
    name = quote(server, safe="")
    return name if name.strip(".") else name.replace(".", "%2E")


def _ca_file(server: str, pem: str) -> Path:
    """The CA of the control plane at `server` as a file psql can verify the broker with
    (sslrootcert): one per control plane, so another one's CA never replaces it."""
    directory = Path.home() / ".jitgate" / "pg" / server_dir_name(server)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "ca.pem"
    if not path.exists() or path.read_text() != pem:
        tmp = directory / f".ca.{os.getpid()}"
        tmp.write_text(pem)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return path


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), (port or "6432")


def connection_params(token: Any, address: str, ca_path: Path) -> dict[str, str]:
    host, port = _host_port(address)
    return {"host": host, "port": port, "user": token.user, "password": token.token,
            "dbname": token.database or token.user, "sslmode": "verify-full", "sslrootcert": str(ca_path)}


_request_options = [
    click.argument("resource"),
    click.option("--role", default="", help="database role (default: the role of your active grant)"),
    click.option("--reason", "-r", default=None, help="ask for a grant with this reason if you have none"),
    click.option("--duration", "-d", type=DURATION, default=None, help="with --reason: how long, e.g. 30m"),
    click.option("--wait", is_flag=True, help="with --reason: wait until the request is approved"),
    click.option("--broker", default=None, help="the PostgreSQL broker's HOST:PORT (default: from the control plane)"),
]


def request_options(f: Any) -> Any:
    for option in reversed(_request_options):
        f = option(f)
    return f


@click.command("psql")
@request_options
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@command_options
def psql(client: Client, output: str, resource: str, role: str, reason: str | None, duration: dt.timedelta | None,
         wait: bool, broker: str | None, psql_args: tuple[str, ...]) -> None:
    """Run psql on RESOURCE through the jitgate broker (gets a token for your active grant).

    Extra arguments after `--` go to psql, e.g. `jitgate psql orders-db -- -c 'select 1'`.
    """
    grant, token, address = grant_and_token(client, resource, role, reason, duration, wait, broker)
    exe = shutil.which("psql")
    if exe is None:
        fail("psql is not installed; `jitgate db-connect` prints the connection settings instead")
    params = connection_params(token, address, _ca_file(client.server, token.ca_pem))
    env = dict(os.environ)
    env.update({"PGHOST": params["host"], "PGPORT": params["port"], "PGUSER": params["user"],
                "PGPASSWORD": params["password"], "PGDATABASE": params["dbname"], "PGSSLMODE": "verify-full",
                "PGSSLROOTCERT": params["sslrootcert"], "PGAPPNAME": "jitgate-psql"})
    echo(f"jitgate: {grant.role}@{grant.resource} until {when(token.expires_at)} (grant {grant.id})", err=True)
    sys.stdout.flush()
    os.execvpe(exe, [exe, *psql_args], env)


@click.command("db-connect")
@request_options
@click.option("--format", "fmt", type=click.Choice(["uri", "env"]), default="uri", show_default=True)
@command_options
def db_connect(client: Client, output: str, resource: str, role: str, reason: str | None, duration: dt.timedelta | None,
               wait: bool, broker: str | None, fmt: str) -> None:
    """Print how to connect any PostgreSQL client to RESOURCE through the broker (URI or env)."""
    grant, token, address = grant_and_token(client, resource, role, reason, duration, wait, broker)
    params = connection_params(token, address, _ca_file(client.server, token.ca_pem))
    uri = (f"postgresql://{quote(params['user'], safe='')}:{quote(params['password'], safe='')}@"
           f"{params['host']}:{params['port']}/{quote(params['dbname'], safe='')}"
           f"?sslmode=verify-full&sslrootcert={quote(params['sslrootcert'])}")
    if output == "json":
        print_json({**params, "uri": uri, "grant_id": grant.id, "expires_at": token.expires_at})
        return
    if fmt == "env":
        for key, name in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("password", "PGPASSWORD"),
                          ("dbname", "PGDATABASE"), ("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT")):
            click.echo(f"export {name}={_sh(params[key])}")
        return
    click.echo(uri)
    click.echo(f"# valid until {when(token.expires_at)} (grant {grant.id})", err=True)


def _sh(value: str) -> str:
    import shlex

    return shlex.quote(value)


# ---------------------------------------------------------------- the broker


@click.command("pg-broker")
@click.option("--listen", default="127.0.0.1:6432", show_default=True, help="HOST:PORT for PostgreSQL clients")
@click.option("--identity", default=None, help=f"the broker's identity bundle directory (default ${IDENTITY_ENV})")
@click.option("--server", default=None, help=f"control plane host:port, or several as a,b (default ${SERVER_ENV})")
@click.option("--data-dir", default="~/.jitgate/pg-broker", show_default=True,
              help="recordings, recorder key and (tls/cert.pem, tls/key.pem) the TLS certificate")
@click.option(
    "--tls-cert", default=None, type=click.Path(dir_okay=False), help="server certificate (PEM) from the jitgate CA"
)
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False),
              help="its private key (PEM, mode 0600; plain or encrypted with the broker's passphrase)")
@click.option("--issue-tls-from", "ca_data_dir", default=None, type=click.Path(file_okay=False),
              help="make the TLS certificate now from the control plane's data directory (its X.509 CA)")
@click.option("--tls-hostname", "hostnames", multiple=True,
              help="with --issue-tls-from: DNS names clients use (localhost and 127.0.0.1 are always in)")
@click.option("--max-message", default=64 * 1024 * 1024, show_default=True,
              help="largest client message in bytes; a larger one ends that connection (54000)")
@click.option(
    "--record-backlog",
    default=4 * 1024 * 1024,
    show_default=True,
    help="bytes of statements waiting to be recorded beyond which clients are paused until recording catches up",
)
@click.option("--max-recording-bytes", default="256MiB", show_default=True, metavar="SIZE",
              help="bytes one session's recording may take (e.g. 1GiB); past it the session is cut (54000)")
@click.option("--credentials-env", "credentials_env", multiple=True, metavar="NAME",
              help="an environment variable `credentials: env:NAME` may name (with its NAME_<ROLE>); repeatable")
@click.option("--credentials-env-prefix", "credentials_prefix", multiple=True, metavar="PREFIX",
              help="variables starting with PREFIX (e.g. DB_) that `credentials: env:` may name; repeatable")
@click.option("--credentials-dir", default=None, type=click.Path(file_okay=False),
              help="the directory `credentials: file:PATH` is read from (relative paths only; none: no files)")
@click.option("--allow-plaintext", is_flag=True, help="accept clients without TLS (tokens travel in clear: tests only)")
@broker_options(metrics_port=9466)
def pg_broker(listen: str, identity: str | None, server: str | None, data_dir: str, tls_cert: str | None,
              tls_key: str | None, ca_data_dir: str | None, hostnames: tuple[str, ...], max_message: int,
              record_backlog: int, max_recording_bytes: str, credentials_env: tuple[str, ...],
              credentials_prefix: tuple[str, ...], credentials_dir: str | None, allow_plaintext: bool,
              lock_stale_after: float, uvloop: bool, log_level: str, metrics: str | None, **refusals: Any) -> None:
    """Accept PostgreSQL clients as ROLE@RESOURCE with a jitgate token; log in upstream; relay, record, cut."""
    from broker.pg.config import ConfigError, PgBrokerConfig
    from broker.pg.credentials import CredentialSource
    from ca.errors import CAError
    from ca.keystore import passphrase_at_start
    from jitgate.endpoints import parse_servers
    from jitgate.metrics import parse_metrics_address

    start_logging(log_level)
    data = Path(data_dir).expanduser()
    try:
        parse_servers(server_address(server))  # a bad list fails here, before anything starts
        if metrics:
            parse_metrics_address(metrics)
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        passphrase = passphrase_at_start(data / "keys")
        cert, key = _tls_files(data, tls_cert, tls_key, ca_data_dir, list(hostnames), passphrase)
        credentials = CredentialSource(env_names=credentials_env, env_prefixes=credentials_prefix,
                                       directory=Path(credentials_dir).expanduser() if credentials_dir else None,
                                       protected=(data, identity_dir(identity)))
        config = PgBrokerConfig(
            listen=listen,
            tls_cert=cert,
            tls_key=key,
            tls_key_passphrase=passphrase,
            require_tls=not allow_plaintext,
            max_message=max_message,
            record_backlog=record_backlog,
            credentials=credentials,
            max_recording_bytes=recording_bytes(max_recording_bytes),
            refusals=refusal_limits(**refusals),
            lock_stale_after=lock_stale_after,
        )
    except (ConfigError, CAError, ValueError, OSError) as exc:
        fail(str(exc))
    run_foreground(_serve(config, identity_dir(identity), server_address(server), data, passphrase, metrics),
                   uvloop, "pg broker")


def _tls_files(data: Path, cert: str | None, key: str | None, ca_data_dir: str | None,
               hostnames: list[str], passphrase: bytes) -> tuple[Path | None, Path | None]:
    tls_dir = data / "tls"
    if ca_data_dir:
        from ca.x509 import write_server_certificate
        from controlplane.identity import DataDir, open_x509_ca

        bundle = open_x509_ca(DataDir(Path(ca_data_dir).expanduser())).issue_server_certificate(hostnames, [])
        write_server_certificate(tls_dir, bundle, passphrase)  # the key encrypted, like the recording key
    if cert or key:
        if key:
            from ca.keystore import check_private_mode

            check_private_mode(Path(key), what="TLS key")
        return (Path(cert) if cert else None), (Path(key) if key else None)
    if (tls_dir / "cert.pem").exists():
        return tls_dir / "cert.pem", tls_dir / "key.pem"
    return None, None


async def _serve(config: Any, identity: Path, server: str, data: Path, passphrase: bytes,
                 metrics: str | None = None) -> None:
    from broker.cpclient import ControlPlaneClient
    from broker.metrics import start_broker_metrics
    from broker.pg.recording import RecorderProcess
    from broker.pg.server import PgBroker

    cp = ControlPlaneClient.from_identity_dir(server, identity)
    broker = PgBroker(config, cp, RecorderProcess(data, passphrase, interval=config.record_interval,
                                                  backlog=config.record_backlog, max_bytes=config.max_recording_bytes))
    endpoint = start_broker_metrics(metrics, "pg", cp, broker.hub)
    if endpoint is not None:
        click.echo(f"metrics on http://{endpoint.address}/metrics", err=True)
    try:
        await _run(broker, cp, config, data)
    finally:
        if endpoint is not None:
            endpoint.stop()


async def _run(broker: Any, cp: Any, config: Any, data: Path) -> None:
    host, port = await broker.start()
    # Everything loaded so far (gRPC, protobuf, crypto) lives as long as the process: keep it out of
    # the garbage collector's full passes, which otherwise pause the relay for ~10 ms now and then.
    import gc

    gc.freeze()
    click.echo(f"jitgate pg broker on {host}:{port} (TLS {'required' if config.require_tls else 'optional'})",
               err=True)
    try:
        await serve_until_signal(data / "listen.addr", host, port)
    finally:
        await broker.stop()
        await cp.close()


__all__ = ["db_connect", "grant_and_token", "pg_broker", "psql"]
