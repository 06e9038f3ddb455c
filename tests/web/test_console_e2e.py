"""The web console end to end in Debian's Chromium: sign in through the provider's real login
page, request (plan and recommended duration first), approve across two levels as bob then sam,
a refusal (alice approving her own request) shown as a message, the dashboard's numbers
change, revoke, CSRF and CSP, user text with HTML and terminal escapes shown literally.

One stack (provider, control plane, `jitgate web`) and one browser for the module; the tests
run in order and build on each other (alice's request is what bob and sam approve).
Screenshots of each screen land in tests/output/web/.
"""
from __future__ import annotations

from typing import Any

import grpc
import pytest

from jitgate.v1 import access_pb2, policy_pb2
from tests.web.conftest import Browser, WebStack

SHARED: dict[str, Any] = {}  # what one test leaves for the next (the module runs in order)
HOSTILE = 'monthly <b>report</b> <script>alert(1)</script> \x1b[31mred\x1b[0m \u202eevil'


def _figure(browser: Browser, name: str) -> int:
    return int(browser.text(f"#n-{name}"))


def test_not_signed_in_is_sent_to_sign_in(web_stack: WebStack, browser: Browser) -> None:
    browser.driver.delete_all_cookies()
    browser.open("/approve")
    assert browser.path == "/auth/signin"
    assert "Sign in to jitgate" in browser.text()
    browser.shot("signin")
    with web_stack.http() as http:  # a change without a session: refused, nothing behind it runs
        answer = http.post("/approve/x", data={"action": "approve"}, headers={"origin": web_stack.url})
        assert answer.status_code == 401 and "not signed in" in answer.text


def test_dashboard_before(web_stack: WebStack, browser: Browser) -> None:
    browser.sign_in("admin")
    browser.open("/dashboard")
    SHARED["active"], SHARED["pending"] = _figure(browser, "active"), _figure(browser, "pending")


def test_alice_previews_and_asks(web_stack: WebStack, browser: Browser) -> None:
    browser.sign_in("alice")
    assert browser.path == "/request" and browser.text(".who .person") == "alice"
    listed = browser.text("#resources-list")  # PolicyService.ListResources: what may be asked for
    assert "orders-db" in listed and "readonly, readwrite" in listed and "env=prod" in listed, listed
    browser.shot("request-form")
    answer = web_stack.cp.client("alice").policy.ListResources(policy_pb2.ListResourcesRequest())
    assert "orders-db" in [r.name for r in answer.resources] and not answer.truncated
    assert "10.0.2.9" not in str(answer) and "env:ORDERS_DB" not in str(answer)  # no address, no credentials
    browser.fill({"resource": "orders-db", "role": "readonly", "reason": "monthly orders report",
                  "ticket": "OPS-4182"})
    browser.click("#preview")
    preview = browser.text("#preview-result")
    assert "level 1: 1 of manager, owner" in preview and "level 2: 1 of group:security" in preview, preview
    assert "Recommended" in preview and browser.text("#recommendation").split()[0].endswith("m"), preview
    browser.shot("request-preview")
    browser.click("#submit")
    flash = browser.text(".flash.ok")
    assert "is PENDING" in flash, flash
    SHARED["id"] = flash.split()[1]
    assert browser.find(f"#mine tr[data-id='{SHARED['id']}']")


