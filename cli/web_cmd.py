"""`jitgate web`: the web console, a client of the control plane over gRPC (web/).

It holds no identity of its own: people sign in through the control plane's sign-in
listener and the OpenID provider, and each page calls the API as them. It serves HTTPS
only (its cookies are Secure): a certificate the operator gives (`--tls-cert/--tls-key`),
or one issued now from the control plane's X.509 CA (`--issue-tls-from DATA_DIR`, what the
demo does; browsers then need that CA, or a warning is clicked through).
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import click

from cli.client import SERVER_ENV, fail, server_address

CA_ENV = "JITGATE_CA"


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail(f"--listen `{value}` must be HOST:PORT")
    return host.strip("[]"), int(port)


def _tls(data: Path, cert: str | None, key: str | None, ca_data_dir: str | None,
         hostnames: list[str]) -> tuple[Path, Path, bytes | None]:
    """(certificate, key, key password): given, or issued now from the control plane's CA (its key
    written encrypted under the console's data directory, like the brokers' TLS keys)."""
    if ca_data_dir:
        from ca.keystore import passphrase_at_start
        from ca.x509 import write_server_certificate
        from controlplane.identity import DataDir, open_x509_ca

        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        passphrase = passphrase_at_start(data / "keys")
        bundle = open_x509_ca(DataDir(Path(ca_data_dir).expanduser())).issue_server_certificate(hostnames, [])
        cert_path, key_path = write_server_certificate(data / "tls", bundle, passphrase)
        return cert_path, key_path, passphrase
    if not cert or not key:
        fail("give the console's HTTPS certificate: --tls-cert and --tls-key, or --issue-tls-from DATA_DIR")
    from ca.keystore import check_private_mode

    check_private_mode(Path(key), what="TLS key")
    return Path(cert), Path(key), None


@click.command("web")
@click.option("--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT to serve HTTPS on")
@click.option("--public-url", default=None,
              help="the address people open, https://HOST[:PORT] (default: from --listen); "
                   "its /auth/callback must be registered for --client-id at the provider")
@click.option("--server", default=None, help=f"control plane host:port, or several as a,b (default ${SERVER_ENV})")
@click.option("--login-server", default=None,
              help="the control plane's sign-in address (default $JITGATE_LOGIN_SERVER, else the first "
                   "--server's port + 1)")
@click.option("--ca", default=None, type=click.Path(dir_okay=False),
              help=f"the control plane's CA certificate (default ${CA_ENV}; with --issue-tls-from: that CA)")
@click.option("--client-id", default="jitgate-web", show_default=True,
              help="the console's client at the provider (the control plane's `oidc.console_client_id`)")
@click.option("--data-dir", default="~/.jitgate/web", show_default=True,
              help="the console's TLS files (tls/) and their key passphrase; no person's key is ever written")
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="HTTPS certificate (PEM)")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="its private key (PEM, mode 0600)")
@click.option("--issue-tls-from", "ca_data_dir", default=None, type=click.Path(file_okay=False),
              help="issue the HTTPS certificate now from the control plane's data directory (its X.509 CA)")
@click.option("--tls-hostname", "hostnames", multiple=True,
              help="with --issue-tls-from: DNS names people use (localhost and 127.0.0.1 are always in)")
@click.option("--hours", type=click.IntRange(0, 168), default=0,
              help="each person's certificate lifetime (default: the control plane's)")
@click.option("--idle-minutes", type=click.IntRange(1, 1440), default=30, show_default=True,
              help="a web session ends after this long without a page")
@click.option("--session-hours", type=click.IntRange(1, 24), default=8, show_default=True,
              help="a web session ends this long after sign-in (or when the person's certificate does)")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def web(listen: str, public_url: str | None, server: str | None, login_server: str | None, ca: str | None,
        client_id: str, data_dir: str, tls_cert: str | None, tls_key: str | None, ca_data_dir: str | None,
        hostnames: tuple[str, ...], hours: int, idle_minutes: int, session_hours: int, log_level: str) -> None:
    """Serve the web console: request, approve, dashboard, audit, live sessions and replays."""
    import uvicorn

    from ca.errors import CAError
    from cli.foreground import start_logging
    from cli.login_cmd import LOGIN_SERVER_ENV
    from jitgate.endpoints import parse_servers
    from web.app import create_app
    from web.settings import SettingsError, WebSettings

    start_logging(log_level)
    host, port = _listen(listen)
    data = Path(data_dir).expanduser()
    try:
        servers = parse_servers(server_address(server))
        first_host, _, first_port = servers[0].rpartition(":")
        login = login_server or os.environ.get(LOGIN_SERVER_ENV) or f"{first_host}:{int(first_port) + 1}"
        if public_url is None and host in ("0.0.0.0", "::", ""):
            fail("listening on every address: give --public-url https://NAME[:PORT], the address people open")
        cert, key, password = _tls(data, tls_cert, tls_key, ca_data_dir, list(hostnames))
        ca_path = ca or os.environ.get(CA_ENV)
        if ca_path:
            ca_pem = Path(ca_path).expanduser().read_bytes()
        elif ca_data_dir:
            from controlplane.identity import DataDir, open_x509_ca

            ca_pem = open_x509_ca(DataDir(Path(ca_data_dir).expanduser())).ca_cert_pem
        else:
            fail(f"give the control plane's CA certificate: --ca PATH or ${CA_ENV}")
        shown_host = f"[{host}]" if ":" in host else host
        settings = WebSettings(
            server=server_address(server), login_server=login, ca_pem=ca_pem,
            public_url=public_url or f"https://{shown_host}:{port}", client_id=client_id,
            idle_timeout=dt.timedelta(minutes=idle_minutes), absolute_timeout=dt.timedelta(hours=session_hours),
            certificate_hours=hours, tls_cert=cert, tls_key=key, tls_key_password=password)
    except (SettingsError, CAError, ValueError, OSError) as exc:
        fail(str(exc))
    app = create_app(settings)
    click.echo(f"jitgate web console on {settings.public_url} (control plane {settings.server}, "
               f"sign-in {settings.login_server})", err=True)
    uvicorn.run(app, host=host, port=port, ssl_certfile=str(cert), ssl_keyfile=str(key),
                ssl_keyfile_password=password.decode() if password else None, log_level=log_level,
                server_header=False, proxy_headers=False,
                access_log=False,  # request lines carry the sign-in callback's one-time code: never logged
                limit_concurrency=256, timeout_keep_alive=30)


__all__ = ["web"]
