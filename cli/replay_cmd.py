"""`jitgate replay` and `jitgate recordings list|search|verify`: recordings after the fact."""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import click
import grpc

from cli.output import Col, echo, json_text, print_table, rfc3339
from recorder.events import Kind, RecordingError, event_to_dict
from recorder.reader import RecordingInfo
from recorder.storage import FileRecordingStore, RecordingFilter

DATA_DIR_HELP = ("a broker's data directory, read offline (default: $JITGATE_DATA_DIR; "
                 "neither set: through the control plane)")


def _local(data_dir: str | None) -> bool:
    """Offline on a broker's disk when --data-dir or $JITGATE_DATA_DIR says so; else through the
    control plane with the caller's identity (the new default: no broker disk needed)."""
    return bool(data_dir or os.environ.get("JITGATE_DATA_DIR"))


def _remote(identity: str | None, server: str | None) -> Any:
    from cli.client import connect
    from cli.remote_recordings import RemoteRecordingStore

    return RemoteRecordingStore(connect(identity, server))


def remote_options(f: Any) -> Any:
    """--identity/--server for reading through the control plane."""
    f = click.option("--server", "server", default=None,
                     help="control plane host:port (default $JITGATE_SERVER)")(f)
    return click.option("--identity", "identity", type=click.Path(file_okay=False), default=None,
                        help="identity bundle (default $JITGATE_IDENTITY or ~/.jitgate/identity)")(f)


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("JITGATE_DATA_DIR") or "~/.jitgate").expanduser()


def _is_recording_path(path: Path) -> bool:
    directory = path if path.is_dir() else path.parent
    return (directory / "meta.json").is_file()


def _resolve(target: str, data_dir: str | None, identity: str | None = None,
             server: str | None = None) -> tuple[Any, list[str]]:
    """A session id, recording ref, or path -> the store and the recordings to show."""
    path = Path(target).expanduser()
    if not _local(data_dir) and not (path.exists() and _is_recording_path(path)):
        remote = _remote(identity, server)
        refs = remote.refs_for(target)
        if not refs:
            raise RecordingError(f"no recording for `{target}` that you may read in {remote.root}")
        return remote, refs
    if path.exists() and _is_recording_path(path):
        # Seals verify against the key of the recording's own data dir and of --data-dir.
        keys = FileRecordingStore(_data_dir(data_dir)).trusted_keys()
        store, ref = FileRecordingStore.for_path(path, trusted_keys=keys)
        return store, [ref]
    store = FileRecordingStore(_data_dir(data_dir))
    refs = store.refs_for(target)
    if not refs:
        raise RecordingError(f"no recording for `{target}` in {store.root}")
    return store, refs


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


# Fields of recording data that hold a unix time; `--output json` writes them as RFC 3339.
_TIME_FIELDS = ("started_at", "ended_at")


