"""The `jitgate` command.

Sub-commands live one concept per file in this package and are imported only
when used, so `jitgate policy check` does not pay for gRPC or LightGBM.

A command line click refuses (a malformed `--duration`, an unknown option or
command, a missing argument) is one `error:` line naming the option and the
command's `--help`, with exit code 1, as every other error is (`OneLineError`).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

# name -> "module:attribute" of a click command or group. One line per command.
COMMANDS: dict[str, str] = {
    "server": "cli.server_cmd:server",
    "request": "cli.access_cmd:request_cmd",
    "approve": "cli.access_cmd:approve",
    "deny": "cli.access_cmd:deny",
    "cancel": "cli.access_cmd:cancel",
    "extend": "cli.access_cmd:extend",
    "revoke": "cli.access_cmd:revoke",
    "lock": "cli.lock_cmd:lock",
    "unlock": "cli.lock_cmd:unlock",
    "release": "cli.release_cmd:release",
    "locks": "cli.lock_cmd:locks",
    "review": "cli.access_cmd:review",
    "requests": "cli.access_cmd:requests",
    "dashboard": "cli.access_cmd:dashboard",
    "whoami": "cli.access_cmd:whoami",
    "login": "cli.login_cmd:login",
    "logout": "cli.login_cmd:logout",
    "sessions": "cli.sessions_cmd:sessions",
    "audit": "cli.audit_cmd:audit",
    "admin": "cli.admin_cmd:admin",
    "policy": "cli.policy_cmd:policy",
    "replay": "cli.replay_cmd:replay",
    "recordings": "cli.replay_cmd:recordings",
    "recommend": "cli.recommend_cmd:recommend",
    "ssh": "cli.ssh_cmd:ssh",
    "ssh-config": "cli.ssh_cmd:ssh_config",
    "ssh-broker": "cli.ssh_broker_cmd:ssh_broker",
    "psql": "cli.pg_cmd:psql",
    "db-connect": "cli.pg_cmd:db_connect",
    "pg-broker": "cli.pg_cmd:pg_broker",
    "demo": "cli.demo_cmd:demo",
    "web": "cli.web_cmd:web",
}


class OneLineError(click.ClickException):
    """Any click error shown as one `error: ...` line on stderr (text made visible), exit code 1."""

    exit_code = 1

    @classmethod
    def of(cls, exc: click.ClickException) -> OneLineError:
        message = exc.format_message()
        if message[:1].isupper() and message[1:2].islower():
            message = message[0].lower() + message[1:]  # click's "Invalid value ..." -> "invalid value ..."
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and ctx is not None:
            message = f"{message.rstrip('.')} (see `{ctx.command_path} --help`)"
        return cls(message)

    def show(self, file: object = None) -> None:
        from cli.output import echo

        echo(f"error: {self.format_message()}", err=True)


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use; click's errors below it are
    one line (`OneLineError`)."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except OneLineError:
            raise
        except click.ClickException as exc:
            raise OneLineError.of(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OneLineError:
            raise
        except click.ClickException as exc:
            raise OneLineError.of(exc) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module_name, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="jitgate")
def cli() -> None:
    """jitgate: just-in-time privileged access to SSH hosts and databases."""


# Services keep gRPC's own log lines. Any other command says one `error:` line, so gRPC's core
# (which logs a failed TLS handshake to stderr) stays quiet unless GRPC_VERBOSITY asks otherwise;
# it reads the variable once, when it loads, which is why this is set before any command is.
SERVICES = frozenset({"server", "ssh-broker", "pg-broker"})


def main() -> None:
    if not SERVICES & set(sys.argv[1:2]):
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    cli(prog_name="jitgate")


if __name__ == "__main__":
    main()
