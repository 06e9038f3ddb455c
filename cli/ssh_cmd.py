"""`jitgate ssh TARGET` and `jitgate ssh-config`: OpenSSH through the broker with a fresh certificate.

Files (in `--ssh-dir`, default ~/.jitgate/ssh, 0700; written into configs and
ssh options as an absolute path, so they work from any directory):
- `id_ed25519` (0600) and `.pub`: the user's key, made on first use;
- `certs/<LOGIN>@<TARGET>-cert.pub`: the current certificate for the grant of
  LOGIN on TARGET, fetched again when missing, expired, for another grant, or
  when the grant's expiry moved (an extension);
- `known_hosts`: the broker's host key pinned (`[host]:port ssh-ed25519 ...`),
  written by `--broker-host-key` (the line, or a file holding it: the broker's
  `<data-dir>/ssh_host_ed25519_key.pub`). Nothing is trusted on first use.

`jitgate ssh web-01 [--login root] [-- command]` finds the caller's ACTIVE
grant for web-01 (or asks for one with --reason/--duration), then runs
`ssh -p PORT LOGIN@web-01@BROKER`. `jitgate ssh-config` prints a `Host` block
per (target, login) of the ACTIVE ssh grants, named `LOGIN.TARGET`
(`ssh root.web-01`), and also plain `TARGET` when one login is active there, so
`ssh web-01`, `scp`, `sftp` go through the broker. (OpenSSH sends the user name
typed before `@` as it is, so `root@web-01` cannot pick a block: the login is in
the host alias.)
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from cli.client import DURATION, connection_options, duration_message, fail, handle_errors
from cli.output import echo, visible

BROKER_ENV = "JITGATE_SSH_BROKER"
BROKER_KEY_ENV = "JITGATE_SSH_BROKER_HOST_KEY"
SSH_DIR_ENV = "JITGATE_SSH_DIR"
DEFAULT_BROKER = "127.0.0.1:2222"
# Fetch a new certificate when the current one has less than this left but the grant has more.
REFRESH_MARGIN = dt.timedelta(seconds=5)


def ssh_dir_path(value: str | None) -> Path:
    """The ssh directory (made 0700 with `certs/`), absolute: its paths go into configs read elsewhere."""
    path = Path(value or os.environ.get(SSH_DIR_ENV) or Path.home() / ".jitgate" / "ssh").expanduser().absolute()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    (path / "certs").mkdir(exist_ok=True, mode=0o700)
    return path


def user_key(directory: Path) -> Path:
    """The user's Ed25519 key (OpenSSH format, 0600), made on first use."""
    from ca.keystore import new_openssh_key

    path = directory / "id_ed25519"
    if not path.exists():
        (directory / "id_ed25519.pub").write_text(new_openssh_key(path) + " jitgate\n")
    return path


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return address, 22
    return host.strip("[]"), int(port)


def known_host_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def pin_broker_key(directory: Path, host: str, port: int, key: str) -> None:
    """Write the broker's host key into `known_hosts` (replacing an older pin for the same address)."""
    value = key.strip()
    if value.startswith("@"):
        value = Path(value[1:]).expanduser().read_text().strip()
    elif not value.startswith(("ssh-", "ecdsa-")) and Path(value).expanduser().exists():
        value = Path(value).expanduser().read_text().strip()
    parts = value.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise click.ClickException(f"`{key}` is not an OpenSSH public key line or a file holding one")
    name = known_host_name(host, port)
    path = directory / "known_hosts"
    kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
            if line.split(" ", 1)[0] != name]
    path.write_text("\n".join([*kept, f"{name} {parts[0]} {parts[1]}"]) + "\n")


def has_pin(directory: Path, host: str, port: int) -> bool:
    path = directory / "known_hosts"
    name = known_host_name(host, port)
    return path.exists() and any(line.split(" ", 1)[0] == name for line in path.read_text().splitlines())


