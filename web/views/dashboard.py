"""Dashboard: the dashboard RPC's figures, requests over time as a chart, active grants (revoke,
for admins: the API decides), audit search with filters."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from web.api import api, call
from web.charts import DayCounts, bar_chart
from web.forms import FIELD_BOUNDS, FormError, path_id
from web.pages import flash, refused, render
from web.posts import change_form
from web.session import signed_in

CHART_DAYS = 14
CHART_PAGES = 20  # at most 20 pages of 30 requests read for the chart (600 requests); more is said
AUDIT_PAGE = 50


async def _requests_since(client: Any, since: datetime) -> tuple[list[Any], bool]:
    """Requests created since `since` that I may see (bounded: CHART_PAGES pages); (rows, cut short)."""
    from jitgate.v1 import access_pb2

    msg = access_pb2.ListRequestsRequest(page_size=30)
    msg.since.FromDatetime(since)
    rows: list[Any] = []
    for _ in range(CHART_PAGES):
        resp = await call(client.access.ListRequests, msg)
        rows.extend(resp.requests)
        if not resp.next_page_token:
            return rows, False
        msg.page_token = resp.next_page_token
    return rows, True


def day_counts(rows: list[Any], today: datetime, days: int) -> list[DayCounts]:
    """Requests per creation day by outcome, oldest day first (pure: the chart's data)."""
    from web.formats import state

    start = (today - timedelta(days=days - 1)).date()
    out = [DayCounts(start + timedelta(days=i)) for i in range(days)]
    for r in rows:
        day = r.created_at.ToDatetime(tzinfo=UTC).date()
        i = (day - start).days
        if 0 <= i < days:
            s = state(r.state)
            if s == "PENDING":
                out[i].pending += 1
            elif s in ("DENIED", "CANCELLED", "TIMED_OUT"):
                out[i].refused += 1
            else:
                out[i].granted += 1
    return out


async def page(request: Request) -> Response:
    from jitgate.v1 import access_pb2

    client = api(signed_in(request))
    now = datetime.now(UTC)
    try:
        board = await call(client.access.GetDashboard, access_pb2.GetDashboardRequest())
        rows, cut = await _requests_since(client, now - timedelta(days=CHART_DAYS))
        me = await call(client.access.WhoAmI, access_pb2.WhoAmIRequest())
    except grpc.RpcError as e:
        return refused(request, e, "The dashboard could not be read")
    chart = bar_chart(day_counts(rows, now, CHART_DAYS))
    # Revoke is offered to admins only (the API refuses anyone else anyway: this only spares a button).
    return render(request, "dashboard.html", board=board, chart=chart, chart_cut=cut, chart_days=CHART_DAYS,
                  can_revoke="admin" in me.roles)


async def audit(request: Request) -> Response:
    """Audit events, newest page after a cursor, filtered by type and subject (the API's filters)
    and by actor (here, over the page read)."""
    from jitgate.v1 import audit_pb2

    client = api(signed_in(request))
    q = request.query_params
    filters = {k: q.get(k, "").strip() for k in ("type", "subject", "actor")}
    for k, v in filters.items():
        if len(v) > FIELD_BOUNDS[k]:
            raise FormError(f"{k} is longer than {FIELD_BOUNDS[k]} characters")
    after = q.get("after", "0")
    if not after.isdigit() or len(after) > 18:
        raise FormError("after must be an event number")
    msg = audit_pb2.ListEventsRequest(after_seq=int(after), type=filters["type"], subject=filters["subject"],
                                      page_size=AUDIT_PAGE)
    try:
        resp = await call(client.audit.ListEvents, msg)
    except grpc.RpcError as e:
        return refused(request, e, "The audit log could not be read")
    events = [e for e in resp.events if not filters["actor"] or e.actor == filters["actor"]]
    return render(request, "audit.html", events=events, filters=filters, last_seq=resp.last_seq,
                  more=len(resp.events) >= AUDIT_PAGE)


async def revoke(request: Request) -> Response:
    from jitgate.v1 import access_pb2

    form = await change_form(request)
    client = api(signed_in(request))
    rid = path_id(request.path_params)
    try:
        await call(client.access.Revoke, access_pb2.RevokeRequest(
            id=rid, reason=form.text("reason", required=True, label="reason")))
    except grpc.RpcError as e:
        return refused(request, e, "The revocation was refused")
    flash(request, "ok", f"grant {rid} revoked")
    return RedirectResponse("/dashboard", 303)


ROUTES = [
    Route("/dashboard", page, methods=["GET"]),
    Route("/audit", audit, methods=["GET"]),
    Route("/dashboard/{id}/revoke", revoke, methods=["POST"]),
]

__all__ = ["ROUTES", "day_counts"]
