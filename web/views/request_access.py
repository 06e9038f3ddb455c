"""Request: ask for access (with a preview of the decision and the recommended duration), then
see my requests and grants, extend one with a justification, release one early, cancel one."""
from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from web.api import api, call
from web.forms import Form, FormError, path_id
from web.pages import flash, refused, render
from web.posts import change_form
from web.session import signed_in


def parse_duration_field(text: str, *, required: bool = False) -> dt.timedelta | None:
    """`30m`, `1h30m` (POLICY.md's syntax) or empty; FormError with a plain message otherwise."""
    from policy.durations import parse_duration

    text = text.strip()
    if not text:
        if required:
            raise FormError("duration is required (e.g. 30m or 1h30m)")
        return None
    try:
        value = parse_duration(text)
    except ValueError as e:
        raise FormError(f"duration: {e}") from None
    if value <= dt.timedelta(0):
        raise FormError("duration: a duration must be positive")
    return value


def ask_message(form: Form, dry_run: bool) -> Any:
    """The CreateRequest a request form means."""
    from cli.client import duration_message
    from jitgate.v1 import access_pb2

    msg = access_pb2.CreateRequestRequest(
        resource=form.text("resource", required=True, label="resource"), login=form.text("login"),
        role=form.text("role"), reason=form.text("reason", required=not dry_run, label="reason"),
        ticket=form.text("ticket"), emergency=form.get("emergency") == "on", dry_run=dry_run)
    duration = parse_duration_field(form.get("duration"))
    if duration is not None:
        msg.duration.CopyFrom(duration_message(duration))
    return msg


async def _mine(request: Request) -> tuple[list[Any], str | None]:
    from jitgate.v1 import access_pb2

    client = api(signed_in(request))
    try:
        resp = await call(client.access.ListRequests, access_pb2.ListRequestsRequest(mine=True, page_size=30))
    except grpc.RpcError as e:
        from web.signin import rpc_text

        return [], rpc_text(e)
    return list(resp.requests), None


async def _resources(request: Request) -> list[Any]:
    """What may be asked for, for the form's suggestions (none when the API will not say)."""
    from jitgate.v1 import policy_pb2

    try:
        resp = await call(api(signed_in(request)).policy.ListResources, policy_pb2.ListResourcesRequest())
    except grpc.RpcError:
        return []  # the form still takes any name; the API judges it
    return list(resp.resources)


async def _page(request: Request, form: dict[str, str], preview: Any = None, recommendation: Any = None) -> Response:
    mine, error = await _mine(request)
    resources = await _resources(request)
    return render(request, "request.html", form=form, preview=preview, recommendation=recommendation, mine=mine,
                  mine_error=error, resources=resources,
                  logins=sorted({x for r in resources for x in r.logins}),
                  roles=sorted({x for r in resources for x in r.roles}))


async def page(request: Request) -> Response:
    signed_in(request)
    return await _page(request, {})


async def submit(request: Request) -> Response:
    """Preview (dry run: the decision, the plan, the recommended duration) or submit."""
    form = await change_form(request)
    person = signed_in(request)
    dry_run = form.get("action") != "submit"
    msg = ask_message(form, dry_run)
    try:
        resp = await call(api(person).access.CreateRequest, msg)
    except grpc.RpcError as e:
        return refused(request, e, "The request was refused")
    if dry_run:
        return await _page(request, dict(form.fields), resp.request,
                           resp.recommendation if resp.HasField("recommendation") else None)
    req = resp.request
    from web.formats import state

    if req.decision.effect == "deny":
        flash(request, "error", f"request {req.id} was denied by the policies: {req.message or req.decision.message}")
    else:
        flash(request, "ok", f"request {req.id} is {state(req.state)}" + (f": {req.message}" if req.message else ""))
    return RedirectResponse("/request", 303)


async def _change(request: Request, what: str) -> Response:
    from cli.client import duration_message
    from jitgate.v1 import access_pb2, lifecycle_pb2

    form = await change_form(request)
    client = api(signed_in(request))
    rid = path_id(request.path_params, "request id")
    try:
        if what == "extend":
            duration = parse_duration_field(form.get("duration"), required=True)
            assert duration is not None  # required=True refuses an empty field
            msg = access_pb2.ExtendRequest(id=rid, justification=form.text("justification", required=True,
                                                                            label="justification"))
            msg.duration.CopyFrom(duration_message(duration))
            await call(client.access.Extend, msg)
            flash(request, "ok", f"extension of {rid} asked for")
        elif what == "release":
            await call(client.lifecycle.Release, lifecycle_pb2.ReleaseRequest(id=rid))
            flash(request, "ok", f"grant {rid} released: it has ended")
        else:
            await call(client.access.Cancel, access_pb2.CancelRequest(id=rid))
            flash(request, "ok", f"request {rid} cancelled")
    except grpc.RpcError as e:
        return refused(request, e, f"The {what} was refused")
    return RedirectResponse("/request", 303)


async def extend(request: Request) -> Response:
    return await _change(request, "extend")


async def release(request: Request) -> Response:
    return await _change(request, "release")


async def cancel(request: Request) -> Response:
    return await _change(request, "cancel")


ROUTES = [
    Route("/request", page, methods=["GET"]),
    Route("/request", submit, methods=["POST"]),
    Route("/request/{id}/extend", extend, methods=["POST"]),
    Route("/request/{id}/release", release, methods=["POST"]),
    Route("/request/{id}/cancel", cancel, methods=["POST"]),
]

__all__ = ["ROUTES", "ask_message", "parse_duration_field"]
