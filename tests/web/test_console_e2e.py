"""The web console end to end in Debian's Chromium: sign in through the provider, request, approve
across two levels, a refusal shown as a message, the dashboard, CSRF and CSP, literal user text.

One stack (provider, control plane, `jitgate web`) and one browser for the module; the tests
run in order and build on each other (alice's request is what bob and sam approve).
"""
from __future__ import annotations

from tests.web.conftest import Browser, WebStack


def test_not_signed_in_is_sent_to_sign_in(web_stack: WebStack, browser: Browser) -> None:
    browser.driver.delete_all_cookies()
    browser.open("/approve")
    assert browser.path == "/auth/signin"
    assert "Sign in to jitgate" in browser.text()
    browser.shot("signin")


def test_sign_in_through_the_provider(web_stack: WebStack, browser: Browser) -> None:
    browser.sign_in("alice")
    assert browser.path == "/request"
    assert browser.text(".who .person") == "alice"
