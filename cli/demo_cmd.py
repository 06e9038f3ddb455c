"""`jitgate demo`: the whole gateway on one machine, with its embedded defaults.

It runs, as child processes: the control plane (SQLite store and CAs made on
first start in the data directory, the example policies), a local SSH target
(a real OpenSSH sshd when installed, else an asyncssh one) that trusts only the
upstream CA, the SSH broker and the PostgreSQL broker, a local OpenID provider
(scripts/setup.sh installs it) and the web console (`jitgate web`, HTTPS with a
certificate from the demo's CA; people sign in through that provider); issues
identities for the example's people; and prints what to type next. Ctrl-C stops
everything. `--no-oidc` (or JITGATE_DEMO_OIDC=0) leaves out the provider, and
with it sign-ins and the console.

The example's `demo` resource names a placeholder address and no host key: the
demo writes a copy of the policies with the target's real address and pinned
host key into its data directory, and serves that copy.

Unless a passphrase source is set (JITGATE_CA_PASSPHRASE, _FILE or _COMMAND),
each data directory keeps its key passphrase in a `passphrase` file beside its
keys, and each service logs a warning saying so. That is acceptable for a demo
whose keys guard nothing beyond this machine; production keeps the passphrase
outside the data directory (ca/keystore.py says why).
"""
from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

DEMO_PEOPLE = ("alice", "bob", "sam", "cora", "admin")
BROKER = "broker"


def _jitgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def _write_demo_policies(source: Path, out: Path, target_address: str, host_key: str, login: str) -> None:
    """A copy of the example policies pointing `demo` at the demo target and `demo-db` at a database.

    The target runs as the current user, who is the only login it can accept
    (unless that is root), so that login is added to the resource's logins.
    """
    doc = yaml.safe_load(source.read_text())
    resources = doc.get("resources", {})
    demo, demo_db = resources.get("demo"), resources.get("demo-db")
    if demo is None or demo_db is None:
        raise click.ClickException(f"{source} needs the `demo` and `demo-db` resources the demo points at")
    demo["address"] = target_address
    demo["host_key"] = host_key
    demo["logins"] = sorted(set(demo.get("logins", [])) | {login})
    demo_db.setdefault("database", "postgres")
    out.write_text(
        f"# Written by `jitgate demo` from {source}: do not edit.\n{yaml.safe_dump(doc, sort_keys=False)}"
    )


def _wait_for_port(address: str, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30.0) -> None:
    import socket

    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise click.ClickException(f"{what} exited with {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"{what} did not listen on {address} within {timeout:.0f}s; see {log}"
                ) from None
            time.sleep(0.05)


