"""`jitgate lock`, `jitgate unlock ID` and `jitgate locks`: an admin's kill switch.

    jitgate lock --user alice --reason "laptop stolen"
    jitgate lock --resource orders-db --until 2026-12-05T06:00Z --reason "incident 4411"
    jitgate locks [--all]
    jitgate unlock LOCK_ID --reason "laptop recovered"
"""
from __future__ import annotations

from typing import Any

import click

from cli.client import Client, command_options, fail, print_json, print_table, when
from cli.output import echo
from cli.times import parse_time, timestamp


def _what(lock: Any) -> str:
    return "everything" if lock.target == "all" else f"{lock.target} {lock.value}"


@click.command("lock")
@click.option("--user", "user", default=None, help="lock a user: their sessions end, nothing new starts")
@click.option("--resource", default=None, help="lock a resource")
@click.option("--login", default=None, help="lock an SSH login or a database role, on every resource")
@click.option("--all", "everything", is_flag=True, help="lock everything (an emergency freeze)")
@click.option("--until", default=None, help="RFC 3339 time the lock ends by itself (default: until unlocked)")
@click.option("--reason", "-r", required=True, help="why (shown to whoever is refused)")
@command_options
def lock(client: Client, output: str, user: str | None, resource: str | None, login: str | None,
         everything: bool, until: str | None, reason: str) -> None:
    """Lock a user, resource or login (admins): their live sessions are cut, nothing new starts."""
    from jitgate.v1 import locks_pb2

    chosen = [(t, v) for t, v in (("user", user), ("resource", resource), ("login", login)) if v is not None]
    if everything:
        chosen.append(("all", ""))
    if len(chosen) != 1:
        fail("name exactly one of --user, --resource, --login or --all")
    target, value = chosen[0]
    req = locks_pb2.CreateLockRequest(target=target, value=value or "", reason=reason)
    if until is not None:
        req.until.CopyFrom(timestamp(parse_time(until)))
    resp = client.locks.CreateLock(req, timeout=client.timeout)
    if output == "json":
        print_json(resp)
        return
    lk = resp.lock
    echo(f"locked {_what(lk)} (lock {lk.id})" + (f" until {when(lk.until)}" if lk.HasField("until") else ""))
    if resp.ended_grants:
        echo(f"ended {len(resp.ended_grants)} grant(s): {', '.join(resp.ended_grants)}")


@click.command("unlock")
@click.argument("id")
@click.option("--reason", "-r", default="", help="why the lock is lifted (audited)")
@command_options
def unlock(client: Client, output: str, id: str, reason: str) -> None:
    """Lift lock ID (admins). Grants the lock ended stay ended."""
    from jitgate.v1 import locks_pb2

    lk = client.locks.DeleteLock(locks_pb2.DeleteLockRequest(id=id, reason=reason), timeout=client.timeout)
    if output == "json":
        print_json(lk)
    else:
        echo(f"lifted lock {lk.id} on {_what(lk)}")


@click.command("locks")
@click.option("--all", "include_inactive", is_flag=True, help="lifted and ended locks too")
@command_options
def locks(client: Client, output: str, include_inactive: bool) -> None:
    """List the locks in force (admins)."""
    from jitgate.v1 import locks_pb2

    resp = client.locks.ListLocks(locks_pb2.ListLocksRequest(include_inactive=include_inactive),
                                   timeout=client.timeout)
    if output == "json":
        print_json(resp)
        return
    print_table("locks", ["id", "on", "by", "since", "until", "active", "reason"],
                [[lk.id, _what(lk), lk.created_by, when(lk.created_at), when(lk.until) or "unlocked",
                  "yes" if lk.active else f"no (lifted {when(lk.lifted_at)} by {lk.lifted_by})"
                  if lk.HasField("lifted_at") else "no", lk.reason] for lk in resp.locks])
