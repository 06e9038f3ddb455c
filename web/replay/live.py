"""A live watch as the stream of Server-Sent Events the watch page reads.

The watch ends, with an `end` message saying why, when the recording is sealed (the session
ended), when the viewer's certificate ends (the WatchRecording call's deadline), or when the
control plane stops it; a viewer who leaves cancels the call. Each watch holds a worker thread
blocked on the gRPC stream, so at most `MAX_WATCHES` run at once in one console; one more is
told so at once instead of waiting for a thread.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import grpc

from cli.remote_recordings import LiveWatch
from recorder.events import RecordingError
from web.replay.feed import end_message, feed_messages, sse

MAX_WATCHES = 16


def live_messages(live: LiveWatch, rpc_text: Callable[[grpc.RpcError], str]) -> Iterator[bytes]:
    """The SSE messages of one watch (blocking: run in a worker thread), `end` last."""
    sized = False
    try:
        for ev in live.events():
            if not sized and live.header is not None:
                sized = True
                yield sse("r", [live.header.width, live.header.height])
            yield from feed_messages([ev])
        reason = live.recording.end_reason if live.recording is not None else ""
        why = "the session ended" + (f" ({reason})" if reason else "") if live.sealed \
            else "the control plane ended the watch"
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.CANCELLED:
            return  # the viewer left (or signed out): nobody to tell
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            why = "your sign-in ended: sign in again to keep watching"
        else:
            why = f"the control plane stopped the watch: {rpc_text(exc)}"
    except RecordingError as exc:
        why = f"the recording could not be read: {exc}"
    yield end_message(why)


class Watches:
    """The live watches of one console: admission (at most `limit`) and their worker threads."""

    def __init__(self, limit: int = MAX_WATCHES) -> None:
        self.limit = limit
        self.admitted = anyio.CapacityLimiter(limit)
        self.threads = anyio.CapacityLimiter(limit)  # one blocked next() per admitted watch

    async def stream(self, start: Callable[[], LiveWatch],
                     rpc_text: Callable[[grpc.RpcError], str]) -> AsyncIterator[bytes]:
        """The SSE stream of the watch `start` opens (in a worker thread: it calls the control plane)."""
        try:
            self.admitted.acquire_nowait()  # taken and given back by this stream's one task
        except anyio.WouldBlock:
            yield end_message(f"{self.limit} people are watching live sessions on this console now: "
                              "try again in a moment")
            return
        try:
            try:
                live = await anyio.to_thread.run_sync(start, limiter=self.threads)
            except grpc.RpcError as exc:
                yield end_message(f"the control plane refused the watch: {rpc_text(exc)}")
                return
            except RecordingError as exc:
                yield end_message(str(exc))
                return
            messages = live_messages(live, rpc_text)
            try:
                while True:
                    msg = await anyio.to_thread.run_sync(next, messages, None, limiter=self.threads,
                                                         abandon_on_cancel=True)
                    if msg is None:
                        return
                    yield msg
            finally:
                live.cancel()  # the blocked next() in its thread ends with CANCELLED
        finally:
            self.admitted.release()
