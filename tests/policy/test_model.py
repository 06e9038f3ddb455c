"""Durations, requests, decisions, the public API and thread safety."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import policy
from policy import (
    Decision,
    PolicyError,
    PolicyLoadError,
    PolicyRequest,
    RequestError,
    format_duration,
    load_policy_set,
    parse_duration,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = "2026-11-18T10:00:00Z"


def test_public_api_is_exported_explicitly() -> None:
    for name in ("load_policy_set", "PolicyLoadError", "PolicyError", "PolicySet", "PolicyRequest",
                 "Decision", "ApprovalLevel", "SessionOptions", "parse_duration", "format_duration",
                 "TestResult", "User", "Resource"):
        assert name in policy.__all__ and hasattr(policy, name)
    assert sorted(policy.__all__) == policy.__all__


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400),
                                          ("2d", 172800), ("1d2h3m4s", 93784), ("0s", 0)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "1", "h", "1x", "30m1h", "1h1h", "-5m", "1.5h", " ", "1h 30m"])
def test_parse_duration_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.integers(0, 10**7))
def test_duration_round_trip(seconds: int) -> None:
    td = timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td


def test_format_duration_is_humane() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(hours=48)) == "48h"
    assert format_duration(timedelta(0)) == "0s"


def test_request_from_mapping_defaults() -> None:
    r = PolicyRequest.from_mapping({"user": "a", "resource": "r", "login": "x", "duration": "1h", "time": T0})
    assert (r.reason, r.ticket, r.emergency, r.extension, r.history) == ("", "", False, 0, {})
    assert r.time == datetime(2026, 11, 18, 10, tzinfo=UTC)
    assert r.history_value("granted_90d") == 0 and r.history_value("median_minutes") == 0.0


@pytest.mark.parametrize("mapping,needle", [
    ({"resource": "r", "duration": "1h", "time": T0}, "needs `user`"),
    ({"user": "a", "resource": "r", "duration": "1 hour", "time": T0}, "not a duration"),
    ({"user": "a", "resource": "r", "duration": "0s", "time": T0}, "longer than 0s"),
    ({"user": "a", "resource": "r", "duration": "1h"}, "needs `time`"),
    ({"user": "a", "resource": "r", "duration": "1h", "time": "2026-11-18T10:00:00"}, "time zone"),
    ({"user": "a", "resource": "r", "duration": "1h", "time": "yesterday"}, "RFC 3339"),
    ({"user": "a", "resource": "r", "duration": "1h", "time": T0, "emergency": "yes"}, "true or false"),
    ({"user": "a", "resource": "r", "duration": "1h", "time": T0, "extension": -1}, "whole number"),
    ({"user": "a", "resource": "r", "duration": "1h", "time": T0, "history": {"granted": 1}}, "unknown history field"),
    ({"user": "a", "resource": "r", "duration": "1h", "time": T0, "history": {"granted_90d": 1.5}}, "whole number"),
    ({"user": "a", "resource": "r", "duration": "1h", "time": T0, "colour": "red"}, "unknown request field `colour`"),
    ({"user": 7, "resource": "r", "duration": "1h", "time": T0}, "`user` must be text"),
    (["not", "a", "mapping"], "must be a mapping"),
])
def test_request_from_mapping_refuses(mapping: object, needle: str) -> None:
    with pytest.raises(RequestError, match=None) as info:
        PolicyRequest.from_mapping(mapping)  # type: ignore[arg-type]
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


@given(
    st.builds(
        PolicyRequest,
        user=st.text(min_size=1, max_size=8),
        resource=st.text(min_size=1, max_size=8),
        duration=st.integers(1, 10**6).map(lambda s: timedelta(seconds=s)),
        time=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])).map(
            lambda d: d.replace(microsecond=0)
        ),
        login=st.text(max_size=5),
        role=st.text(max_size=5),
        reason=st.text(max_size=10),
        ticket=st.text(max_size=5),
        emergency=st.booleans(),
        extension=st.integers(0, 5),
        history=st.fixed_dictionaries(
            {}, optional={"granted_90d": st.integers(0, 99), "median_minutes": st.floats(0, 1e4)}
        ),
        id=st.text(max_size=5),
    )
)
@settings(max_examples=60)
def test_request_mapping_round_trip(req: PolicyRequest) -> None:
    assert PolicyRequest.from_mapping(req.to_mapping()) == req


def test_decision_json_round_trip_and_shape() -> None:
    ps = load_policy_set(ROOT / "policies.yaml")
    req = PolicyRequest.from_mapping({"user": "alice", "resource": "web-prod-01", "login": "deploy",
                                      "duration": "1h", "time": T0})
    d = ps.decide(req)
    j = d.to_json()
    assert list(j) == ["effect", "approval", "max_duration", "max_extensions", "session", "rules", "message",
                       "policy_version", "errors", "activate", "claim_within", "max_sessions"]
    assert j["activate"] == "on_approval" and j["claim_within"] is None and j["max_sessions"] is None
    assert j["approval"] == {"mode": "levels", "levels": [{"approvers": ["manager", "owner"], "min": 1},
                                                          {"approvers": ["group:security"], "min": 1}]}
    assert j["max_duration"] == "2h" and j["policy_version"] == ps.version
    assert Decision.from_json(j) == d
    deny = ps.decide(PolicyRequest.from_mapping({"user": "cora", "resource": "orders-db", "role": "readonly",
                                                 "duration": "1h", "time": T0}))
    assert deny.to_json()["approval"] is None and Decision.from_json(deny.to_json()) == deny
    with pytest.raises(ValueError):
        Decision.from_json({"effect": "maybe"})


def test_policy_error_prints_file_line_col() -> None:
    e = PolicyError("p.yaml", 4, 11, "policy.x", "rule `r`: bad")
    assert str(e) == "p.yaml:4:11: rule `r`: bad"
    assert str(PolicyLoadError([e])) == "p.yaml:4:11: rule `r`: bad"


def test_decide_is_safe_from_many_threads() -> None:
    """cel-python's compiled programs share module globals; the engine's lock keeps answers right."""
    ps = load_policy_set(ROOT / "policies.yaml")
    reqs = [PolicyRequest.from_mapping({"user": u, "resource": r, "login": "deploy", "duration": "1h",
                                        "time": f"2026-11-18T{h:02d}:00:00Z", "emergency": e})
            for u in ("alice", "bob", "cora") for r in ("web-prod-01", "web-dev-01", "web-staging-01")
            for h in (3, 12, 20) for e in (False, True)]
    want = [ps.naive_decide(r).to_json() for r in reqs]
    wrong: list[int] = []

    def worker() -> None:
        for _ in range(3):
            for i, r in enumerate(reqs):
                if ps.decide(r).to_json() != want[i]:
                    wrong.append(i)
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_is_eligible_takes_the_documented_keywords() -> None:
    ps = load_policy_set(ROOT / "policies.yaml")
    assert ps.is_eligible(approvers=["manager"], approver="bob", requester="alice", resource="web-prod-01")
    assert not ps.is_eligible(approvers=["manager"], approver="alice", requester="alice", resource="web-prod-01")
    assert ps.is_eligible(approvers=["owner"], approver="admin", requester="alice", resource="web-prod-01")
    assert not ps.is_eligible(approvers=["owner"], approver="admin", requester="alice", resource="orders-db")
