"""The console's pure parts: form bounds, the CSRF/Origin check, web-session expiry, where a
sign-in may send the browser, what templates print, the chart's numbers (no I/O)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from markupsafe import Markup

from web.charts import DayCounts, bar_chart
from web.forms import MAX_BODY_BYTES, FormError, parse_form, path_id
from web.pages import back_of, shown
from web.security import CsrfError, check_change
from web.session import Person, SessionStore
from web.settings import SettingsError, WebSettings
from web.signin import safe_next

FORM = "application/x-www-form-urlencoded"
ORIGIN = "https://console.example.com"


def test_a_form_within_bounds_is_read() -> None:
    form = parse_form(b"reason=monthly+report%3Cb%3E&ticket=OPS-1&csrf_token=t", FORM + "; charset=utf-8")
    assert form.get("reason") == "monthly report<b>" and form.text("ticket") == "OPS-1"


@pytest.mark.parametrize(("body", "kind", "text"), [
    (b"reason=x", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"),
    (b"reason=" + b"x" * MAX_BODY_BYTES, FORM, "larger than 16 KiB"),
    (b"reason=" + b"x" * 2049, FORM, "reason is longer than 2048 characters"),
    (b"reason=" + b"%C3%A9" * 1025, FORM, "reason is longer than 2048"),  # 1025 characters, 2050 bytes
    (b"ticket=" + b"t" * 257, FORM, "ticket is longer than 256"),
    (b"resource=a&resource=b", FORM, "given twice"),
    (b"evil=1", FORM, "unknown form field `evil`"),
    (b"&".join(b"reason=%d" % i for i in range(30)), FORM, "more than 24 fields"),
    ("reason=é".encode(), FORM, "malformed"),
])
def test_a_form_over_a_bound_is_refused_plainly(body: bytes, kind: str, text: str) -> None:
    with pytest.raises(FormError) as e:
        parse_form(body, kind)
    assert text in str(e.value)


def test_a_path_id_past_the_api_bound_is_refused() -> None:
    assert path_id({"id": "a" * 64}) == "a" * 64
    with pytest.raises(FormError) as e:
        path_id({"id": "a" * 65}, "request id")
    assert str(e.value) == "the request id is longer than 64 characters"


def test_required_fields_say_so() -> None:
    with pytest.raises(FormError, match="reason is required"):
        parse_form(b"reason=++", FORM).text("reason", required=True)


@pytest.mark.parametrize(("expected", "sent", "origin", "text"), [
    ("tok", "tok", None, "Origin header missing"),
    ("tok", "tok", "null", "Origin header missing or foreign"),
    ("tok", "tok", "https://evil.example", "foreign"),
    ("tok", "", ORIGIN, "token is missing or stale"),
    ("tok", "tok2", ORIGIN, "token is missing or stale"),
    ("", "", ORIGIN, "token is missing or stale"),
])
def test_csrf_and_origin_refusals(expected: str, sent: str, origin: str | None, text: str) -> None:
    with pytest.raises(CsrfError, match=text):
        check_change(expected, sent, origin, ORIGIN)


def test_csrf_passes_with_the_token_from_this_origin() -> None:
    check_change("tok", "tok", ORIGIN.upper(), ORIGIN)  # origins compare case-insensitively


class _Channel:
    closed = False

    def close(self) -> None:
        self.closed = True


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _store(clock: _Clock, max_sessions: int = 10) -> SessionStore:
    return SessionStore(timedelta(minutes=30), timedelta(hours=8), max_sessions, clock=clock)


def _person(clock: _Clock, cert_hours: float = 12) -> tuple[Person, Any]:
    channel = _Channel()
    return Person("alice", ["sre"], channel, clock.now + timedelta(hours=cert_hours)), channel  # type: ignore[arg-type]


def test_a_session_ends_when_idle_and_sign_in_restarts_nothing() -> None:
    clock = _Clock()
    store = _store(clock)
    person, channel = _person(clock)
    session = store.create(person)
    clock.now += timedelta(minutes=29)
    assert store.get(session.id) is session  # a page restarts the idle clock
    clock.now += timedelta(minutes=29)
    assert store.get(session.id) is session
    clock.now += timedelta(minutes=31)
    assert store.get(session.id) is None and channel.closed  # the key went with the channel


def test_a_session_ends_at_its_absolute_limit_and_at_the_certificate_end() -> None:
    clock = _Clock()
    store = _store(clock)
    person, _ = _person(clock, cert_hours=12)
    session = store.create(person)
    for _ in range(17):  # busy all day: a page every 29 minutes
        clock.now += timedelta(minutes=29)
        store.get(session.id)
    assert store.get(session.id) is None  # 8 h 13 min after sign-in
    short, channel = _person(clock, cert_hours=0.25)
    s2 = store.create(short)
    clock.now += timedelta(minutes=16)
    assert store.get(s2.id) is None and channel.closed  # the certificate ended first


def test_sign_out_and_bounds() -> None:
    clock = _Clock()
    store = _store(clock, max_sessions=2)
    first, channel = _person(clock)
    s1 = store.create(first)
    store.create(_person(clock)[0])
    third, third_channel = _person(clock)
    with pytest.raises(OverflowError):
        store.create(third)
    assert third_channel.closed
    assert store.end(s1.id) is s1 and channel.closed and store.get(s1.id) is None
    assert store.get("x" * 500) is None and store.get(None) is None


@pytest.mark.parametrize(("path", "want"), [
    ("/approve", "/approve"), ("/requests/abc?x=1", "/requests/abc?x=1"), (None, "/"), ("", "/"),
    ("//evil.example/x", "/"), ("https://evil.example", "/"), ("/\\evil", "/"), ("/a\nb", "/"), ("/" + "a" * 300, "/"),
])
def test_after_sign_in_only_a_local_path(path: str | None, want: str) -> None:
    assert safe_next(path) == want


def test_templates_print_controls_as_escapes_and_keep_our_markup() -> None:
    assert shown("red \x1b[31m\u202eevil\nnext") == "red \\x1b[31m\\u202eevil\nnext"
    assert shown(Markup("<b>ours</b>")) == Markup("<b>ours</b>") and shown(None) == "" and shown(3) == 3


def test_back_from_a_refusal() -> None:
    assert back_of("/approve/abc") == "/approve" and back_of("/auth/callback") == "/" and back_of("/") == "/"


def test_chart_stacks_and_scales() -> None:
    days = [DayCounts(date(2026, 12, 1), granted=2, refused=1), DayCounts(date(2026, 12, 2)),
            DayCounts(date(2026, 12, 3), pending=4)]
    chart = bar_chart(days)
    assert chart.total == 7 and [b.series for b in chart.bars] == ["granted", "refused", "pending"]
    tallest = max(b.height for b in chart.bars)
    assert tallest == chart.bars[-1].height and chart.bars[-1].y == pytest.approx(chart.baseline - tallest)
    assert [v for _y, v in chart.ticks] == [0, 2, 4]
    assert bar_chart([]).bars == []


@pytest.mark.parametrize(("over", "text"), [
    ({"public_url": "http://console.example.com"}, "must be https"),
    ({"public_url": "https://console.example.com/app"}, "no path"),
    ({"ca_pem": b"nope"}, "not a PEM certificate"),
    ({"idle_timeout": timedelta(hours=9)}, "idle <= absolute"),
])
def test_bad_settings_fail_at_start(over: dict[str, Any], text: str) -> None:
    values: dict[str, Any] = {"server": "127.0.0.1:7443", "login_server": "127.0.0.1:7444",
                              "ca_pem": b"-----BEGIN CERTIFICATE-----\n", "public_url": "https://c.example.com:8443"}
    assert WebSettings(**values).redirect_uri == "https://c.example.com:8443/auth/callback"
    with pytest.raises(SettingsError, match=text):
        WebSettings(**{**values, **over})


def test_sign_ins_under_way_are_bounded_per_address_and_in_all() -> None:
    from web.signin import PER_SOURCE, PendingSignIn, SignInError, SignInFlow

    clock = _Clock()
    settings = WebSettings(server="127.0.0.1:1", login_server="127.0.0.1:2", public_url=ORIGIN,
                           ca_pem=b"-----BEGIN CERTIFICATE-----\n", max_pending_signins=PER_SOURCE + 5)
    flow = SignInFlow(settings, clock=clock)

    def add(i: int, source: str) -> None:
        with flow._lock:
            flow._check_room_locked(source)
            flow._pending[f"p{source}{i}"] = PendingSignIn(f"p{source}{i}", "st", "n", "v", "t", clock.now, "/", source)

    for i in range(PER_SOURCE):
        add(i, "10.0.0.1")
    with pytest.raises(SignInError, match="from your address"):
        add(99, "10.0.0.1")
    for i in range(5):
        add(i, f"10.0.1.{i}")  # others still get in, up to the total
    with pytest.raises(SignInError, match="too many sign-ins"):
        add(0, "10.0.2.1")
    with pytest.raises(SignInError, match="state differs"):
        flow.take("p10.0.0.10", "other")
    assert flow.take("p10.0.0.10", "st").next_path == "/"  # once
    with pytest.raises(SignInError, match="unknown"):
        flow.take("p10.0.0.10", "st")
    clock.now += timedelta(minutes=11)  # pending sign-ins lapse with the control plane's nonce
    add(0, "10.0.2.1")
    assert len(flow._pending) == 1
