"""`jitgate sessions watch SESSION`: follow a live session as it happens.

The control plane decides who may see the session (GetSession). By default the
bytes come through the control plane (RecordingService.WatchRecording: the broker
uploads small parts every 0.1 s while someone watches); with `--data-dir` (or
$JITGATE_DATA_DIR) they are read from the broker's data directory on its machine.
Terminal output is replayed raw; exec streams, sftp operations and
notes (warnings, cuts) as lines. Ends when the session's recording is sealed.
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from cli.client import command_options, fail
from cli.output import echo, visible


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("JITGATE_DATA_DIR") or "~/.jitgate").expanduser()


def render(event: Any, out: Any = None) -> None:
    """Write one recording event to the terminal: terminal output and exec streams raw (what the
    session showed), everything jitgate says about it (marks, sftp paths, notes) literally."""
    from recorder import ExecData, ExecExit, Note, SftpOp, TerminalEvent

    out = out or sys.stdout.buffer
    if isinstance(event, TerminalEvent):
        if event.code == "o":
            out.write(event.data.encode("utf-8", "replace"))
        elif event.code == "m":
            out.write(f"\r\n[jitgate] {visible(event.data)}\r\n".encode())
        elif event.code == "r":
            out.write(f"\r\n[jitgate] terminal resized to {visible(event.data)}\r\n".encode())
    elif isinstance(event, ExecData):
        if event.stream != "stdin":
            out.write(event.data)
    elif isinstance(event, ExecExit):
        out.write(f"[jitgate] exit {event.status if event.signal is None else 'signal ' + event.signal}\n".encode())
    elif isinstance(event, SftpOp):
        target = f" -> {event.target}" if event.target else ""
        size = f" ({event.bytes} bytes)" if event.bytes else ""
        status = "" if event.ok else f" FAILED: {event.error}"
        out.write(f"{visible(f'[sftp] {event.op} {event.path}{target}{size}{status}')}\n".encode())
    elif isinstance(event, Note):
        out.write(f"[jitgate] {visible(event.text)}\n".encode())
    out.flush()


async def follow(store: Any, ref: str) -> None:
    async for event in store.follow(ref, poll_interval=0.1):
        render(event)


def _watch_remote(client: Any, output: str, session_id: str) -> None:
    """Through the control plane (admins, auditors, the session's user): the broker uploads small
    parts often while someone watches."""
    from cli.remote_recordings import RemoteRecordingStore
    from recorder import RecordingError

    store = RemoteRecordingStore(client)
    refs = store.refs_for(session_id)
    if not refs:
        fail(f"no recording of session `{session_id}` that you may watch has reached the control plane "
             "(yet: a session's first part arrives within seconds)")
    info = store.info(refs[-1])
    if output == "table":
        echo(visible(f"[jitgate] session {session_id}: {info.metadata.get('user', '')} on {info.where}"
                     f"{'' if not info.end_reason else ' (ended: ' + info.end_reason + ')'}"), err=True)
    try:
        for event in store.follow(refs[-1]):
            render(event)
    except RecordingError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@click.command("watch")
@click.argument("session_id")
@click.option(
    "--data-dir", default=None,
    help="read the broker's data directory offline (default $JITGATE_DATA_DIR; neither: through the control plane)"
)
@command_options
def watch(client: Any, output: str, session_id: str, data_dir: str | None) -> None:
    """Follow SESSION live from its recording: through the control plane (admins, the auditors group,
    the session's own user), or from a broker's --data-dir (admins and the grant's approvers)."""
    from jitgate.v1 import access_pb2
    from recorder import FileRecordingStore, RecordingError

    if not (data_dir or os.environ.get("JITGATE_DATA_DIR")):
        _watch_remote(client, output, session_id)  # the RecordingService decides who may watch
        return
    session = client.access.GetSession(access_pb2.GetSessionRequest(id=session_id), timeout=client.timeout)
    store = FileRecordingStore(_data_dir(data_dir))
    refs = [session.recording_ref] if session.recording_ref else store.refs_for(session_id)
    if not refs:
        fail(f"no recording of session `{session_id}` in {store.root} (use --data-dir of its broker)")
    if output == "table":
        echo(f"[jitgate] session {session.id}: {session.user} as {session.login} on {session.resource}"
                   f"{'' if not session.end_reason else ' (ended: ' + session.end_reason + ')'}", err=True)
    try:
        asyncio.run(follow(store, refs[-1]))
    except RecordingError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
