"""The control plane as the signed-in person sees it: recordings (RecordingService, through the
CLI's client `cli.remote_recordings`, so the console lists, reads, verifies and follows exactly
as `jitgate replay` and `jitgate sessions watch` do) and live sessions (AccessService).

Every call runs on the person's own channel (their short-lived certificate): the control plane
decides what they may see and audits each read; nothing here widens or repeats that rule.
These calls block: the routes run them in a worker thread.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import grpc

from cli.remote_recordings import LiveWatch, RemoteRecordingStore, info_from
from recorder.events import Kind, RecordingError
from web.api import TIMEOUT, api
from web.replay.views import (
    LiveSessionView,
    RecordingView,
    TimelineView,
    VerifyView,
    live_session_view,
    not_checked,
    recording_view,
    timeline_view,
    verify_view,
)
from web.session import Person

LIVE_PAGE = 50  # live sessions on one page
RECORDINGS_PAGE = 50  # recordings on one page


def seconds_left(expires_at: dt.datetime, now: float | None = None) -> float:
    """Seconds until a certificate's end (an aware datetime); 0 when past."""
    return max(0.0, expires_at.timestamp() - (time.time() if now is None else now))


def recordings(person: Person) -> RemoteRecordingStore:
    """The recordings `person` may read, through their own channel."""
    store = RemoteRecordingStore(api(person))
    store.root = "the control plane"  # what "no recording `X` in ..." names (the console has one)
    return store


def resolve(store: RemoteRecordingStore, session_or_ref: str) -> list[str]:
    """A session's recording refs (or the ref itself). A session nobody may show this person is
    asked for by name, so the control plane's refusal (recording.not_found) reaches the page."""
    refs = store.refs_for(session_or_ref)
    if not refs:
        raise RecordingError(f"no recording of `{session_or_ref}` that you may read has reached the control "
                             "plane (a live session's first part arrives within seconds)")
    return refs


def watch(person: Person, session_id: str) -> LiveWatch:
    """A live watch of the session's latest recording, ending at its seal or when the person's
    certificate ends (the call's deadline), whichever comes first."""
    store = recordings(person)
    refs = resolve(store, session_id)
    left = seconds_left(person.expires_at)
    if left <= 0:
        raise RecordingError("your sign-in has ended: sign in again to watch")
    return store.watch(refs[-1], timeout=left)


def live_sessions(person: Person, page_token: str = "",
                  now: float | None = None) -> tuple[list[LiveSessionView], str]:
    """One page of the live sessions the person may see (admins: all; anyone else: their own), with
    the time left of each one's grant where the person may see that grant, and the next page's token."""
    from jitgate.v1 import access_pb2

    stub = api(person).access
    resp = stub.ListSessions(access_pb2.ListSessionsRequest(live_only=True, page_size=LIVE_PAGE,
                                                            page_token=page_token), timeout=TIMEOUT)
    ends: dict[str, float | None] = {}
    for s in resp.sessions:
        if s.grant_id in ends:
            continue
        try:
            grant = stub.GetRequest(access_pb2.GetRequestRequest(id=s.grant_id), timeout=TIMEOUT)
            ends[s.grant_id] = (grant.expires_at.ToDatetime(dt.UTC).timestamp()
                                if grant.HasField("expires_at") else None)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
                raise
            ends[s.grant_id] = None  # a session the person sees whose grant they may not: time left unknown
    at = time.time() if now is None else now
    return [live_session_view(s, at, ends[s.grant_id]) for s in resp.sessions], resp.next_page_token


MAX_VERIFY_BYTES = 64 * 1024 * 1024  # a recording checked on its page (larger: `jitgate recordings verify`)


@dataclass(slots=True)
class RecordingPage:
    """What a recording's page shows (loaded in a worker thread)."""

    view: RecordingView
    verify: VerifyView
    timeline: TimelineView | None  # exec, sftp and database recordings
    others: list[RecordingView]  # the session's other recordings


def recording_page(person: Person, ref: str, page: int) -> RecordingPage:
    """A recording (or a session's latest) as its page shows it: listing data, verification, and
    for non-terminal kinds one page of its timeline. Reads are the control plane's (audited)."""
    store = recordings(person)
    refs = resolve(store, ref)
    ref = ref if ref in refs else refs[-1]
    info = store.info(ref)
    row = store.stored(ref)
    size = row.size if row is not None else None
    if size is not None and size > MAX_VERIFY_BYTES:
        check = not_checked(f"not checked here: the recording is over {MAX_VERIFY_BYTES // (1024 * 1024)} MiB; "
                            f"`jitgate recordings verify {ref}` checks any size")
    else:
        check = verify_view(store.verify(ref))
    timeline = None
    if info.kind is not Kind.TERMINAL:
        timeline = timeline_view(info.kind, store.open(ref).events(), page=page)
    others = [recording_view(store.info(r)) for r in refs if r != ref]
    return RecordingPage(recording_view(info, user=row.user if row is not None else "", size=size),
                         check, timeline, others)


def recordings_page(person: Person, *, kind: str, user: str, page_token: str) -> tuple[list[RecordingView], str]:
    """One page of the recordings the person may see, newest first, and the next page's token."""
    store = recordings(person)
    resp = store.page(kind=kind, user=user, page_size=RECORDINGS_PAGE, page_token=page_token)
    return [recording_view(info_from(r), user=r.user, size=r.size) for r in resp.recordings], resp.next_page_token


def watch_target(person: Person, session_id: str) -> RecordingView:
    """The recording a watch of `session_id` follows (its latest), as the watch page heads it."""
    store = recordings(person)
    refs = resolve(store, session_id)
    return recording_view(store.info(refs[-1]))