def _expiry(grant: Any) -> dt.datetime:
    return grant.expires_at.ToDatetime(tzinfo=dt.UTC)


def active_grants(client: Any, resource: str = "") -> list[Any]:
    from jitgate.v1 import access_pb2, types_pb2

    resp = client.access.ListRequests(access_pb2.ListRequestsRequest(
        mine=True, resource=resource, states=[types_pb2.REQUEST_STATE_ACTIVE], page_size=200),
        timeout=client.timeout)
    now = dt.datetime.now(dt.UTC)
    return [g for g in resp.requests if g.kind == "ssh" and _expiry(g) > now]


def find_or_request_grant(client: Any, resource: str, login: str | None, reason: str | None,
                          duration: dt.timedelta | None, ticket: str) -> Any:
    """The caller's ACTIVE grant for `resource` (latest expiry), or a new request when --reason is given."""
    grants = [g for g in active_grants(client, resource) if not login or g.login == login]
    if grants:
        return max(grants, key=_expiry)
    if not reason:
        fail(f"you have no active grant for `{resource}`; ask with `jitgate ssh {resource} --login LOGIN "
             f"--reason TEXT` or `jitgate request`")
    if not login:
        fail("--login is needed to ask for a new grant")
    from jitgate.v1 import access_pb2, types_pb2

    req = access_pb2.CreateRequestRequest(resource=resource, login=login, reason=reason or "", ticket=ticket)
    if duration:
        req.duration.CopyFrom(duration_message(duration))
    created = client.access.CreateRequest(req, timeout=client.timeout).request
    if created.state != types_pb2.REQUEST_STATE_ACTIVE:
        fail(f"request `{created.id}` waits for approval ({created.message or 'pending'}); "
             f"run this again once it is approved")
    echo(f"jitgate: access granted ({created.id}) until {_expiry(created):%H:%M:%S} UTC", err=True)
    return created


# Characters a name must not hold to go into an ssh_config line as one plain word: blanks,
# quotes and `#` end the word or the line; `*?!,` make a Host line a pattern; `%` starts a token.
_NOT_IN_CONFIG_WORD = frozenset(" \"'#\\*?!,%")


def _config_word(text: str) -> bool:
    """True when `text` is one ssh_config word: nothing that would end the line, start another
    directive, make a Host pattern or a `%` token, and no hidden characters."""
    return bool(text) and visible(text) == text and not any(c in _NOT_IN_CONFIG_WORD for c in text)


def config_path(path: Path) -> str:
    """A path as one ssh_config argument (config lines and `ssh -o`): double-quoted (blanks stay
    inside), `%` doubled (ssh expands `%` tokens in file names). A path with a double quote or a
    hidden character cannot be written: refused."""
    text = str(path)
    if '"' in text or visible(text) != text:
        fail(f"`{visible(text)}` cannot be written into an ssh config (a double quote or a hidden character); "
             "choose another --ssh-dir")
    return '"' + text.replace("%", "%%") + '"'


def host_aliases(login: str, resource: str, logins_on_resource: int) -> list[str]:
    """The `Host` names of the block for LOGIN on RESOURCE: `RESOURCE` when it is the only login
    active there (never a guess between two logins), and always `LOGIN.RESOURCE`."""
    return [*([resource] if logins_on_resource == 1 else []), f"{login}.{resource}"]


