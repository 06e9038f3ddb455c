"""What each session option of a decision allows through the SSH broker: the one check.

| option            | allows                                                                   |
| ----------------- | ------------------------------------------------------------------------ |
| `pty`             | a terminal (`ssh -t`, or plain `ssh host` from a terminal). Without it   |
|                   | the certificate lacks `permit-pty` and a pty request is refused.         |
| `exec`            | commands of the user's choosing: a command on the ssh command line       |
|                   | (`ssh host cmd`, with or without `-t`) and a shell without a terminal    |
|                   | (commands piped in: `echo id` into `ssh -T host`).                       |
| `sftp`            | file transfer: the `sftp` subsystem (`sftp`, and `scp` in its default    |
|                   | SFTP mode since OpenSSH 9.0) and the file-transfer programs run as       |
|                   | commands: `scp -O` (legacy scp runs `scp -t`/`scp -f` on the target),    |
|                   | `sftp -s PATH` (runs an sftp-server) and `rsync` (runs `rsync --server`).|
|                   | Those are commands, so they need `exec` too.                             |
| `port_forwarding` | `ssh -L`, `-W` and `-D` (direct-tcpip channels), opened from the target. |
|                   | Remote forwarding (`-R`), agent and X11 forwarding are never allowed.    |

So an interactive terminal shell needs `pty` only; `pty: true, exec: false` allows
nothing else. With `exec` a user can still move bytes with commands of their own
(`cat > f`, `base64`): `sftp: false` removes the transfer protocols, not what
commands can do; every byte of an exec session is recorded either way.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from broker.cpclient import SessionOptions

# Programs that speak a file-transfer protocol over the channel when run as the command.
_TRANSFER_PROGRAMS = frozenset({"scp", "sftp-server"})


@dataclass(frozen=True)
class ChannelRequest:
    """What a session channel asked for: a terminal, a command, a subsystem."""

    terminal: bool
    command: str | None
    subsystem: str | None

    @property
    def transfers_files(self) -> bool:
        return self.subsystem == "sftp" or (self.command is not None and is_transfer_command(self.command))

    @property
    def runs_commands(self) -> bool:
        """A command of the user's choosing: exec, or a shell without a terminal to type into."""
        return self.subsystem is None and (self.command is not None or not self.terminal)


def is_transfer_command(command: str) -> bool:
    """`scp -t /tmp`, `/usr/lib/openssh/sftp-server`, `rsync --server ...`: a transfer program."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if not words:
        return False
    program = os.path.basename(words[0])
    return program in _TRANSFER_PROGRAMS or (program == "rsync" and "--server" in words)


def control_plane_channel(req: ChannelRequest) -> str:
    """The channel AuthorizeSession checks against its option: `sftp` (file transfer, also
    as a command), `exec` (other commands) or `shell` (a terminal shell: `pty`). The broker
    checks every option `refusal` names once authorized."""
    if req.transfers_files:
        return "sftp"
    return "exec" if req.runs_commands else "shell"


def channel_hint(req: ChannelRequest) -> str:
    """Why a request counts as the channel `control_plane_channel` names, when that is not
    obvious to the user ("" when it is): added to the control plane's refusal."""
    if req.subsystem is None and req.transfers_files:
        return "scp -O, sftp-server and rsync transfer files, which is `sftp`"
    if req.subsystem is None and req.command is None and not req.terminal:
        return "a shell without a terminal runs the commands piped into it, which is `exec`; try ssh -t"
    return ""


def refusal(req: ChannelRequest, opts: SessionOptions) -> str:
    """The line a user sees when `opts` do not allow `req`; "" when they do."""
    if req.terminal and not opts.pty:
        hint = "; run a command without -t" if opts.exec else ""
        return f"access refused: a terminal (pty) is not allowed on this grant{hint}"
    if req.transfers_files and not opts.sftp:
        return "access refused: file transfer (sftp, scp, rsync) is not allowed on this grant"
    if req.runs_commands and not opts.exec:
        if req.command is None:
            what = "a shell without a terminal (commands piped into it)"
        else:
            what = "running commands"
        hint = "; connect from a terminal (ssh -t RESOURCE) without a command" if opts.pty else ""
        return f"access refused: {what} is not allowed on this grant{hint}"
    return ""
