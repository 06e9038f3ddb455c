"""Logging in to the upstream PostgreSQL server as the approved role.

Supports trust, cleartext password, md5 and SCRAM-SHA-256 (scramp), with an
optional TLS upgrade (`sslmode` from the credentials URI). A cleartext password
is sent only over TLS verified against the credential's `sslrootcert`, or when
the credential says `cleartext=allow` for this very address (`_check_cleartext`). What the user gets
back is the upstream's own ParameterStatus messages and BackendKeyData.
"""
from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass, field

import scramp

from broker.pg import protocol as p
from broker.pg.credentials import UpstreamLogin, split_address
from broker.pg.pipe import Pipe, PipeClosed


class UpstreamError(Exception):
    """The upstream refused the login or could not be reached.

    `sqlstate` and `message` are safe to show the user (no secret in them).
    """

    def __init__(self, message: str, sqlstate: str = "08006") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


@dataclass
class UpstreamSession:
    """A logged-in upstream connection, ready for queries."""

    pipe: Pipe
    host: str
    port: int
    pid: int = 0
    secret: int = 0
    parameter_status: list[bytes] = field(default_factory=list)  # raw 'S' messages, in order
    notices: list[bytes] = field(default_factory=list)  # raw 'N' messages seen during login


def _tls_context(login: UpstreamLogin) -> ssl.SSLContext:
    if login.sslmode in ("verify-ca", "verify-full"):
        ctx = ssl.create_default_context(cafile=login.sslrootcert)
        ctx.check_hostname = login.sslmode == "verify-full"
        return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _read_message(pipe: Pipe, reader: p.MessageReader) -> p.Message:
    while True:
        msg = reader.next_message()
        if msg is not None:
            return msg
        reader.receive_data(await pipe.read())


async def connect(address: str, database: str, login: UpstreamLogin, params: dict[str, str],
                  timeout: float = 10.0) -> UpstreamSession:
    """Open and log in an upstream connection; UpstreamError when that fails."""
    host, port = split_address(address)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            _, pipe = await loop.create_connection(Pipe, host, port)
            try:
                return await _login(pipe, host, port, database, login, params)
            except BaseException:
                pipe.abort()
                raise
    except UpstreamError:
        raise
    except TimeoutError:
        raise UpstreamError(f"the database at {address} did not answer in time") from None
    except (OSError, PipeClosed, ssl.SSLError) as exc:
        raise UpstreamError(f"cannot connect to the database at {address}: {type(exc).__name__}") from None
    except p.ProtocolError as exc:
        raise UpstreamError(f"the database at {address} broke the protocol: {exc.message}") from None


async def _login(pipe: Pipe, host: str, port: int, database: str, login: UpstreamLogin,
                 params: dict[str, str]) -> UpstreamSession:
    reader = p.MessageReader()
    if login.sslmode not in ("disable", "allow"):
        pipe.write(p.ssl_request())
        answer = await pipe.read()
        if answer[:1] == b"S" and len(answer) == 1:
            await pipe.start_tls(_tls_context(login), server_side=False,
                                 server_hostname=host if login.sslmode == "verify-full" else None)
        elif login.sslmode != "prefer":
            raise UpstreamError(f"the database at {host}:{port} does not offer TLS (sslmode={login.sslmode})")
    startup = {"user": login.user, "database": database, **params}
    pipe.write(p.startup_message(startup))
    session = UpstreamSession(pipe, host, port)
    scram: scramp.ScramClient | None = None
    while True:
        msg = await _read_message(pipe, reader)
        kind = msg.type
        if kind == b"R":
            code, data = p.parse_auth(msg.body)
            if code == p.AUTH_OK:
                continue
            if login.password is None:
                raise UpstreamError(
                    f"the database asks a password for role `{login.user}` and the broker has none configured", "28P01"
                )
            if code == p.AUTH_CLEARTEXT:
                _check_cleartext(pipe, host, port, login)
                pipe.write(p.password_message(login.password.encode() + b"\x00"))
            elif code == p.AUTH_MD5:
                inner = hashlib.md5(login.password.encode() + login.user.encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + data[:4]).hexdigest()
                pipe.write(p.password_message(b"md5" + outer.encode() + b"\x00"))
            elif code == p.AUTH_SASL:
                mechs = p.parse_sasl_mechanisms(data)
                if "SCRAM-SHA-256" not in mechs:
                    raise UpstreamError(
                        f"the database offers no supported SASL mechanism ({', '.join(mechs)})", "28000"
                    )
                scram = scramp.ScramClient(["SCRAM-SHA-256"], login.user, login.password)
                pipe.write(p.sasl_initial_response("SCRAM-SHA-256", scram.get_client_first().encode()))
            elif code == p.AUTH_SASL_CONTINUE and scram is not None:
                try:
                    scram.set_server_first(data.decode())
                except scramp.ScramException as exc:
                    raise UpstreamError(f"SCRAM exchange with the database failed: {exc}", "28000") from None
                pipe.write(p.password_message(scram.get_client_final().encode()))
            elif code == p.AUTH_SASL_FINAL and scram is not None:
                try:
                    scram.set_server_final(data.decode())
                except scramp.ScramException:
                    raise UpstreamError("the database failed to prove it knows the password (SCRAM)", "28000") from None
            else:
                raise UpstreamError(f"the database asks for an unsupported authentication method ({code})", "28000")
        elif kind == b"S":
            session.parameter_status.append(p.message(b"S", msg.body))
        elif kind == b"K":
            session.pid, session.secret = p.parse_backend_key_data(msg.body)
        elif kind == b"N":
            session.notices.append(p.message(b"N", msg.body))
        elif kind == b"E":
            fields = p.parse_error_fields(msg.body)
            raise UpstreamError(
                f"the database refused the login as `{login.user}`: {fields.get('message', 'unknown error')}",
                fields.get("sqlstate", "08006"),
            )
        elif kind == b"Z":
            rest = reader.take_rest()
            pipe.unread(rest)
            return session
        else:
            raise UpstreamError(f"unexpected message {kind!r} from the database during login", "08P01")


def _check_cleartext(pipe: Pipe, host: str, port: int, login: UpstreamLogin) -> None:
    """A cleartext password goes only over TLS verified against the operator's CA, or where the
    credential itself allows it (bound to this address): a server that asks for it otherwise may
    be anyone's, and would get the secret itself. md5 and SCRAM never send the password."""
    if (pipe.tls and login.verified_tls) or login.allow_cleartext:
        return
    raise UpstreamError(f"the database at {host}:{port} asks for the password in cleartext over a connection "
                        "whose server is not verified; jitgate does not send it (use sslmode=verify-full with "
                        "sslrootcert in the credential, or cleartext=allow with the server's host:port in it)",
                        "28000")


async def send_cancel(host: str, port: int, pid: int, secret: int, timeout: float = 5.0) -> None:
    """Send a CancelRequest to an upstream backend (best effort, like libpq)."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(p.cancel_request(pid, secret))
            await writer.drain()
            await reader.read(1)  # the server closes once it has the request
            writer.close()
    except (OSError, TimeoutError):
        pass