def certificate_for(client: Any, directory: Path, grant: Any) -> tuple[Path, str]:
    """The certificate file for `grant`, fetched again unless the current one still fits; (path, broker address)."""
    from ca import parse_certificate
    from jitgate.v1 import access_pb2

    user_key(directory)
    name = quote(f"{grant.login}@{grant.resource}", safe="@")  # one file per (login, target); no `/`
    cert_path = directory / "certs" / f"{name}-cert.pub"
    addr_path = directory / "certs" / f"{name}.broker"
    expires = _expiry(grant)
    if cert_path.exists():
        try:
            info = parse_certificate(cert_path.read_text())
            now = dt.datetime.now(dt.UTC)
            fits = (info.key_id == grant.id and info.valid_before >= expires - dt.timedelta(seconds=1)
                    and info.valid_before - now > REFRESH_MARGIN
                    and info.public_key_line.split()[1] == (directory / "id_ed25519.pub").read_text().split()[1])
            if fits:
                return cert_path, addr_path.read_text().strip() if addr_path.exists() else ""
        except Exception:  # unreadable or stale: fetch a new one
            pass
    resp = client.access.IssueSshCertificate(access_pb2.IssueSshCertificateRequest(
        grant_id=grant.id, public_key=(directory / "id_ed25519.pub").read_text().strip()), timeout=client.timeout)
    tmp = cert_path.with_suffix(".tmp")
    tmp.write_text(resp.certificate.strip() + "\n")
    os.replace(tmp, cert_path)
    addr_path.write_text(resp.broker_address + "\n")
    return cert_path, resp.broker_address


def broker_address(option: str | None, from_cert: str) -> tuple[str, int]:
    return split_address(option or os.environ.get(BROKER_ENV) or from_cert or DEFAULT_BROKER)


def ssh_settings(directory: Path, cert: Path) -> list[tuple[str, str]]:
    """The OpenSSH settings of a connection through the broker (`jitgate ssh` passes them as
    `-o`, `ssh-config` writes them as lines): our key and certificate only, the pinned broker key."""
    return [("IdentityFile", config_path(directory / "id_ed25519")), ("CertificateFile", config_path(cert)),
            ("IdentitiesOnly", "yes"), ("UserKnownHostsFile", config_path(directory / "known_hosts")),
            ("StrictHostKeyChecking", "yes"), ("ForwardAgent", "no"), ("ForwardX11", "no")]


def ssh_options(directory: Path, cert: Path) -> list[str]:
    return [arg for key, value in ssh_settings(directory, cert) for arg in ("-o", f"{key}={value}")]


def _ensure_pin(directory: Path, host: str, port: int, host_key: str | None) -> None:
    key = host_key or os.environ.get(BROKER_KEY_ENV)
    if key:
        pin_broker_key(directory, host, port, key)
    if not has_pin(directory, host, port):
        fail(f"the broker's host key for {known_host_name(host, port)} is not pinned: pass --broker-host-key "
             "with the broker's ssh_host_ed25519_key.pub (its line or the file)")


@click.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--login", "-l", default=None, help="the login on the target (needed when asking for a new grant)")
@click.option("--reason", default=None, help="ask for a grant with this reason when none is active")
@click.option("--duration", type=DURATION, default=None,
              help="duration to ask for (e.g. 30m); default: the recommendation")
@click.option("--ticket", default="", help="ticket reference for a new request")
@click.option(
    "--broker", default=None, help=f"broker HOST:PORT (default ${BROKER_ENV}, the control plane's, {DEFAULT_BROKER})"
)
@click.option(
    "--broker-host-key", default=None, help=f"pin the broker's host key: the line or a file (default ${BROKER_KEY_ENV})"
)
@click.option(
    "--ssh-dir", default=None, help=f"key, certificates, known_hosts (default ${SSH_DIR_ENV} or ~/.jitgate/ssh)"
)
@click.option("--tty/--no-tty", "-t", default=None, help="force a terminal (ssh -tt) or none (ssh -T)")
@handle_errors
@connection_options
def ssh(target: str, command: tuple[str, ...], login: str | None, reason: str | None, duration: dt.timedelta | None,
        ticket: str, broker: str | None, broker_host_key: str | None, ssh_dir: str | None, tty: bool | None,
        client: Any) -> None:
    """Run OpenSSH to TARGET through the jitgate broker: `jitgate ssh web-01 [-- uptime]`."""
    directory = ssh_dir_path(ssh_dir)
    grant = find_or_request_grant(client, target, login, reason, duration, ticket)
    cert, from_cert = certificate_for(client, directory, grant)
    host, port = broker_address(broker, from_cert)
    _ensure_pin(directory, host, port, broker_host_key)
    binary = shutil.which("ssh")
    if binary is None:
        fail("OpenSSH's `ssh` is not installed")
    argv = ["ssh", "-p", str(port), *ssh_options(directory, cert)]
    if tty is True:
        argv.append("-tt")
    elif tty is False:
        argv.append("-T")
    argv += [f"{grant.login}@{grant.resource}@{host}", *(c for c in command if c != "--")]
    client.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, argv)


