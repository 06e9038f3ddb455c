"""What every networked `jitgate` command shares: finding the identity and server, the
gRPC stubs over mTLS, `--output`, and turning failures into one plain line.

The identity bundle (ca.pem, cert.pem, key.pem) is found by `--identity DIR`,
else `$JITGATE_IDENTITY`, else `~/.jitgate/identity`; the server by `--server`,
else `$JITGATE_SERVER`, else 127.0.0.1:7443. Either may list several control planes
(`a:7443,b:7443`): calls fail over between them (`jitgate.endpoints`, `cli/failover.py`).
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import grpc

from cli import exits
from cli.output import duration_text, echo, print_fields, print_json, print_table, to_dict  # noqa: F401 (re-exported)

IDENTITY_ENV = "JITGATE_IDENTITY"
SERVER_ENV = "JITGATE_SERVER"
DEFAULT_SERVER = "127.0.0.1:7443"
DEFAULT_TIMEOUT = 30.0

F = TypeVar("F", bound=Callable[..., Any])


def identity_dir(value: str | os.PathLike[str] | None) -> Path:
    """--identity, else $JITGATE_IDENTITY, else ~/.jitgate/identity."""
    if value:
        return Path(value).expanduser()
    env = os.environ.get(IDENTITY_ENV)
    return Path(env).expanduser() if env else Path.home() / ".jitgate" / "identity"


def server_address(value: str | None) -> str:
    return value or os.environ.get(SERVER_ENV) or DEFAULT_SERVER


def channel_credentials(identity: Path) -> grpc.ChannelCredentials:
    from ca.x509 import read_identity_bundle

    ca_pem, cert_pem, key_pem = read_identity_bundle(identity)
    return grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)


@dataclass
class Client:
    """Stubs of every jitgate.v1 service on one mTLS channel."""

    channel: grpc.Channel
    timeout: float = DEFAULT_TIMEOUT
    server: str = ""  # the host:port connected to, for files kept per control plane
    identity: Path | None = None  # the identity bundle's directory (whoami reads its certificate)

    def __post_init__(self) -> None:
        from jitgate.v1 import (
            access_pb2_grpc,
            admin_pb2_grpc,
            audit_pb2_grpc,
            broker_pb2_grpc,
            lifecycle_pb2_grpc,
            locks_pb2_grpc,
            policy_pb2_grpc,
        )

        self.access = access_pb2_grpc.AccessServiceStub(self.channel)
        self.broker = broker_pb2_grpc.BrokerServiceStub(self.channel)
        self.policy = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.locks = locks_pb2_grpc.LockServiceStub(self.channel)
        self.lifecycle = lifecycle_pb2_grpc.GrantLifecycleServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def connect(identity: str | os.PathLike[str] | None = None, server: str | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A Client for the identity bundle and server (defaults as the module says)."""
    from cli.failover import failover_channel
    from cli.tls_diagnosis import HandshakeDiagnosis
    from jitgate import wire
    from jitgate.endpoints import ServerList

    bundle = identity_dir(identity)
    servers = ServerList.parse(server_address(server))  # `a,b`: several planes, failover (jitgate.endpoints)
    # The server's message limit and ping policy (jitgate.wire): keepalive keeps `sessions watch` alive.
    # A call the TLS handshake refused says so (not "failed to connect ... Socket closed").
    channel = failover_channel(servers, channel_credentials(bundle), wire.client_options(), bundle,
                               lambda raw, ident, address: grpc.intercept_channel(
                                   raw, HandshakeDiagnosis(ident, address)))
    return Client(channel, timeout, servers.text, bundle)


# -- click plumbing ---------------------------------------------------------------------------------


def connection_options(f: F) -> F:
    """Adds --identity and --server; the command gets `client` (a lazily connected Client)."""

    @click.option("--identity", "identity", type=click.Path(file_okay=False), default=None,
                  help=f"identity bundle directory (default ${IDENTITY_ENV} or ~/.jitgate/identity)")
    @click.option("--server", "server", default=None,
                  help=f"control plane host:port, or several as a,b (default ${SERVER_ENV} or {DEFAULT_SERVER})")
    @functools.wraps(f)
    def wrapper(*args: Any, identity: str | None, server: str | None, **kwargs: Any) -> Any:
        client = connect(identity, server)
        try:
            return f(*args, client=client, **kwargs)
        finally:
            client.close()

    return wrapper  # type: ignore[return-value]


def output_option(f: F) -> F:
    return click.option("--output", "-o", "output", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="human table or JSON")(f)


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr (shown literally: it may quote user input) and exit 1."""
    echo(f"error: {message}", err=True)
    sys.exit(exits.ERROR)


def recording_bytes(text: str) -> int:
    """`--max-recording-bytes` (`1GiB`, `512MiB`, bytes) as bytes, or one error line and exit 1."""
    from recorder.limits import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        fail(f"--max-recording-bytes: {exc}")


def error_line(exc: BaseException) -> str | None:
    """The one line a person sees for a known failure, or None for an unexpected one."""
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        from jitgate.status import reason_of

        code = exc.code()
        detail = (exc.details() or "").strip().replace("\n", " ")
        reason = reason_of(exc)
        return f"{code.name if code else 'UNKNOWN'}: {detail}" + (f" [{reason}]" if reason else "")
    from jitgate.errors import JitgateError

    if isinstance(exc, JitgateError):  # a local one (CA files, identity refused in the handshake)
        return exc.message
    if isinstance(exc, (ValueError, OSError)):
        return str(exc)
    return None


def handle_errors(f: F) -> F:
    """Known failures -> `error: <status>: <detail> [<code>]` on stderr, exit 1; never a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # last resort: still one plain line
            line = error_line(exc)
            fail(line if line is not None else f"{type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]


def command_options(f: F) -> F:
    """--identity/--server, --output and error handling, in the right order."""
    return handle_errors(connection_options(output_option(f)))


# -- output -----------------------------------------------------------------------------------------


def when(ts: Any) -> str:
    """A Timestamp as local-free UTC text, "" if unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(tzinfo=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def span(d: Any) -> str:
    """A Duration (or timedelta) as `1h30m`."""
    return "" if d is None else duration_text(d)


def parse_span(text: str) -> dt.timedelta:
    """`90s`, `30m`, `1h30m` -> timedelta (click.BadParameter on bad text)."""
    from policy.durations import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if value <= dt.timedelta(0):
        raise click.BadParameter("a duration must be positive")
    return value


class DurationType(click.ParamType):
    """A `--duration` option: POLICY.md text (`30m`, `1h30m`) checked when the command line is
    read, before anything connects; the command gets a timedelta."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        try:
            return parse_span(value)
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


DURATION = DurationType()


def duration_message(value: dt.timedelta) -> Any:
    """A timedelta as the protobuf Duration every request carries."""
    from google.protobuf import duration_pb2

    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out
