"""`jitgate release ID`: give a grant back before its end (its requester)."""
from __future__ import annotations

import click

from cli.client import Client, command_options, print_json
from cli.render import print_outcome


@click.command("release")
@click.argument("id")
@command_options
def release(client: Client, output: str, id: str) -> None:
    """End your grant ID now: you are done. Live sessions are cut; it does not count as a revocation."""
    from jitgate.v1 import lifecycle_pb2

    req = client.lifecycle.Release(lifecycle_pb2.ReleaseRequest(id=id), timeout=client.timeout)
    if output == "json":
        print_json(req)
    else:
        print_outcome(req)
