"""`jitgate request/approve/deny/cancel/extend/revoke/review/requests/dashboard/whoami`."""
from __future__ import annotations

import datetime as dt
from typing import Any

import click

from cli import exits
from cli.client import (
    DURATION,
    Client,
    command_options,
    connect,
    duration_message,
    handle_errors,
    print_json,
    print_table,
    span,
    to_dict,
)
from cli.output import echo
from cli.render import (
    extension_outcome,
    outcome,
    pending_extension,
    print_outcome,
    print_request,
    print_requests,
    state_name,
)

STATES = ["PENDING", "ACTIVE", "DENIED", "CANCELLED", "TIMED_OUT", "EXPIRED", "REVOKED"]


def _exit_if_denied(req: Any) -> None:
    """A denied request exits `exits.DENIED` (after its outcome is shown), so `jitgate request ... &&` stops."""
    from jitgate.v1 import types_pb2

    if req.state == types_pb2.REQUEST_STATE_DENIED:
        raise click.exceptions.Exit(exits.DENIED)


def _show(client: Client, req: Any, output: str) -> None:
    if output == "json":
        print_json(req)
    else:
        print_outcome(req)


@click.command("request")
@click.argument("resource")
@click.option("--login", default="", help="SSH login on the resource")
@click.option("--role", default="", help="database role on the resource")
@click.option("--duration", "-d", type=DURATION, default=None,
              help="how long, e.g. 30m or 1h30m (default: the recommendation)")
@click.option("--reason", "-r", required=True, help="why you need access")
@click.option("--ticket", default="", help="ticket reference")
@click.option("--emergency", is_flag=True, help="break-glass: active at once if policy allows, reviewed afterwards")
@click.option("--dry-run", is_flag=True, help="show the decision and recommendation, store nothing")
@click.option("--start", default=None, help="a scheduled window: when access begins (RFC 3339, 2026-12-05T22:00Z)")
@command_options
def request_cmd(client: Client, output: str, resource: str, login: str, role: str, duration: dt.timedelta | None,
                reason: str, ticket: str, emergency: bool, dry_run: bool, start: str | None) -> None:
    """Ask for access to RESOURCE; shows who must approve, or until when access is active.

    Exits 4 when the policies deny it (also with --dry-run)."""
    from jitgate.v1 import access_pb2

    msg = access_pb2.CreateRequestRequest(
        resource=resource, login=login, role=role, reason=reason, ticket=ticket, emergency=emergency,
        dry_run=dry_run)
    if duration:
        msg.duration.CopyFrom(duration_message(duration))
    if start is not None:
        from cli.times import parse_time, timestamp

        msg.start.CopyFrom(timestamp(parse_time(start)))
    resp = client.access.CreateRequest(msg, timeout=client.timeout)
    if output == "json":
        print_json(resp)
        _exit_if_denied(resp.request)
        return
    if resp.HasField("recommendation") and not duration:
        rec = resp.recommendation
        note = " (fallback: not enough history)" if rec.fallback else ""
        echo(f"duration {span(rec.duration)} recommended{note}: {rec.explanation}")
    if dry_run:
        click.echo("dry run: nothing was stored")
    print_outcome(resp.request)
    _exit_if_denied(resp.request)


def decision_target(client: Client, id: str) -> tuple[str, Any | None]:
    """What `approve`/`deny ID` acts on: ID itself, or, when ID is an ACTIVE grant whose extension
    waits, that extension (what the approver means: nothing else of an active grant awaits a vote).
    Returns (the id to send, the grant when it was redirected)."""
    import grpc

    from jitgate.v1 import access_pb2

    try:
        req = client.access.GetRequest(access_pb2.GetRequestRequest(id=id), timeout=client.timeout)
    except grpc.RpcError:
        return id, None  # an extension's id, or one the server refuses with its own words
    ext = pending_extension(req)
    return (ext.id, req) if ext is not None else (id, None)


