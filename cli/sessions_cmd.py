"""`jitgate sessions list/show` (and sub-commands other parts plug in, e.g. `watch`).

Other packages add a sub-command with one line in SUBCOMMANDS (`name -> "module:attr"`);
it is imported only when used, like the top-level commands.
"""
from __future__ import annotations

import click

from cli.client import Client, command_options, print_json, print_table, to_dict
from cli.main import LazyGroup
from cli.output import echo
from cli.render import SESSION_COLUMNS, session_row

SUBCOMMANDS: dict[str, str] = {
    "watch": "cli.session_watch_cmd:watch",
}


class SessionsGroup(LazyGroup):
    """The `sessions` group: its own commands plus SUBCOMMANDS, lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(click.Group.list_commands(self, ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS:
            import importlib

            module_name, attr = SUBCOMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return click.Group.get_command(self, ctx, name)


@click.group("sessions", cls=SessionsGroup)
def sessions() -> None:
    """Sessions through the brokers: list, show."""


@sessions.command("list")
@click.option("--grant", "grant_id", default="", help="only sessions of this grant")
@click.option("--user", default="", help="only this user's")
@click.option("--resource", default="", help="only on this resource")
@click.option("--live", is_flag=True, help="only sessions still open")
@click.option("--limit", default=50, show_default=True)
@command_options
def sessions_list(client: Client, output: str, grant_id: str, user: str, resource: str, live: bool,
                  limit: int) -> None:
    """List sessions you may see."""
    from jitgate.v1 import access_pb2

    resp = client.access.ListSessions(access_pb2.ListSessionsRequest(
        grant_id=grant_id, user=user, resource=resource, live_only=live, page_size=limit), timeout=client.timeout)
    if output == "json":
        print_json({"sessions": [to_dict(s) for s in resp.sessions]})
    else:
        print_table("sessions", SESSION_COLUMNS, (session_row(s) for s in resp.sessions))


@sessions.command("show")
@click.argument("id")
@command_options
def sessions_show(client: Client, output: str, id: str) -> None:
    """Show session ID."""
    from jitgate.v1 import access_pb2

    s = client.access.GetSession(access_pb2.GetSessionRequest(id=id), timeout=client.timeout)
    if output == "json":
        print_json(s)
    else:
        print_table(f"session {s.id}", SESSION_COLUMNS, [session_row(s)])
        if s.recording_ref:
            echo(f"recording: {s.recording_ref} ({s.recording_hash})")