def _json_times(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its unix times as RFC 3339 (`rfc3339`), as every `--output json` writes times."""
    return {k: rfc3339(v) if k in _TIME_FIELDS and isinstance(v, (int, float)) else v for k, v in data.items()}


def _offset(t: float) -> str:
    minutes, seconds = divmod(t, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{seconds:06.3f}" if hours else f"{minutes:02d}:{seconds:06.3f}"


def _fail(message: str) -> None:
    echo(f"jitgate: {message}", err=True)
    sys.exit(1)


def _who(info: RecordingInfo) -> str:
    who = info.metadata.get("user", "")
    return f"{who} -> {info.where}" if info.where else who


# ---------------------------------------------------------------- replay


@click.command()
@click.argument("session_or_path")
@click.option("--speed", type=float, default=1.0, show_default=True, help="playback speed factor")
@click.option("--idle-limit", type=float, default=None, help="cap pauses at this many seconds")
@click.option("--verify", "verify_first", is_flag=True,
              help="check integrity first; exit 1 on any problem")
@click.option("--expect-hash", default=None, help="final hash reported at session end (audit log)")
@click.option("--data-dir", default=None, help=DATA_DIR_HELP)
@click.option("--output", type=click.Choice(["table", "text", "json"]), default="table",
              show_default=True, help="table: play terminals, tables for others; text: no timing")
@remote_options
def replay(session_or_path: str, speed: float, idle_limit: float | None, verify_first: bool,
           expect_hash: str | None, data_dir: str | None, output: str, identity: str | None = None,
           server: str | None = None) -> None:
    """Play a session's recordings: terminals with real timing, exec, sftp and
    database sessions as timelines."""
    if speed <= 0:
        _fail("--speed must be above 0")
    if idle_limit is not None and idle_limit < 0:
        _fail("--idle-limit must not be negative")
    try:
        store, refs = _resolve(session_or_path, data_dir, identity, server)
        if expect_hash is not None and len(refs) != 1:
            _fail(f"--expect-hash needs one recording; `{session_or_path}` has {len(refs)}")
        results = {}
        if verify_first:
            for ref in refs:
                result = store.verify(ref, expected_final_hash=expect_hash)
                results[ref] = result
                if not result.ok:
                    _fail(f"recording {ref}: {result.summary()}")
                if output != "json":
                    echo(f"recording {ref}: {result.summary()}", err=True)
        if output == "json":
            body = []
            for ref in refs:
                reader = store.open(ref)
                item: dict[str, Any] = {"recording": _json_times(reader.info.to_dict()),
                                        "events": [_json_times(event_to_dict(e)) for e in reader.events()]}
                if ref in results:
                    item["verify"] = _verify_dict(results[ref])
                body.append(item)
            click.echo(json_text({"recordings": body}))
            return
        for ref in refs:
            _show(store, ref, speed=speed, idle_limit=idle_limit, text=output == "text",
                  several=len(refs) > 1)
            if not verify_first and not isinstance(store, FileRecordingStore):
                _warn_unless_verified(store, ref)
    except (RecordingError, OSError, ValueError) as exc:
        _fail(str(exc))
    except grpc.RpcError as exc:
        _fail(_rpc_line(exc))
    except KeyboardInterrupt:
        sys.exit(130)


def _rpc_line(exc: grpc.RpcError) -> str:
    from cli.client import error_line

    return error_line(exc) or "the control plane failed"


def _warn_unless_verified(store: Any, ref: str) -> None:
    """Played from the control plane without --verify: check it afterwards, and say so loudly
    when its chain or seal does not hold (never silently)."""
    result = store.verify(ref)
    if not result.ok:
        echo(f"WARNING: recording {ref} did not verify: {result.summary()}", err=True)


def _show(store: Any, ref: str, *, speed: float, idle_limit: float | None,
          text: bool, several: bool) -> None:
    from recorder.replay import play_terminal, terminal_text, timeline

    reader = store.open(ref)
    info = reader.info
    header = reader.header()
    if several or info.kind is not Kind.TERMINAL:
        title = f"recording {ref} ({info.kind.value}) {_when(info.started_at)} {_who(info)}".rstrip()
        if header.command:
            title += f": {header.command}"
        echo(title, err=info.kind is Kind.TERMINAL)
    if info.kind is Kind.TERMINAL:
        if sys.stdout.isatty():
            import shutil

            cols, lines = shutil.get_terminal_size()
            if header.width > cols or header.height > lines:
                echo(f"note: recorded at {header.width}x{header.height}, this terminal is "
                     f"{cols}x{lines}: enlarge it if the replay looks garbled", err=True)
        try:  # recordings are UTF-8 whatever the locale says
            sys.stdout.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
        if text:
            sys.stdout.write(terminal_text(reader.events()))
            sys.stdout.flush()
        else:
            play_terminal(reader.events(), sys.stdout, speed=speed, idle_limit=idle_limit)
        return
    rows = timeline(reader.events())
    if text:
        for r in rows:
            extra = "  ".join(x for x in (r.amount, r.status) if x)
            echo(f"{_offset(r.t)}  {r.what:<9} {r.detail}" + (f"  ({extra})" if extra else ""))
        return
    db = info.kind is Kind.DB
    columns = [Col("time", no_wrap=True), *([Col("ms", justify="right")] if db else []), Col("what"),
               Col("statement" if db else "detail", overflow="fold"), Col("amount", justify="right"), Col("result")]
    table = []
    for r in rows:
        cells = [_offset(r.t)]
        if db:
            cells.append("" if r.duration_ms is None else f"{r.duration_ms:.1f}")
        table.append([*cells, r.what, r.detail, r.amount, r.status])
    print_table(None, columns, table)


def _stored(store: Any, ref: str) -> dict[str, Any]:
    """What the control plane knows of a stored recording: its owner, size, SHA-256, state, hold."""
    row = store.stored(ref) if hasattr(store, "stored") else None
    if row is None:
        return {}
    return {"owner": row.user, "broker": row.broker, "size": row.size, "sha256": row.sha256 or None,
            "complete": row.complete, "hold": row.hold}


def _verify_dict(result: Any) -> dict[str, Any]:
    return {"ok": result.ok, "status": result.status, "sealed": result.sealed,
            "intact": result.intact, "events": result.events, "final_hash": result.final_hash,
            "problems": result.problems, "notes": result.notes}


# ---------------------------------------------------------------- recordings


@click.group()
def recordings() -> None:
    """List, search and verify session recordings."""


@recordings.command("list")
@click.option("--session", "session_id", default=None, help="only this session's recordings")
@click.option("--kind", type=click.Choice([k.value for k in Kind]), default=None)
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE",
              help="metadata must equal this, e.g. user=alice (repeatable)")
@click.option("--data-dir", default=None, help=DATA_DIR_HELP)
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@remote_options
def list_cmd(session_id: str | None, kind: str | None, meta: tuple[str, ...], data_dir: str | None,
             output: str, identity: str | None = None, server: str | None = None) -> None:
    """Recordings you may read (through the control plane, or in --data-dir), oldest first."""
    wanted: dict[str, Any] = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--meta `{item}` is not KEY=VALUE")
        wanted[key] = value
    try:
        store: Any = FileRecordingStore(_data_dir(data_dir)) if _local(data_dir) else _remote(identity, server)
        infos = store.list(RecordingFilter(session_id=session_id, kind=Kind(kind) if kind else None,
                                           metadata=wanted))
    except (RecordingError, OSError) as exc:
        _fail(str(exc))
        return
    except grpc.RpcError as exc:
        _fail(_rpc_line(exc))
        return
    if output == "json":
        click.echo(json_text({"recordings": [_json_times({**i.to_dict(), **_stored(store, i.ref)}) for i in infos]}))
        return
    if not infos:
        echo(f"no recordings in {store.root}")
        return
    columns = [Col(c, overflow="fold", no_wrap=c in ("recording", "kind", "started", "duration"))
               for c in ("recording", "kind", "started", "duration", "who", "events", "state", "end")]
    print_table(None, columns, ([
        i.ref, i.kind.value, _when(i.started_at), _offset(i.ended_at - i.started_at) if i.ended_at else "",
        _who(i), "" if i.events is None else str(i.events), "sealed" if i.sealed else "open/unsealed",
        i.end_reason or ""] for i in infos))


@recordings.command("search")
@click.argument("text")
@click.option("--session", "session_id", default=None, help="only this session's recordings")
@click.option("--kind", type=click.Choice([k.value for k in Kind]), default=None)
@click.option("--case-sensitive", is_flag=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="hits per recording")
@click.option("--data-dir", default=None, help=DATA_DIR_HELP)
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@remote_options
def search_cmd(text: str, session_id: str | None, kind: str | None, case_sensitive: bool, limit: int,
               data_dir: str | None, output: str, identity: str | None = None, server: str | None = None) -> None:
    """Sessions where TEXT was typed, shown, run, touched (sftp) or queried, with the time offset."""
    from recorder.search import search

    if not text:
        _fail("search text is empty")
    try:
        if _local(data_dir):
            store = FileRecordingStore(_data_dir(data_dir))
            infos = store.list(RecordingFilter(session_id=session_id, kind=Kind(kind) if kind else None))
            hits = [h.to_dict() for h in search((store.open(i.ref) for i in infos), text,
                                                ignore_case=not case_sensitive, limit_per_recording=limit)]
        else:  # searched where the recordings are: the control plane streams the hits
            hits = _remote(identity, server).search(text, session_id=session_id or "", kind=kind or "",
                                                    case_sensitive=case_sensitive, limit=limit)
    except (RecordingError, OSError, ValueError) as exc:
        _fail(str(exc))
        return
    except grpc.RpcError as exc:
        _fail(_rpc_line(exc))
        return
    if output == "json":
        click.echo(json_text({"hits": [_json_times(h) for h in hits]}))
        return
    if not hits:
        echo(f"no recordings match `{text}`")
        return
    columns = [Col(c, overflow="fold", no_wrap=c in ("started", "at"))
               for c in ("recording", "session", "started", "at", "where", "match")]
    print_table(None, columns, ([h["ref"], h["session_id"], _when(h["started_at"]), _offset(h["t"]), h["where"],
                                 h["snippet"]] for h in hits))


@recordings.command("verify")
@click.argument("session_or_path")
@click.option("--expect-hash", default=None, help="final hash reported at session end (audit log)")
@click.option("--data-dir", default=None, help=DATA_DIR_HELP)
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@remote_options
def verify_cmd(session_or_path: str, expect_hash: str | None, data_dir: str | None, output: str,
               identity: str | None = None, server: str | None = None) -> None:
    """Check recordings' hash chains and seals; exit 1 unless every one is intact and sealed.
    Through the control plane, seals verify against every key the brokers published."""
    try:
        store, refs = _resolve(session_or_path, data_dir, identity, server)
        results = {ref: store.verify(ref, expected_final_hash=expect_hash if len(refs) == 1 else None)
                   for ref in refs}
    except (RecordingError, OSError) as exc:
        _fail(str(exc))
        return
    except grpc.RpcError as exc:
        _fail(_rpc_line(exc))
        return
    bad = [ref for ref, r in results.items() if not r.ok]
    if output == "json":
        click.echo(json_text({"results": {ref: _verify_dict(r) for ref, r in results.items()}}))
    else:
        for ref, r in results.items():
            echo(f"recording {ref}: {r.summary()}", err=not r.ok)
            for note in r.notes:
                echo(f"  note: {note}", err=not r.ok)
    if bad:
        sys.exit(1)


@recordings.command("hold")
@click.argument("session_id")
@click.option("--release", is_flag=True, help="lift the hold instead")
@click.option("--reason", default="", help="why (audited)")
@remote_options
def hold_cmd(session_id: str, release: bool, reason: str, identity: str | None = None,
             server: str | None = None) -> None:
    """Put a legal hold on SESSION's recordings (admins): retention never deletes them."""
    try:
        refs = _remote(identity, server).hold(session_id, release=release, reason=reason)
    except grpc.RpcError as exc:
        _fail(_rpc_line(exc))
        return
    for ref in refs:
        echo(f"recording {ref}: {'hold released' if release else 'on legal hold'}")