def _decide(verb: str, rpc_name: str, help_text: str) -> click.Command:
    @click.command(verb, help=help_text)
    @click.argument("id")
    @click.option("--comment", "-c", default="", help="a note kept with the decision")
    @command_options
    def cmd(client: Client, output: str, id: str, comment: str) -> None:
        from jitgate.v1 import access_pb2

        target_id, grant = decision_target(client, id)
        if grant is not None:
            echo(f"request {id} is ACTIVE; its extension {target_id} waits: {verb} {target_id}", err=True)
        req = getattr(client.access, rpc_name)(access_pb2.DecideRequest(id=target_id, comment=comment),
                                               timeout=client.timeout)
        ext = next((e for e in req.extensions if e.id == target_id), None)
        if output == "json":
            print_json(req)
        elif ext is not None:
            for line in extension_outcome(req, ext):
                echo(line)
        else:
            print_outcome(req)

    return cmd


approve = _decide("approve", "Approve", "Approve request (or extension) ID at its current level; the ID of an "
                  "active grant approves its waiting extension.")
deny = _decide("deny", "Deny", "Deny request (or extension) ID; a request ends at once, an active grant keeps "
               "its time; the ID of an active grant denies its waiting extension.")


@click.command("cancel")
@click.argument("id")
@command_options
def cancel(client: Client, output: str, id: str) -> None:
    """Withdraw your own pending request ID."""
    from jitgate.v1 import access_pb2

    _show(client, client.access.Cancel(access_pb2.CancelRequest(id=id), timeout=client.timeout), output)


@click.command("extend")
@click.argument("id")
@click.option("--duration", "-d", type=DURATION, required=True, help="how much longer, e.g. 30m")
@click.option("--justification", "-j", required=True, help="why more time is needed")
@command_options
def extend(client: Client, output: str, id: str, duration: dt.timedelta, justification: str) -> None:
    """Ask for more time on active grant ID (policies decide; may need approval)."""
    from jitgate.v1 import access_pb2

    msg = access_pb2.ExtendRequest(id=id, justification=justification)
    msg.duration.CopyFrom(duration_message(duration))
    req = client.access.Extend(msg, timeout=client.timeout)
    if output == "json":
        print_json(req)
        return
    ext = pending_extension(req)
    for line in extension_outcome(req, ext) if ext is not None else outcome(req):
        echo(line)


@click.command("revoke")
@click.argument("id")
@click.option("--reason", "-r", required=True, help="why access ends early")
@command_options
def revoke(client: Client, output: str, id: str, reason: str) -> None:
    """End grant ID now (admin, or its requester); live sessions are cut."""
    from jitgate.v1 import access_pb2

    _show(client, client.access.Revoke(access_pb2.RevokeRequest(id=id, reason=reason), timeout=client.timeout), output)


@click.command("review")
@click.argument("id")
@click.option("--flag", is_flag=True, help="flag the break-glass use as suspicious (default: reviewed, fine)")
@click.option("--comment", "-c", required=True, help="the review's finding")
@command_options
def review(client: Client, output: str, id: str, flag: bool, comment: str) -> None:
    """Review break-glass grant ID after the fact."""
    from jitgate.v1 import access_pb2

    req = client.access.Review(access_pb2.ReviewRequest(id=id, flag=flag, comment=comment), timeout=client.timeout)
    if output == "json":
        print_json(req)
    else:
        print_request(req)


def _list_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--to-approve", is_flag=True, help="only what you may approve now"),
        click.option("--mine", is_flag=True, help="only your own requests"),
        click.option("--user", default="", help="only this requester's"),
        click.option("--resource", default="", help="only on this resource"),
        click.option("--state", "states", multiple=True, type=click.Choice(STATES, case_sensitive=False),
                     help="only in this state (repeatable)"),
        click.option("--limit", default=50, show_default=True, help="how many at most"),
    ]):
        f = opt(f)
    return f


