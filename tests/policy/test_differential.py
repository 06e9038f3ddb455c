"""Differential test: the indexed engine gives the naive reference's decision, always.

Hypothesis generates small policy sets (rules mixing conjuncts the index
understands with ones only CEL can decide, labels some resources lack,
every effect and approval mode) and requests against them.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import PolicyRequest, load_policy_text

ATOMS = [
    'resource.labels.env == "dev"',
    'resource.labels.env == "prod"',
    '"staging" == resource.labels.env',
    'resource.labels.env in ["dev", "staging"]',
    'resource.labels.tier == "gold"',
    'resource.labels["tier"] in ["gold", "silver"]',
    "has(resource.labels.tier)",
    'resource.kind == "ssh"',
    'resource.kind == "postgres"',
    'resource.name == "r1"',
    'request.resource in ["r0", "r2"]',
    'request.login == "root"',
    'request.role == "rw"',
    'request.login in ["ops", "root"]',
    "request.emergency",
    "!request.emergency",
    "!!request.emergency",
    '"a" in user.groups',
    'user.name == "u1"',
    'request.user in ["u0", "u2"]',
    '"c" in user.groups',
    'now.getHours("UTC") < 12',
    'now.getHours("Europe/Berlin") >= 18',
    "history.granted_90d >= 3",
    "history.median_minutes > 30.0",
    'request.duration > duration("1h")',
    "request.extension == 0",
    "true",
    "false",
    '(resource.labels.env == "prod" || request.emergency)',
    'resource.labels.tier != "gold"',
    "user.attributes.level > 2",
    "history.revoked_90d >= 1",
    "2 > history.granted_90d",
    "history.flagged_90d == 0",
    'request.duration <= duration("1h30m")',
    'duration("1h") < request.duration',
    'request.ticket != ""',
    'request.ticket == "T-1"',
    "request.extension > 0",
    'resource.labels.env != "prod"',
    'resource.labels.tier != "gold"',
    'request.duration == duration("60m")',
]
APPROVERS = ["manager", "owner", "group:a", "group:b", "user:u0", "user:u3"]
USERS = ["u0", "u1", "u2", "u3"]


@st.composite
def policy_sets(draw: Any) -> dict[str, Any]:
    users = {}
    for i, name in enumerate(USERS):
        u: dict[str, Any] = {"groups": draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True))}
        if i and draw(st.booleans()):
            u["manager"] = USERS[i - 1]
        if draw(st.booleans()):
            u["attributes"] = {"level": draw(st.integers(0, 5))}
        users[name] = u
    users["u0"]["groups"] = ["a", "b", "c"]  # every group exists
    resources = {}
    for i in range(draw(st.integers(1, 5))):
        labels = {"env": draw(st.sampled_from(["dev", "prod", "staging"]))}
        if draw(st.booleans()):
            labels["tier"] = draw(st.sampled_from(["gold", "silver", "bronze"]))
        if draw(st.booleans()):
            r = {"kind": "ssh", "address": f"h{i}:22", "logins": ["ops", "root"]}
        else:
            r = {"kind": "postgres", "address": f"d{i}:5432", "roles": ["ro", "rw"]}
        r["labels"] = labels
        r["owners"] = draw(st.lists(st.sampled_from(["u1", "group:b", "user:u2"]), unique=True, max_size=2))
        resources[f"r{i}"] = r
    rules = []
    for i in range(draw(st.integers(1, 7))):
        atoms = draw(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=3))
        effect = draw(st.sampled_from(["allow", "allow", "require", "deny"]))
        rule: dict[str, Any] = {"name": f"rule{i}", "when": " && ".join(atoms)}
        if effect != "allow":
            rule["effect"] = effect
        if effect == "deny":
            if draw(st.booleans()):
                rule["message"] = f"no, says rule{i}"
        else:
            mode = draw(st.sampled_from(["auto", "levels", "break_glass"] + (["none"] if effect == "require" else [])))
            if mode in ("auto", "break_glass"):
                rule["approval"] = mode
            elif mode == "levels":
                rule["approval"] = {"levels": [
                    {"approvers": draw(st.lists(st.sampled_from(APPROVERS), min_size=1, max_size=2, unique=True))}
                    for _ in range(draw(st.integers(1, 2)))]}
            if mode == "break_glass":
                rule["review"] = draw(st.lists(st.sampled_from(APPROVERS), min_size=1, max_size=2, unique=True))
            if draw(st.booleans()):
                rule["max_duration"] = draw(st.sampled_from(["30m", "1h", "2h", "8h"]))
            if draw(st.booleans()):
                rule["max_extensions"] = draw(st.integers(0, 3))
            if draw(st.booleans()):
                rule["session"] = {
                    draw(st.sampled_from(["pty", "exec", "sftp", "port_forwarding"])): draw(st.booleans())
                }
        rules.append(rule)
    return {"version": 1, "users": users, "resources": resources, "rules": rules}


@st.composite
def requests(draw: Any, doc: dict[str, Any]) -> PolicyRequest:
    name = draw(st.sampled_from([*sorted(doc["resources"]), "missing"]))
    res = doc["resources"].get(name, {"kind": "ssh"})
    extra: dict[str, Any] = {}
    if res["kind"] == "ssh":
        extra["login"] = draw(st.sampled_from(["ops", "root", "ops", "nobody"]))
    else:
        extra["role"] = draw(st.sampled_from(["ro", "rw", "rw", "admin"]))
    return PolicyRequest(
        user=draw(st.sampled_from([*USERS, "stranger"])), resource=name,
        duration=timedelta(minutes=draw(st.sampled_from([15, 60, 90, 300]))),
        time=datetime(2026, 3, 2, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 23))),
        emergency=draw(st.booleans()), extension=draw(st.integers(0, 3)),
        ticket=draw(st.sampled_from(["", "T-1", "T-2"])),
        history={"granted_90d": draw(st.integers(0, 5)), "revoked_90d": draw(st.integers(0, 2)),
                 "median_minutes": float(draw(st.integers(0, 60)))},
        **extra)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_indexed_equals_naive(data: st.DataObject) -> None:
    doc = data.draw(policy_sets())
    ps = load_policy_text(yaml.safe_dump(doc, sort_keys=False), run_tests=False)
    for _ in range(8):
        req = data.draw(requests(doc))
        assert ps.decide(req).to_json() == ps.naive_decide(req).to_json(), (req, ps.candidate_rules(req.resource))


def test_index_skips_rules_that_cannot_match() -> None:
    """The index is not a no-op: a resource sees only the rules its kind, name and labels allow."""
    doc = {"version": 1, "users": {"u0": {}},
           "resources": {f"r{i}": {"kind": "ssh", "address": f"h{i}:22", "logins": ["ops"],
                                   "labels": {"env": "prod" if i % 2 else "dev"}} for i in range(6)},
           "rules": [{"name": f"only-r{i}", "when": f'resource.name == "r{i}" && history.granted_90d > 1',
                      "approval": "auto"} for i in range(6)]
           + [{"name": "prod", "when": 'resource.labels.env == "prod"', "approval": "auto"},
              {"name": "glass", "when": "request.emergency", "approval": "break_glass", "review": ["user:u0"]}]}
    ps = load_policy_text(yaml.safe_dump(doc))
    assert ps.candidate_rules("r3") == ["only-r3", "prod", "glass"]
    assert ps.candidate_rules("r2") == ["only-r2", "glass"]
