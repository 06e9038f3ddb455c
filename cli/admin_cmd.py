"""`jitgate admin issue-identity/ssh-ca/rotate-ssh-ca`: identities and CA keys.

The first two work locally against the data directory (the first admin is made
this way, before anyone can call the server) or, with `--remote`, over gRPC with
an admin identity. Rotation is local only, with the server stopped: the server
holds its CAs in memory and one process alone may sign with a CA directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.client import connect, handle_errors, print_json
from cli.migrate_cmd import migrate
from cli.output import echo


class _NoPolicies:
    """A stand-in PolicyHolder for a short-lived local core that only writes audit events."""

    current: Any = None


def _data_dir(value: str | None) -> Any:
    from controlplane.config import default_data_dir
    from controlplane.identity import DataDir

    return DataDir(Path(value).expanduser() if value else default_data_dir())


def _local_core(data_dir: Any) -> Any:
    """A short-lived core on the data directory's store, for audit events written without the server."""
    from controlplane.server import open_core

    return open_core(data_dir, _NoPolicies(), None, with_recommender=False)


def record_identity_issued_locally(data_dir: Any, actor: str, name: str) -> None:
    """Audit an identity issued without the server."""
    core = _local_core(data_dir)
    try:
        core.audit.record_identity_issued(actor, name)
    finally:
        core.ledger.store.close()


def issue_identity_locally(data_dir: Any, name: str, out: Path, days: int, actor: str = "local-admin") -> Path:
    """Issue a client bundle from the data directory's X.509 CA (created on first use) and audit it."""
    from controlplane.identity import issue_identity_bundle, open_x509_ca

    path = issue_identity_bundle(open_x509_ca(data_dir), name, out, days)
    record_identity_issued_locally(data_dir, actor, name)
    return path


@click.group("admin")
def admin() -> None:
    """Identities, CA keys and the store's schema."""


admin.add_command(migrate)  # `jitgate admin migrate` (cli/migrate_cmd.py)


@admin.command("issue-identity")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="directory for ca.pem, cert.pem, key.pem")
@click.option("--days", default=90, show_default=True, help="certificate validity")
@click.option(
    "--data-dir", default=None, help="local: the server's data directory (default $JITGATE_DATA_DIR or ~/.jitgate)"
)
@click.option("--remote", is_flag=True, help="ask the server over gRPC (needs an admin identity)")
@click.option("--identity", default=None, type=click.Path(file_okay=False), help="with --remote: your identity bundle")
@click.option("--server", default=None, help="with --remote: the server")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table")
@handle_errors
def issue_identity(name: str, out: str, days: int, data_dir: str | None, remote: bool, identity: str | None,
                   server: str | None, output: str) -> None:
    """Write a client certificate bundle for identity NAME into --out."""
    if remote:
        from ca.x509 import CertBundle, write_identity_bundle
        from jitgate.v1 import admin_pb2

        client = connect(identity, server)
        try:
            resp = client.admin.IssueIdentity(
                admin_pb2.IssueIdentityRequest(name=name, days=days), timeout=client.timeout
            )
        finally:
            client.close()
        path = write_identity_bundle(
            CertBundle(resp.cert_pem.encode(), resp.key_pem.encode()), resp.ca_pem.encode(), Path(out)
        )
    else:
        path = issue_identity_locally(_data_dir(data_dir), name, Path(out), days)
    if output == "json":
        print_json({"name": name, "identity": str(path), "days": days})
    else:
        echo(f"identity `{name}` written to {path} (use --identity {path} or JITGATE_IDENTITY={path})")


@admin.command("ssh-ca")
@click.option("--upstream", is_flag=True, help="the upstream CA: the line targets put in sshd's TrustedUserCAKeys")
@click.option("--data-dir", default=None, help="local: the server's data directory")
@click.option("--remote", is_flag=True, help="ask the server over gRPC")
@click.option("--identity", default=None, type=click.Path(file_okay=False))
@click.option("--server", default=None)
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table")
@handle_errors
def ssh_ca(upstream: bool, data_dir: str | None, remote: bool, identity: str | None, server: str | None,
           output: str) -> None:
    """Print the SSH user CA (or --upstream CA) public key lines."""
    if remote:
        from jitgate.v1 import admin_pb2

        client = connect(identity, server)
        try:
            lines = list(
                client.admin.GetSshCa(
                    admin_pb2.GetSshCaRequest(upstream=upstream), timeout=client.timeout
                ).public_key_lines
            )
        finally:
            client.close()
    else:
        from controlplane.identity import open_ssh_cas

        user_ca, upstream_ca = open_ssh_cas(_data_dir(data_dir))
        lines = (upstream_ca if upstream else user_ca).trusted_public_key_lines()
    if output == "json":
        print_json({"public_key_lines": lines, "upstream": upstream})
    else:
        for line in lines:
            click.echo(line)


@admin.command("rotate-ssh-ca")
@click.option(
    "--upstream", is_flag=True, help="rotate the upstream CA (targets' TrustedUserCAKeys) instead of the user CA"
)
@click.option("--drop-old", is_flag=True, help="stop trusting the old key at once (a key believed compromised)")
@click.option("--data-dir", default=None, help="the server's data directory (default $JITGATE_DATA_DIR or ~/.jitgate)")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table")
@handle_errors
def rotate_ssh_ca(upstream: bool, drop_old: bool, data_dir: str | None, output: str) -> None:
    """Make a new SSH CA signing key; the old one stays trusted until its last certificate expires.

    Run it with the server stopped; brokers pick up the trusted keys when they
    re-sync with the restarted server. After rotating the upstream CA, put the
    printed lines in the targets' TrustedUserCAKeys.
    """
    from controlplane.identity import open_ssh_cas
    from controlplane.server import DataDirLock, StartError

    data = _data_dir(data_dir)
    try:
        lock = DataDirLock.acquire(data)
    except StartError as exc:
        raise click.ClickException(f"{exc}: stop the server before rotating a CA") from None
    try:
        user_ca, upstream_ca = open_ssh_cas(data)
        ca = upstream_ca if upstream else user_ca
        new_key = ca.rotate(keep_old_trusted=not drop_old)
        trusted = ca.trusted_public_key_lines()
        core = _local_core(data)
        try:
            core.audit.record_ca_rotated("local-admin", ca.name, new_key, trusted)
        finally:
            core.ledger.store.close()
    finally:
        lock.release()
    if output == "json":
        print_json({"ca": ca.name, "new_key": new_key, "trusted": trusted})
    else:
        click.echo(f"{ca.name} rotated; it now signs with:\n  {new_key}\ntrusted until their last certificates expire:")
        for line in trusted:
            click.echo(f"  {line}")