def test_a_requests_recommendation_is_for_who_may_see_it(web_stack: WebStack) -> None:
    """RecommendDuration by request_id (what the approve screen shows): the requester's answer
    for an approver who sees the request; refused to one who may not see it, or mixed with fields."""
    ask = access_pb2.RecommendDurationRequest(request_id=SHARED["id"])
    mine = web_stack.cp.client("alice").access.RecommendDuration(access_pb2.RecommendDurationRequest(
        resource="orders-db", role="readonly", reason="monthly orders report", ticket="OPS-4182"))
    for_bob = web_stack.cp.client("bob").access.RecommendDuration(ask)
    assert for_bob.minutes == mine.minutes and for_bob.explanation == mine.explanation  # alice's, not bob's
    with pytest.raises(grpc.RpcError) as e:
        web_stack.cp.client("cora").access.RecommendDuration(ask)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        web_stack.cp.client("bob").access.RecommendDuration(access_pb2.RecommendDurationRequest(
            request_id=SHARED["id"], resource="orders-db"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_alice_approving_her_own_request_is_refused(web_stack: WebStack, browser: Browser) -> None:
    browser.open(f"/requests/{SHARED['id']}")
    browser.click("form.decide button[value=approve]")
    refusal = browser.text("#refusal")
    assert "PERMISSION_DENIED" in refusal and "[" in refusal, refusal  # readable detail + stable code
    assert "Traceback" not in browser.driver.page_source
    browser.shot("refused-own-approval")


def test_user_text_is_shown_literally(web_stack: WebStack, browser: Browser) -> None:
    made = web_stack.cp.client("alice").access.CreateRequest(access_pb2.CreateRequestRequest(
        resource="orders-db", role="readonly", reason=HOSTILE, ticket="<i>T-1</i>"))
    browser.open("/request")
    row = browser.text(f"#mine tr[data-id='{made.request.id}'] .reason")
    assert "<b>report</b> <script>alert(1)</script>" in row, row  # markup shown as text
    assert "\\x1b[31mred\\x1b[0m" in row and "\\u202eevil" in row, row  # controls shown as escapes
    source = browser.driver.page_source
    assert "\x1b" not in source and "\u202e" not in source and "<b>report" not in source
    assert browser.find_all("b") == [] and browser.find_all("main script") == []
    web_stack.cp.client("alice").access.Cancel(access_pb2.CancelRequest(id=made.request.id))


def test_bob_then_sam_approve(web_stack: WebStack, browser: Browser) -> None:
    rid = SHARED["id"]
    browser.sign_in("bob")
    browser.open("/approve")
    item = f"article.waiting[data-id='{rid}']"
    text = browser.text(item)
    assert "monthly orders report" in text and "OPS-4182" in text and "recommended" in text, text
    assert "alice's recent requests" in text
    browser.shot("approve")
    browser.fill({"comment": "ok for the report"}, within=item)
    browser.click(f"{item} button[value=approve]")
    assert f"{rid}: approved" in browser.text(".flash.ok")
    assert not browser.find_all(item)  # bob's level is done: no longer his to approve

    browser.sign_in("sam")
    browser.open("/approve")
    assert "level 1: approved by bob" in browser.text(item)
    browser.click(f"{item} button[value=approve]")
    assert f"{rid}: approved" in browser.text(".flash.ok")
    state = web_stack.cp.client("admin").access.GetRequest(access_pb2.GetRequestRequest(id=rid)).state
    assert state == 2  # ACTIVE


def test_sam_reviews_break_glass(web_stack: WebStack, browser: Browser) -> None:
    admin = web_stack.cp.client("admin").access
    glass = web_stack.cp.client("alice").access.CreateRequest(access_pb2.CreateRequestRequest(
        resource="web-prod-01", login="root", reason="outage: payments down", emergency=True)).request
    assert glass.state == 2  # break-glass: active at once, reviewed afterwards
    browser.open("/approve")
    item = f"article.waiting[data-id='{glass.id}']"
    assert "outage: payments down" in browser.text(item)
    browser.fill({"comment": "checked the incident"}, within=item)
    browser.click(f"{item} button[value='0']")
    assert f"{glass.id}: reviewed" in browser.text(".flash.ok")
    assert not browser.find_all(item)
    assert admin.GetRequest(access_pb2.GetRequestRequest(id=glass.id)).review_state == 2  # REVIEWED
    admin.Revoke(access_pb2.RevokeRequest(id=glass.id, reason="outage over"))  # the dashboard counts one grant


def test_alice_extends_and_releases(web_stack: WebStack, browser: Browser) -> None:
    browser.sign_in("alice")
    row = f"#mine tr[data-id='{SHARED['id']}']"
    assert "ACTIVE" in browser.text(row)
    browser.fill({"duration": "15m", "justification": "report runs long"}, within=row)
    browser.click(f"{row} form.extend button")
    assert f"extension of {SHARED['id']} asked for" in browser.text(".flash.ok")
    browser.shot("request")
    # An auto-approved grant (dev-auto), released early from the same list.
    browser.fill({"resource": "demo", "login": "demo", "reason": "first look"})
    browser.click("#submit")
    flash = browser.text(".flash.ok")
    assert "is ACTIVE" in flash, flash
    auto = flash.split()[1]
    browser.click(f"#mine tr[data-id='{auto}'] form[action$='/release'] button")
    assert f"grant {auto} released" in browser.text(".flash.ok")
    assert "EXPIRED" in browser.text(f"#mine tr[data-id='{auto}']")


def test_csrf_and_headers(web_stack: WebStack, browser: Browser) -> None:
    cookie = browser.driver.get_cookie("__Host-jitgate-session")
    assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    with web_stack.http({"__Host-jitgate-session": cookie["value"]}) as http:
        page = http.get("/dashboard")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"]
        target = f"/dashboard/{SHARED['id']}/revoke"
        for data, origin in (({"reason": "x"}, web_stack.url),                          # no token
                             ({"reason": "x", "csrf_token": "forged"}, web_stack.url),  # a wrong token
                             ({"reason": "x"}, "https://evil.example")):               # another site
            answer = http.post(target, data=data, headers={"origin": origin})
            assert answer.status_code == 403 and "refused" in answer.text, answer.text
        long = http.post(target, data={"reason": "x" * 5000}, headers={"origin": web_stack.url})
        assert long.status_code == 400 and "reason is longer than 2048 characters" in long.text, long.text
        assert "/revoke" not in page.text  # alice is no admin: her dashboard offers no revoke
    still = web_stack.cp.client("admin").access.GetRequest(access_pb2.GetRequestRequest(id=SHARED["id"]))
    assert still.state == 2  # none of them revoked anything


def test_dashboard_numbers_change_and_admin_revokes(web_stack: WebStack, browser: Browser) -> None:
    browser.sign_in("admin")
    browser.open("/dashboard")
    assert _figure(browser, "active") == SHARED["active"] + 1
    assert browser.find_all("svg.chart rect.bar")
    assert "extension asked: +15m" in browser.text("#pending")  # alice's extension waits on approval
    browser.shot("dashboard")
    row = f"#active tr[data-id='{SHARED['id']}']"
    browser.fill({"reason": "report done"}, within=row)
    browser.click(f"{row} button")
    assert "revoked" in browser.text(".flash.ok")
    assert _figure(browser, "active") == SHARED["active"]
    browser.open(f"/audit?subject={SHARED['id']}")
    events = browser.text("#events")
    assert "request.created" in events and "grant.revoked" in events, events
    browser.shot("audit")


def test_sign_out_drops_the_session(web_stack: WebStack, browser: Browser) -> None:
    cookie = browser.driver.get_cookie("__Host-jitgate-session")
    browser.sign_out()
    assert browser.path == "/auth/signin" and "signed out" in browser.text()
    with web_stack.http({"__Host-jitgate-session": cookie["value"]}) as http:  # it names nothing any more
        answer = http.get("/request")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/auth/signin")


@pytest.fixture(autouse=True)
def _log_on_failure(web_stack: WebStack, request: pytest.FixtureRequest) -> Any:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(web_stack.log.read_text()[-3000:])
