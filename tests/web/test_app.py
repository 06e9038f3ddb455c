"""The console's app without a control plane: redirects, headers on every kind of answer,
refusals before any RPC (Starlette's TestClient, in process)."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from web.app import create_app
from web.security import CSP
from web.settings import WebSettings

URL = "https://console.example.com"


@pytest.fixture(scope="module")
def client() -> TestClient:
    settings = WebSettings(server="127.0.0.1:1", login_server="127.0.0.1:2", public_url=URL,
                           ca_pem=b"-----BEGIN CERTIFICATE-----\nnot used here\n-----END CERTIFICATE-----\n")
    return TestClient(create_app(settings), base_url=URL, follow_redirects=False, raise_server_exceptions=False)


def test_pages_need_a_session(client: TestClient) -> None:
    for path in ("/request", "/approve", "/dashboard", "/audit", "/requests/abc"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == f"/auth/signin?next={path}"
        assert answer.headers["content-security-policy"] == CSP


def test_every_answer_carries_the_headers(client: TestClient) -> None:
    for answer in (client.get("/auth/signin"), client.get("/static/console.css"), client.get("/nowhere"),
                   client.post("/request", data={"reason": "x"})):
        assert answer.headers["content-security-policy"] == CSP, answer.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    assert client.get("/nowhere").status_code == 404 and "no such page" in client.get("/nowhere").text


def test_changes_without_a_session_are_refused(client: TestClient) -> None:
    for path in ("/request", "/approve/abc", "/dashboard/abc/revoke", "/auth/signout"):
        answer = client.post(path, data={"csrf_token": "x"}, headers={"origin": URL})
        assert answer.status_code == 401 and "not signed in" in answer.text


def test_a_callback_not_started_here_is_refused(client: TestClient) -> None:
    answer = client.get("/auth/callback?code=c&state=s")
    assert answer.status_code == 400 and "unknown or took too long" in answer.text
    assert "Traceback" not in answer.text


def test_a_sign_in_with_the_control_plane_away_says_so(client: TestClient) -> None:
    answer = client.get("/auth/start")
    assert answer.status_code == 502 and "UNAVAILABLE" in answer.text and "Traceback" not in answer.text
