"""The evaluation budget, names and request bounds, in process (policy.limits)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from policy import PolicyLoadError, PolicyRequest, RequestError, cel, limits, load_policy_text, parse_duration
from policy.names import name_problem
from policy.request import request_from_json

BASE = """version: 1
users:
  alice: {groups: [sre]}
resources:
  web:
    kind: ssh
    address: 10.0.0.1:22
    logins: [deploy]
rules:
  - name: dev
    when: resource.name == "web"
    approval: auto
"""
DOUBLING = "[\"aaaaaaaaaaaaaaaa\"]" + ".map(x, x+x+x+x+x+x+x+x)" * 10 + ".size() > 0"
SHARED = "[[1]]" + ".map(x, [x,x,x,x,x,x,x,x])" * 10 + " == [[1]]"
REQUEST = {"user": "alice", "resource": "web", "login": "deploy", "duration": "1h",
           "time": "2026-01-01T10:00:00Z"}


@pytest.mark.parametrize("when", [DOUBLING, SHARED])
def test_rule_over_the_budget_fails_closed(when: str) -> None:
    """Cheap by the static estimate, exponential at evaluation: the budget stops it and the
    decision is a deny naming the rule (as any rule error)."""
    ps = load_policy_text(BASE + f"  - name: greedy\n    when: '{when}'\n    approval: auto\n", run_tests=False)
    d = ps.decide(PolicyRequest.from_mapping(REQUEST))
    assert d.effect == "deny" and d.rules == ["greedy"]
    assert f"over the CEL budget of {limits.MAX_DECISION_COST} units" in d.errors[0]


def test_budget_is_per_decision_and_normal_rules_fit() -> None:
    ps = load_policy_text(BASE.replace('resource.name == "web"', 'user.groups.exists(g, g == "sre")'),
                          run_tests=False)
    for _ in range(3):
        assert ps.decide(PolicyRequest.from_mapping(REQUEST)).effect == "allow"


def test_budget_counts_steps() -> None:
    compiled = cel.Cel().compile("[1,2,3].all(x, x > 0)")
    budget = cel.Budget(2 * limits.CEL_STEP_COST + 5)
    with pytest.raises(cel.CelBudgetExceeded):
        cel.evaluate(compiled, {}, budget)


@pytest.mark.parametrize("name,ok", [("alice", True), ("web-prod-01", True), ("dev access is automatic", True),
                                     ("José", True), ("山田太郎", True), ("やまだ", True), ("ad\u202emin", False),
                                     ("a\u200bdmin", False), ("\u0430dmin", False), ("admin\u00a0", False),
                                     ("x" * 300, False)])
def test_names(name: str, ok: bool) -> None:
    assert (name_problem(name) is None) == ok


def test_policy_durations_are_bounded() -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(BASE + "    max_duration: 400d\n")
    assert info.value.errors[0].code == "policy.bad_duration" and "maximum of 8784h" in info.value.errors[0].message
    assert parse_duration("366d") == limits.MAX_DURATION


@pytest.mark.parametrize("text,fragment", [
    ("[" * 100 + "]" * 100, "nested deeper"),
    ('{"user": "alice", "resource": "web", "duration": "99999999999999s", "time": "2026-01-01T00:00:00Z"}',
     "maximum"),
    ('{"user": "alice", "resource": "web", "duration": "1h", "extension": 99999999999,'
     ' "time": "2026-01-01T00:00:00Z"}', "from 0 to"),
    ("1" * 5000, "not JSON"),
])
def test_request_json_bounds(text: str, fragment: str) -> None:
    with pytest.raises(RequestError) as info:
        request_from_json(text)
    assert fragment in str(info.value)


def test_huge_duration_built_directly_is_a_clear_deny() -> None:
    """The control plane builds requests itself: a 1e12 s duration is refused by name, not an internal error."""
    ps = load_policy_text(BASE, run_tests=False)
    req = PolicyRequest.from_mapping(REQUEST)
    huge = PolicyRequest(**{**req.__dict__, "duration": timedelta(seconds=10**12)})
    d = ps.decide(huge)
    assert d.effect == "deny" and "between 1s and 8784h" in d.message and not d.errors