@click.command("ssh-config")
@click.option(
    "--broker", default=None, help=f"broker HOST:PORT (default ${BROKER_ENV}, the control plane's, {DEFAULT_BROKER})"
)
@click.option("--broker-host-key", default=None, help="pin the broker's host key: the line or a file")
@click.option(
    "--ssh-dir", default=None, help=f"key, certificates, known_hosts (default ${SSH_DIR_ENV} or ~/.jitgate/ssh)"
)
@handle_errors
@connection_options
def ssh_config(broker: str | None, broker_host_key: str | None, ssh_dir: str | None, client: Any) -> None:
    """Print an OpenSSH config block so plain `ssh TARGET` (scp, sftp, rsync) goes through the broker.

    Fetches current certificates for every ACTIVE ssh grant. Append the output to
    ~/.ssh/config (or `Include` a file you write it to); run again after a new grant.
    """
    directory = ssh_dir_path(ssh_dir)
    grants = active_grants(client)
    latest: dict[tuple[str, str], Any] = {}
    for g in grants:
        key = (g.resource, g.login)
        if key not in latest or _expiry(g) > _expiry(latest[key]):
            latest[key] = g
    logins = {resource: sum(1 for r, _ in latest if r == resource) for resource, _ in latest}
    # An alias two blocks would claim (login `a.b` on `c`, login `a` on `b.c`) names neither.
    claimed = [a for resource, login in latest for a in host_aliases(login, resource, logins[resource])]
    clashes = {a for a in claimed if claimed.count(a) > 1}
    blocks = [f"# jitgate: OpenSSH through the broker (generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)"]
    pinned = False
    for (resource, login), g in sorted(latest.items()):
        if not _config_word(resource) or not _config_word(login):
            echo(f"jitgate: skipped grant {g.id}: `{login}@{resource}` cannot be written into an ssh config",
                 err=True)
            continue
        aliases = [a for a in host_aliases(login, resource, logins[resource]) if a not in clashes]
        if not aliases:
            echo(f"jitgate: skipped grant {g.id}: its host name `{login}.{resource}` would also name another "
                 "grant's block", err=True)
            continue
        cert, from_cert = certificate_for(client, directory, g)
        host, port = broker_address(broker, from_cert)
        if not pinned:
            _ensure_pin(directory, host, port, broker_host_key)
            pinned = True
        blocks.append("\n".join([
            f"Host {' '.join(aliases)}",
            f"    HostName {host}",
            f"    Port {port}",
            f"    User {login}@{resource}",
            *(f"    {key} {value}" for key, value in ssh_settings(directory, cert)),
            f"    # grant {g.id} until {_expiry(g):%Y-%m-%d %H:%M:%S} UTC",
        ]))
    several = sorted(r for r, n in logins.items() if n > 1 and _config_word(r))  # a comment line holds it
    if several:
        blocks.append("\n".join(f"# {r}: several logins are active, so only LOGIN.{r} names one" for r in several))
    if not latest:
        host, port = broker_address(broker, "")
        if broker_host_key or os.environ.get(BROKER_KEY_ENV):
            _ensure_pin(directory, host, port, broker_host_key)
        blocks.append("# no active ssh grants: ask with `jitgate request` or `jitgate ssh TARGET --reason ...`")
    click.echo("\n\n".join(blocks))
