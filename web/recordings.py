"""Watch and replay: the console's live sessions, live watch, recordings and replays.

    GET /sessions/live               live sessions: who, where, since when, time left
    GET /sessions/live/{id}          watch one live (xterm.js fed by the next route)
    GET /sessions/live/{id}/feed     the live recording as Server-Sent Events
    GET /recordings                  recordings the person may read, newest first, paged
    GET /recordings/{ref}            a replay (terminal) or a timeline (exec, sftp, database),
                                     with the `jitgate recordings verify` result
    GET /recordings/{ref}/cast       a terminal recording as asciicast v2 for the player

Everything is read as the signed-in person over their own channel (`web/replay/source.py`):
the control plane decides and audits every read; a refusal is shown with its stable code.
Every route only reads: no CSRF token is needed, and none changes state.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from recorder.events import Kind, RecordingError
from web.pages import problem, refused, render
from web.replay import source
from web.replay.cast import cast_lines
from web.replay.feed import sse
from web.replay.live import Watches
from web.session import signed_in
from web.signin import rpc_text

MAX_NAME = 160  # a session id or recording ref (controlplane.recordings.check_ref)
MAX_PAGE = 10_000  # timeline pages
MAX_TOKEN = 32  # a ListRecordings page token (digits)
NO_STORE = {"cache-control": "no-store"}


def _name(request: Request, key: str) -> str | None:
    value = str(request.path_params[key])
    return value if 0 < len(value) <= MAX_NAME and value.isprintable() else None


def _watches(request: Request) -> Watches:
    """This console's live watches (one per app: created on first use, inside its event loop)."""
    state = request.app.state
    if getattr(state, "replay_watches", None) is None:
        state.replay_watches = Watches()
    watches: Watches = state.replay_watches
    return watches


def _page_token(request: Request) -> str | None:
    """The `page` a list was given by this console (a number), "" for the first; None: not one."""
    token = request.query_params.get("page", "")
    return token if len(token) <= MAX_TOKEN and (not token or token.isdigit()) else None


async def live_sessions(request: Request) -> Response:
    person = signed_in(request)
    token = _page_token(request)
    if token is None:
        return problem(request, "`page` is not a page this console gave", 400)
    try:
        rows, next_token = await run_in_threadpool(source.live_sessions, person, token)
    except grpc.RpcError as exc:
        return refused(request, exc, "The control plane refused the list of live sessions")
    return render(request, "recordings/live.html", sessions=rows, next_token=next_token)


async def watch_page(request: Request) -> Response:
    person = signed_in(request)
    session_id = _name(request, "session_id")
    if session_id is None:
        return problem(request, f"a session id is 1 to {MAX_NAME} printable characters", 400)
    try:
        target = await run_in_threadpool(source.watch_target, person, session_id)
    except grpc.RpcError as exc:
        return refused(request, exc, "You may not watch this session")
    except RecordingError as exc:
        return problem(request, str(exc), 404, "Nothing to watch yet")
    return render(request, "recordings/watch.html", target=target, session_id=session_id)


async def watch_feed(request: Request) -> Response:
    person = signed_in(request)
    session_id = _name(request, "session_id")
    if session_id is None:
        return Response(sse("end", {"why": "bad session id"}), media_type="text/event-stream", headers=NO_STORE)
    stream = _watches(request).stream(lambda: source.watch(person, session_id), rpc_text)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={**NO_STORE, "x-accel-buffering": "no"})


async def recordings_list(request: Request) -> Response:
    person = signed_in(request)
    kind = request.query_params.get("kind", "")
    user = request.query_params.get("user", "")[:MAX_NAME]
    token = _page_token(request)
    if kind and kind not in {k.value for k in Kind}:
        return problem(request, f"`kind` is one of {', '.join(k.value for k in Kind)}", 400)
    if token is None:
        return problem(request, "`page` is not a page this console gave", 400)
    try:
        rows, next_token = await run_in_threadpool(source.recordings_page, person, kind=kind, user=user,
                                                   page_token=token)
    except grpc.RpcError as exc:
        return refused(request, exc, "The control plane refused the list of recordings")
    return render(request, "recordings/list.html", recordings=rows, next_token=next_token, kind=kind, user=user,
                  kinds=[k.value for k in Kind])


async def recording(request: Request) -> Response:
    person = signed_in(request)
    ref = _name(request, "ref")
    page_text = request.query_params.get("page", "0")
    if ref is None:
        return problem(request, f"a recording is named by 1 to {MAX_NAME} printable characters", 400)
    if not page_text.isdigit() or int(page_text) > MAX_PAGE:
        return problem(request, f"`page` is a number from 0 to {MAX_PAGE}", 400)
    try:
        page = await run_in_threadpool(source.recording_page, person, ref, int(page_text))
    except grpc.RpcError as exc:
        return refused(request, exc, "You may not read this recording")
    except RecordingError as exc:
        return problem(request, str(exc), 404, "No such recording")
    template = "recordings/replay.html" if page.view.is_terminal else "recordings/timeline.html"
    return render(request, template, page=page, rec=page.view, check=page.verify, timeline=page.timeline)


def _cast_or_mark(lines: Iterator[bytes], first: bytes) -> Iterator[bytes]:
    """The cast's lines; a read that fails halfway ends the cast with a mark saying so."""
    yield first
    try:
        yield from lines
    except (grpc.RpcError, RecordingError) as exc:
        why = rpc_text(exc) if isinstance(exc, grpc.RpcError) else str(exc)
        yield json.dumps([0.0, "m", f"the replay stopped: the recording could not be read further ({why})"],
                         ensure_ascii=True).encode("ascii") + b"\n"


async def cast(request: Request) -> Response:
    person = signed_in(request)
    ref = _name(request, "ref")
    if ref is None:
        return problem(request, f"a recording is named by 1 to {MAX_NAME} printable characters", 400)

    def start() -> tuple[Iterator[bytes], bytes] | None:
        reader = source.recordings(person).open(ref)
        if reader.kind is not Kind.TERMINAL:
            return None
        lines = cast_lines(reader.header(), reader.events())
        return lines, next(lines)  # the header: read now, so a refusal is an error page, not half a cast

    try:
        started = await run_in_threadpool(start)
    except grpc.RpcError as exc:
        return refused(request, exc, "You may not read this recording")
    except RecordingError as exc:
        return problem(request, str(exc), 404, "No such recording")
    if started is None:
        return problem(request, f"`{ref}` is not a terminal recording: its page shows it as a timeline", 404)
    return StreamingResponse(iterate_in_threadpool(_cast_or_mark(*started)), media_type="application/x-asciicast",
                             headers=NO_STORE)


ROUTES = [
    Route("/sessions/live", live_sessions, methods=["GET"]),
    Route("/sessions/live/{session_id}", watch_page, methods=["GET"]),
    Route("/sessions/live/{session_id}/feed", watch_feed, methods=["GET"]),
    Route("/recordings", recordings_list, methods=["GET"]),
    Route("/recordings/{ref}", recording, methods=["GET"]),
    Route("/recordings/{ref}/cast", cast, methods=["GET"]),
]