def _list(client: Client, output: str, to_approve: bool, mine: bool, user: str, resource: str,
          states: tuple[str, ...], limit: int) -> None:
    from jitgate.v1 import access_pb2, types_pb2

    found: list[Any] = []
    token = ""
    while len(found) < limit:
        resp = client.access.ListRequests(access_pb2.ListRequestsRequest(
            to_approve=to_approve, mine=mine, user=user, resource=resource,
            # protobuf's stubs type Value() as int; the enum field takes exactly those ints.
            states=[types_pb2.RequestState.Value(f"REQUEST_STATE_{s.upper()}") for s in states],  # type: ignore[misc]
            page_size=min(limit - len(found), 500), page_token=token), timeout=client.timeout)
        found.extend(resp.requests)
        token = resp.next_page_token
        if not token:
            break
    if output == "json":
        print_json({"requests": [to_dict(r) for r in found]})
    else:
        print_requests("requests to approve" if to_approve else "requests", found, to_approve=to_approve)


@click.group("requests", invoke_without_command=True)
@_list_options
@click.option(
    "--identity", "identity", type=click.Path(file_okay=False), default=None, help="identity bundle directory"
)
@click.option("--server", "server", default=None, help="server host:port")
@click.option("--output", "-o", "output", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def requests(ctx: click.Context, identity: str | None, server: str | None, output: str, **filters: Any) -> None:
    """List requests (same as `requests list`), or `requests show ID`."""
    if ctx.invoked_subcommand is not None:
        return  # the sub-command connects with its own options

    @handle_errors
    def run() -> None:
        client = connect(identity, server)
        try:
            _list(client, output, **filters)
        finally:
            client.close()

    run()


@requests.command("list")
@_list_options
@command_options
def requests_list(client: Client, output: str, **filters: Any) -> None:
    """List requests you may see, newest first."""
    _list(client, output, **filters)


@requests.command("show")
@click.argument("id")
@command_options
def requests_show(client: Client, output: str, id: str) -> None:
    """Show request ID with its approvals and extensions."""
    from jitgate.v1 import access_pb2

    req = client.access.GetRequest(access_pb2.GetRequestRequest(id=id), timeout=client.timeout)
    if output == "json":
        print_json(req)
    else:
        print_request(req)


@click.command("dashboard")
@command_options
def dashboard(client: Client, output: str) -> None:
    """Active grants, pending requests, recent expiries, approval rate, reviews owed."""
    from jitgate.v1 import access_pb2

    d = client.access.GetDashboard(access_pb2.GetDashboardRequest(), timeout=client.timeout)
    if output == "json":
        print_json(d)
        return
    print_table("dashboard", ["metric", "value"], [
        ["active grants", len(d.active)], ["pending requests", len(d.pending)],
        ["expired in the last 24h", d.expired_24h], ["average granted", f"{d.avg_granted_minutes:.1f} min"],
        ["average used", f"{d.avg_used_minutes:.1f} min"], ["approval rate", f"{d.approval_rate:.0%}"],
        ["break-glass reviews owed", len(d.reviews_owed)],
    ])
    if d.active:
        print_requests("active", list(d.active))
    if d.pending:
        print_requests("pending", list(d.pending))
    if d.reviews_owed:
        print_requests("reviews owed", list(d.reviews_owed))


@click.command("whoami")
@command_options
def whoami(client: Client, output: str) -> None:
    """Your identity as the server sees it: name, groups and roles."""
    from cli.login_cmd import identity_source
    from jitgate.v1 import access_pb2

    me = client.access.WhoAmI(access_pb2.WhoAmIRequest(), timeout=client.timeout)
    source, expires = identity_source(client.identity) if client.identity else ("none", None)
    if output == "json":
        print_json({**to_dict(me), "source": source, "expires_at": expires})
    else:
        echo(f"{me.name} (groups: {', '.join(me.groups) or '-'}; roles: {', '.join(me.roles)})")
        if expires is not None:
            how = "signed in (oidc)" if source == "oidc" else "bundle issued by an admin"
            echo(f"identity: {how}, valid until {expires.strftime('%Y-%m-%d %H:%M UTC')}")


__all__ = ["approve", "cancel", "dashboard", "deny", "extend", "request_cmd", "requests", "review", "revoke",
           "state_name", "whoami"]
