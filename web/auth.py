"""Sign in, the provider's redirect back, sign out (web/signin.py does the work)."""
from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from web.pages import problem, render
from web.posts import change_form
from web.session import COOKIE, SIGNIN_COOKIE, SessionStore, current_session
from web.signin import MAX_PARAM, PENDING_TTL, SignInError, SignInFlow, safe_next


def _cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")


def signin_page(request: Request) -> Response:
    if current_session(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), 303)
    return render(request, "signin.html", next=safe_next(request.query_params.get("next")),
                  signed_out=request.query_params.get("out") == "1")


async def start(request: Request) -> Response:
    """Begin a sign-in and send the browser to the provider."""
    flow: SignInFlow = request.app.state.signin
    try:
        source = request.client.host if request.client else ""
        pending, url = await run_in_threadpool(flow.begin, request.query_params.get("next"), source)
    except SignInError as e:
        return problem(request, str(e), 502, "Sign-in could not start")
    response = RedirectResponse(url, 303)
    _cookie(response, SIGNIN_COOKIE, pending.id, int(PENDING_TTL.total_seconds()))
    return response


async def callback(request: Request) -> Response:
    """The provider's redirect back: finish the sign-in this browser started."""
    flow: SignInFlow = request.app.state.signin
    store: SessionStore = request.app.state.sessions
    params = {k: v[:MAX_PARAM] for k, v in request.query_params.items()}
    try:
        pending = flow.take(request.cookies.get(SIGNIN_COOKIE), params.get("state", ""))
        if "error" in params:
            raise SignInError(f"the identity provider refused the sign-in: {params['error'][:200]}: "
                              f"{params.get('error_description', '')[:500]}")
        if not params.get("code"):
            raise SignInError("the identity provider's answer has no code; sign in again")
        person = await run_in_threadpool(flow.complete, pending, params["code"])
        session = store.create(person)
    except (SignInError, OverflowError) as e:
        failed = problem(request, str(e), 400, "Sign-in failed")
        failed.delete_cookie(SIGNIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
        return failed
    response = RedirectResponse(pending.next_path, 303)
    response.delete_cookie(SIGNIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    lifetime = session.expires_at(store.idle, store.absolute) - session.created_at
    _cookie(response, COOKIE, session.id, int(min(lifetime, store.absolute).total_seconds()))
    return response


async def signout(request: Request) -> Response:
    await change_form(request)
    store: SessionStore = request.app.state.sessions
    store.end(request.cookies.get(COOKIE))
    response = RedirectResponse("/auth/signin?out=1", 303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


def signin_location(path: str) -> str:
    return "/auth/signin?next=" + quote(safe_next(path), safe="/")


ROUTES = [
    Route("/auth/signin", signin_page, methods=["GET"]),
    Route("/auth/start", start, methods=["GET"]),
    Route("/auth/callback", callback, methods=["GET"]),
    Route("/auth/signout", signout, methods=["POST"]),
]

__all__ = ["ROUTES", "signin_location"]
