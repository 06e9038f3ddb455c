"""Approve: what I may approve now (with the reason, ticket, the requester's recent history, the
rules that matched, the duration against the policy's maximum, the risk), approve or deny with a
comment; break-glass grants that owe a review."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from web.api import api, call
from web.forms import FormError, path_id
from web.pages import flash, refused, render
from web.posts import change_form
from web.session import signed_in

HISTORY = 5  # the requester's most recent other requests shown beside each


@dataclass
class Waiting:
    """One thing in my queue: a request, or an active grant's extension (`extension` set)."""

    request: Any
    extension: Any | None
    history: list[Any]
    history_error: str | None
    recommendation: Any | None = None  # for the requester, as they asked (RecommendDuration by request_id)
    recommendation_note: str = ""  # why there is none
    can_decide: bool = True  # show approve/deny (the API still decides who may)

    @property
    def target_id(self) -> str:
        return self.extension.id if self.extension is not None else self.request.id

    @property
    def decision(self) -> Any:
        return self.extension.decision if self.extension is not None else self.request.decision


async def _history(client: Any, req: Any) -> tuple[list[Any], str | None]:
    from jitgate.v1 import access_pb2
    from web.signin import rpc_text

    try:
        resp = await call(client.access.ListRequests, access_pb2.ListRequestsRequest(user=req.user,
                                                                                     page_size=HISTORY + 1))
    except grpc.RpcError as e:
        return [], rpc_text(e)
    return [r for r in resp.requests if r.id != req.id][:HISTORY], None


async def _recommendation(client: Any, req: Any) -> tuple[Any | None, str]:
    from jitgate.status import reason_of
    from jitgate.v1 import access_pb2

    try:
        rec = await call(client.access.RecommendDuration, access_pb2.RecommendDurationRequest(request_id=req.id))
    except grpc.RpcError as e:
        return None, reason_of(e) or "unavailable"
    return (rec, "") if rec.minutes else (None, "the model gave none")


async def waiting_item(client: Any, req: Any) -> Waiting:
    """One request with what an approver weighs: history, recommendation, the extension that waits."""
    from cli.render import pending_extension
    from web.formats import state

    history, error = await _history(client, req)
    extension = pending_extension(req)
    recommendation, note = await _recommendation(client, req) if extension is None else (None, "")
    return Waiting(req, extension, history, error, recommendation, note,
                   can_decide=extension is not None or state(req.state) == "PENDING")


async def page(request: Request) -> Response:
    from jitgate.v1 import access_pb2

    client = api(signed_in(request))
    try:
        queue = await call(client.access.ListRequests, access_pb2.ListRequestsRequest(to_approve=True, page_size=30))
        board = await call(client.access.GetDashboard, access_pb2.GetDashboardRequest())
    except grpc.RpcError as e:
        return refused(request, e, "The approval queue could not be read")
    waiting = [await waiting_item(client, req) for req in queue.requests]
    return render(request, "approve.html", waiting=waiting, reviews=list(board.reviews_owed))


async def detail(request: Request) -> Response:
    """One request (any I may see), with the same facts and, while it waits, approve/deny."""
    from jitgate.v1 import access_pb2

    client = api(signed_in(request))
    try:
        req = await call(client.access.GetRequest, access_pb2.GetRequestRequest(id=path_id(request.path_params)))
    except grpc.RpcError as e:
        return refused(request, e, "The request could not be read")
    return render(request, "request_detail.html", w=await waiting_item(client, req))


async def decide(request: Request) -> Response:
    from jitgate.v1 import access_pb2

    form = await change_form(request)
    client = api(signed_in(request))
    rid, action = path_id(request.path_params), form.get("action")
    if action not in ("approve", "deny"):
        raise FormError("action must be approve or deny")
    msg = access_pb2.DecideRequest(id=rid, comment=form.text("comment"))
    try:
        await call(client.access.Approve if action == "approve" else client.access.Deny, msg)
    except grpc.RpcError as e:
        return refused(request, e, f"Your {'approval' if action == 'approve' else 'denial'} was refused")
    flash(request, "ok", f"{rid}: {'approved' if action == 'approve' else 'denied'}")
    return RedirectResponse(_back(form.get("next")), 303)


async def review(request: Request) -> Response:
    from jitgate.v1 import access_pb2

    form = await change_form(request)
    client = api(signed_in(request))
    rid = path_id(request.path_params)
    flag = form.get("flag") == "1"
    try:
        await call(client.access.Review, access_pb2.ReviewRequest(id=rid, flag=flag, comment=form.text("comment")))
    except grpc.RpcError as e:
        return refused(request, e, "Your review was refused")
    flash(request, "ok", f"{rid}: {'flagged' if flag else 'reviewed'}")
    return RedirectResponse("/approve", 303)


def _back(path: str) -> str:
    """Where a decision returns: the request's page it was made on, else the queue."""
    return path if path.startswith("/requests/") and len(path) <= 80 and "//" not in path else "/approve"


ROUTES = [
    Route("/requests/{id}", detail, methods=["GET"]),
    Route("/approve", page, methods=["GET"]),
    Route("/approve/{id}", decide, methods=["POST"]),
    Route("/approve/{id}/review", review, methods=["POST"]),
]

__all__ = ["ROUTES", "Waiting"]