def _prepare_demo_database(dsn_host: str, dsn_port: str) -> bool:
    """Create the example's database roles on the local PostgreSQL, if one is reachable with trust auth."""
    sql = (
        "DO $$ BEGIN "
        "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'readonly') THEN CREATE ROLE readonly LOGIN; END IF; "
        "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'readwrite') THEN CREATE ROLE readwrite LOGIN; END IF; "
        "END $$; GRANT pg_read_all_data TO readonly; GRANT pg_read_all_data, pg_write_all_data TO readwrite;"
    )
    try:
        done = subprocess.run(["psql", "-h", dsn_host, "-p", dsn_port, "-U", "postgres", "-d", "postgres",
                               "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _ensure_duration_model(server_dir: Path, policies: Path) -> None:
    """Give a fresh demo a trained duration model (synthetic history about the example's people)."""
    from cli.demo_model import ensure_demo_model
    from recommend.errors import RecommendError

    try:
        model = ensure_demo_model(server_dir, policies)
    except RecommendError as exc:
        click.echo(f"warning: no duration model ({exc}); recommendations are fallbacks", err=True)
        return
    if model.trained:
        click.echo(f"trained the demo's duration model {model.version} on {model.train_rows} synthetic grants")


def demo_oidc_text(oidc: bool, jg: str, login_port: int, identities: Path) -> str:
    """How to sign in (the provider runs), else how to turn it on."""
    if not oidc:
        return ("\nSign-ins and the web console need the local OpenID provider: run the demo without --no-oidc "
                "(scripts/setup.sh installs the provider).\n")
    from cli import demo_oidc

    return demo_oidc.instructions(jg, login_port, identities / "alice" / "ca.pem", identities) + "\n"


def console_text(oidc: bool, url: str, ca: Path) -> str:
    if not oidc:
        return ""
    return f"""
  web console       {url}   (sign in as alice, bob, sam or admin; password NAME-demo)
                    its certificate is from the demo's CA ({ca}): trust that CA or accept the warning"""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command("demo")
@click.option("--data-dir", default=".jitgate/demo", show_default=True, type=click.Path(file_okay=False),
              help="everything the demo makes: CAs, store, identities, recordings")
@click.option("--policies", default="policies.yaml", show_default=True, type=click.Path(exists=True),
              help="the example policies to serve")
@click.option("--server-port", default=7443, show_default=True)
@click.option("--ssh-port", default=2222, show_default=True)
@click.option("--pg-port", default=6432, show_default=True)
@click.option("--web-port", default=8443, show_default=True, help="the web console's HTTPS port")
@click.option("--oidc/--no-oidc", default=True, show_default=True, envvar="JITGATE_DEMO_OIDC",
              help="run the local OpenID provider, sign-ins (`jitgate login`, on --server-port + 1) and the console")
def demo(data_dir: str, policies: str, server_port: int, ssh_port: int, pg_port: int, web_port: int,
         oidc: bool) -> None:
    """Run the control plane, both brokers, a local SSH target, the OpenID provider and the web
    console; Ctrl-C stops them."""
    from broker.demo_target import DemoTarget, free_port

    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    server_dir = data / "server"
    identities = data / "identities"
    server_address = f"127.0.0.1:{server_port}"
    env = {**os.environ, "JITGATE_SERVER": server_address, "DEMO_DB": "postgresql:///?sslmode=disable"}
    children: list[subprocess.Popen[bytes]] = []
    target = DemoTarget.create(data / "target")
    # `kill` (SIGTERM) stops the demo as cleanly as Ctrl-C: no child left behind.
    signal.signal(signal.SIGTERM, _interrupt)

    def start(name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = logs / f"{name}.log"
        proc = subprocess.Popen(_jitgate(*args), env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        children.append(proc)
        return proc, log

    try:
        target_port = free_port()
        served = data / "policies.yaml"
        login = getpass.getuser()
        _write_demo_policies(Path(policies), served, f"127.0.0.1:{target_port}", target.host_key_line, login)

        for name in (*DEMO_PEOPLE, BROKER):
            out = identities / name
            if not (out / "cert.pem").exists():
                subprocess.run(
                    _jitgate("admin", "issue-identity", name, "--out", str(out), "--data-dir", str(server_dir)),
                    env=env,
                    check=True,
                    capture_output=True,
                )
        _ensure_duration_model(server_dir, served)
        upstream = subprocess.run(_jitgate("admin", "ssh-ca", "--upstream", "--data-dir", str(server_dir)),
                                  env=env, check=True, capture_output=True, text=True).stdout.split("\n")
        target.set_trusted_ca([line for line in upstream if line.strip()])
        target.start(port=target_port)

        console_url = f"https://127.0.0.1:{web_port}"
        config = data / "server.yaml"
        settings: dict[str, Any] = {"ssh_broker_address": f"127.0.0.1:{ssh_port}",
                                    "pg_broker_address": f"127.0.0.1:{pg_port}"}
        if oidc:  # the provider runs for the demo's life, like the other children
            from cli import demo_oidc

            provider, issuer = demo_oidc.start_provider(data, logs / "oidc-provider.log", console_url)
            children.append(provider)  # type: ignore[arg-type]  # a text-mode Popen; only polled and killed
            settings.update(demo_oidc.server_settings(issuer, server_port + 1))
        config.write_text(yaml.safe_dump(settings))
        server, server_log = start("server", "server", "--data-dir", str(server_dir), "--policies", str(served),
                                   "--listen", server_address, "--config", str(config))
        _wait_for_port(server_address, server, "the control plane", server_log)
        broker_identity = str(identities / BROKER)
        ssh_broker, ssh_log = start("ssh-broker", "ssh-broker", "--listen", f"127.0.0.1:{ssh_port}",
                                    "--identity", broker_identity, "--server", server_address,
                                    "--data-dir", str(data / "ssh-broker"))
        db_ready = _prepare_demo_database("127.0.0.1", "5432")
        pg_broker, pg_log = start("pg-broker", "pg-broker", "--listen", f"127.0.0.1:{pg_port}",
                                  "--identity", broker_identity, "--server", server_address,
                                  "--data-dir", str(data / "pg-broker"), "--issue-tls-from", str(server_dir),
                                  "--credentials-env", "DEMO_DB")
        _wait_for_port(f"127.0.0.1:{ssh_port}", ssh_broker, "the SSH broker", ssh_log)
        _wait_for_port(f"127.0.0.1:{pg_port}", pg_broker, "the PostgreSQL broker", pg_log)
        if oidc:  # the console: a client of the control plane, people sign in through the provider
            console, console_log = start("web", "web", "--listen", f"127.0.0.1:{web_port}", "--server",
                                         server_address, "--login-server", f"127.0.0.1:{server_port + 1}",
                                         "--issue-tls-from", str(server_dir), "--data-dir", str(data / "web"))
            _wait_for_port(f"127.0.0.1:{web_port}", console, "the web console", console_log)

        jg = sys.argv[0] if Path(sys.argv[0]).name == "jitgate" else f"{sys.executable} -m cli.main"
        console_line = console_text(oidc, console_url, identities / "alice" / "ca.pem")
        click.echo(f"""
jitgate demo is running (data in {data}, logs in {logs}):
  control plane     {server_address}   (mTLS; policies {served})
  SSH broker        127.0.0.1:{ssh_port}
  PostgreSQL broker 127.0.0.1:{pg_port}{'' if db_ready else '   (local PostgreSQL not reachable: demo-db will refuse)'}
  demo SSH target   {target.address}   (trusts only the upstream CA){console_line}

In another terminal:
  export JITGATE_SERVER={server_address} JITGATE_IDENTITY={identities / 'alice'}
  export JITGATE_SSH_BROKER_HOST_KEY={data / 'ssh-broker' / 'ssh_host_ed25519_key.pub'}
  {jg} ssh demo --login {login} --reason "first look"        # auto-approved; every byte recorded
  {jg} psql demo-db --role readonly --reason "first look"   # a database session through the broker
  {jg} request orders-db --role readonly --reason "monthly orders report"   # recommends a duration; needs bob, then sam
  JITGATE_IDENTITY={identities / 'bob'} {jg} requests --to-approve
  JITGATE_IDENTITY={identities / 'admin'} {jg} dashboard
  {jg} recordings list                                      # alice's recordings, through the control plane
  JITGATE_DATA_DIR={data / 'ssh-broker'} {jg} recordings list   # offline: the SSH broker's own disk
{demo_oidc_text(oidc, jg, server_port + 1, identities)}
Ctrl-C stops the demo.""")
        while all(proc.poll() is None for proc in children):
            time.sleep(0.5)
        failed = next(proc for proc in children if proc.poll() is not None)
        argv: list[str] = failed.args  # type: ignore[assignment]  # each started from a list of str (above)
        raise click.ClickException(f"a demo process exited ({' '.join(argv[3:5])}); see {logs}")
    except KeyboardInterrupt:
        click.echo("\nstopping the demo")
    finally:
        for proc in children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in children:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        target.stop()
