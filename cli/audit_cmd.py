"""`jitgate audit list/verify/export/export-requests`: the hash-chained audit log (admins)."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from cli.client import Client, command_options, print_json, print_table, when
from cli.output import echo, safe_json, to_dict


def audit_line(event: Any) -> dict[str, Any]:
    """An audit event as JSON data (`to_dict`, so `at` is the RFC 3339 form its hash covers), with
    its data decoded rather than a string."""
    line = to_dict(event)
    line["data"] = json.loads(line.pop("data_json") or "{}")
    return line


@click.group("audit")
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("list")
@click.option("--type", "type_", default="", help="only events of this type")
@click.option("--subject", default="", help="only events about this request/session/policy")
@click.option("--after", default=0, help="only events after this sequence number")
@click.option("--limit", default=100, show_default=True)
@command_options
def audit_list(client: Client, output: str, type_: str, subject: str, after: int, limit: int) -> None:
    """List audit events in order."""
    from jitgate.v1 import audit_pb2

    resp = client.audit.ListEvents(audit_pb2.ListEventsRequest(
        after_seq=after, type=type_, subject=subject, page_size=limit), timeout=client.timeout)
    if output == "json":
        print_json({"events": [audit_line(e) for e in resp.events], "last_seq": resp.last_seq})
        return
    print_table("audit events", ["seq", "at", "type", "actor", "subject", "data"], (
        [e.seq, when(e.at), e.type, e.actor, e.subject, e.data_json[:80]] for e in resp.events))


@audit.command("verify")
@command_options
def audit_verify(client: Client, output: str) -> None:
    """Check the hash chain; exit 1 when any event was edited, removed or reordered."""
    from jitgate.v1 import audit_pb2

    resp = client.audit.VerifyChain(audit_pb2.VerifyChainRequest(), timeout=max(client.timeout, 300))
    if output == "json":
        print_json(resp)
    elif resp.ok:
        click.echo(f"audit chain ok: {resp.events} events")
    else:
        click.echo(f"audit chain BROKEN ({resp.events} events checked):", err=True)
        for problem in resp.problems:
            echo(f"  {problem}", err=True)
    if not resp.ok:
        sys.exit(1)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--after", default=0, help="only events after this sequence number")
@click.option("--identity", "identity", type=click.Path(file_okay=False), default=None)
@click.option("--server", default=None)
def audit_export(fmt: str, after: int, identity: str | None, server: str | None) -> None:
    """Stream every audit event as JSON lines on stdout."""
    from cli.client import connect, handle_errors
    from jitgate.v1 import audit_pb2

    @handle_errors
    def run() -> None:
        client = connect(identity, server)
        try:
            for event in client.audit.ExportEvents(audit_pb2.ExportEventsRequest(after_seq=after)):
                sys.stdout.write(json.dumps(audit_line(event), sort_keys=True) + "\n")
        finally:
            client.close()

    run()


@audit.command("export-requests")
@click.option("--days", default=90, show_default=True, help="how far back")
@click.option("--history", is_flag=True, help="the recommender's history rows instead of POLICY.md requests")
@click.option("--identity", "identity", type=click.Path(file_okay=False), default=None)
@click.option("--server", default=None)
def audit_export_requests(days: int, history: bool, identity: str | None, server: str | None) -> None:
    """Past requests as POLICY.md request JSON lines (for `jitgate policy diff --requests`)."""
    from cli.client import connect, handle_errors
    from jitgate.v1 import audit_pb2

    @handle_errors
    def run() -> None:
        client = connect(identity, server)
        try:
            rpc = client.audit.ExportHistory if history else client.audit.ExportRequests
            req = (audit_pb2.ExportHistoryRequest if history else audit_pb2.ExportRequestsRequest)(days=days)
            for line in rpc(req):
                sys.stdout.write(safe_json(line.json) + "\n")
        finally:
            client.close()

    run()
