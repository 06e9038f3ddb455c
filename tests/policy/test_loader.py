"""Loading files and folders: merging, locations, versions, tests, warnings."""
from __future__ import annotations

from pathlib import Path

import pytest

from policy import PolicyLoadError, PolicyRequest, load_policy_set, load_policy_text

ROOT = Path(__file__).resolve().parents[2]
T0 = "2026-11-18T10:00:00Z"

PEOPLE = """\
version: 1
settings: {default_max_extensions: 1}
users:
  ann: {groups: [sre], manager: max}
  max: {}
groups:
  security: [max]
"""
HOSTS = """\
version: 1
resources:
  h1: {kind: ssh, address: "h1:22", labels: {env: dev}, logins: [ops], owners: [group:sre]}
"""
RULES = """\
version: 1
rules:
  - {name: dev, when: 'resource.labels.env == "dev"', approval: {levels: [{approvers: [group:security]}]}}
tests:
  - name: dev needs security
    request: {user: ann, resource: h1, login: ops, duration: 1h, time: "2026-11-18T10:00:00Z"}
    expect: {effect: allow, approval: levels, max_extensions: 1}
"""


def _folder(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "policies"
    d.mkdir()
    for name, text in files.items():
        (d / f"{name}.yaml").write_text(text)
    return d


def test_example_policy_loads_and_its_tests_pass() -> None:
    ps = load_policy_set(ROOT / "policies.yaml")
    results = ps.run_tests()
    assert results and all(r.passed for r in results), [r.failures for r in results if not r.passed]
    assert ps.warnings == []
    assert {"alice", "bob", "sam", "cora", "admin"} <= set(ps.users)
    assert ps.groups_of("alice") == {"sre", "oncall"} and ps.groups_of("admin") == {"admins"}
    demo = ps.resources["demo"]
    assert (demo.kind, demo.address, demo.labels, demo.logins) == (
        "ssh",
        "127.0.0.1:2222",
        {"env": "dev"},
        ("demo", "root"),
    )
    db = ps.resources["demo-db"]
    assert (db.kind, db.roles, db.credentials) == ("postgres", ("readonly", "readwrite"), "env:DEMO_DB")
    assert ps.users["alice"].manager == "bob" and ps.users["alice"].attributes == {"team": "payments"}
    assert ps.settings.grace_period.total_seconds() == 300 and ps.settings.duration_step.total_seconds() == 900


def test_folder_merges_files_in_name_order(tmp_path: Path) -> None:
    d = _folder(tmp_path, a_people=PEOPLE, b_hosts=HOSTS, c_rules=RULES)
    ps = load_policy_set(d)
    assert [r.passed for r in ps.run_tests()] == [True]
    assert ps.source_path == d
    one_file = load_policy_text(PEOPLE + HOSTS.replace("version: 1\n", "") + RULES.replace("version: 1\n", ""))
    assert one_file.version == ps.version  # the version is of the content, not of the file layout


def test_folder_reports_duplicates_across_files_with_both_places(tmp_path: Path) -> None:
    d = _folder(tmp_path, a=PEOPLE, b=HOSTS, c=RULES, d=PEOPLE.replace("ann: {groups: [sre], manager: max}\n  ", ""))
    with pytest.raises(PolicyLoadError) as info:
        load_policy_set(d)
    msgs = [str(e) for e in info.value.errors]
    assert any(
        m.startswith(f"{d / 'd.yaml'}:2:11: `settings` given twice (first at {d / 'a.yaml'}:2:11)") for m in msgs
    ), msgs
    assert any(f"{d / 'd.yaml'}:4:3: duplicate user `max` (first at {d / 'a.yaml'}:5:3)" in m for m in msgs), msgs
    assert any("duplicate group `security`" in m for m in msgs), msgs


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_set(tmp_path / "nope.yaml")
    assert info.value.errors[0].code == "policy.io"
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolicyLoadError) as info:
        load_policy_set(tmp_path / "empty")
    assert "no .yaml files" in info.value.errors[0].message


def test_failing_test_refuses_by_default_but_not_for_the_test_command(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(PEOPLE + HOSTS.replace("version: 1\n", "") + RULES.replace("version: 1\n", "").replace(
        "effect: allow, approval: levels", "effect: allow, approval: auto"))
    with pytest.raises(PolicyLoadError) as info:
        load_policy_set(f)
    (err,) = info.value.errors
    assert err.code == "policy.test_failed" and err.line == 13
    assert "approval.mode: expected 'auto', got 'levels'" in err.message
    ps = load_policy_set(f, run_tests=False)
    (res,) = ps.run_tests()
    assert not res.passed and res.where() == f"{f}:13:5"


def test_missing_label_warns_and_fails_closed_at_decision() -> None:
    ps = load_policy_text("""\
version: 1
users: {ann: {}}
resources:
  a: {kind: ssh, address: "a:22", labels: {tier: gold}, logins: [ops]}
  b: {kind: ssh, address: "b:22", logins: [ops]}
rules:
  - {name: gold, when: 'resource.labels.tier == "gold"', approval: auto}
""")
    (w,) = ps.warnings
    assert w.code == "policy.missing_label" and (w.line, w.col) == (7, 25) and "(b)" in w.message
    d = ps.decide(
        PolicyRequest.from_mapping({"user": "ann", "resource": "b", "login": "ops", "duration": "1h", "time": T0})
    )
    assert d.effect == "deny" and d.rules == ["gold"] and "rule `gold`" in d.message and d.errors


def test_time_zones_in_cel() -> None:
    ps = load_policy_text("""\
version: 1
users: {ann: {}}
resources: {h: {kind: ssh, address: "h:22", logins: [ops]}}
rules:
  - {name: berlin-evening, when: 'now.getHours("Europe/Berlin") == 19', approval: auto}
""")
    def at(t: str) -> str:
        return ps.decide(PolicyRequest.from_mapping({"user": "ann", "resource": "h", "login": "ops",
                                                     "duration": "1h", "time": t})).effect
    assert at("2026-11-18T18:30:00Z") == "allow"   # 19:30 in Berlin (CET, UTC+1)
    assert at("2026-07-18T17:30:00Z") == "allow"   # 19:30 in Berlin (CEST, UTC+2)
    assert at("2026-11-18T19:30:00Z") == "deny"


def test_request_context_fields_reach_cel() -> None:
    ps = load_policy_text("""\
version: 1
users: {ann: {groups: [g], manager: bo, attributes: {level: 3}}, bo: {}}
resources: {h: {kind: ssh, address: "h:22", labels: {env: dev}, logins: [ops], owners: [bo]}}
rules:
  - name: all-fields
    when: >-
      request.user == "ann" && request.resource == "h" && request.login == "ops" && request.role == ""
      && request.duration == duration("1h30m") && request.reason == "why" && request.ticket == "T-1"
      && !request.emergency && request.extension == 1 && user.name == "ann" && "g" in user.groups
      && user.manager == "bo" && user.attributes.level == 3 && resource.name == "h" && resource.kind == "ssh"
      && resource.labels.env == "dev" && "bo" in resource.owners && history.granted_90d == 4
      && history.denied_90d == 0 && history.revoked_90d == 0 && history.flagged_90d == 1
      && history.median_minutes == 42.5 && now == timestamp("2026-11-18T10:00:00Z")
    approval: auto
""")
    base = {"user": "ann", "resource": "h", "login": "ops", "duration": "1h30m", "reason": "why",
            "ticket": "T-1", "extension": 1, "time": T0,
            "history": {"granted_90d": 4, "flagged_90d": 1, "median_minutes": 42.5}}
    assert ps.decide(PolicyRequest.from_mapping(base)).effect == "allow"
    assert ps.decide(PolicyRequest.from_mapping({**base, "ticket": "T-2"})).effect == "deny"


def test_hidden_files_in_a_policy_folder_are_ignored(tmp_path: Path) -> None:
    d = _folder(tmp_path, a_people=PEOPLE, b_hosts=HOSTS, c_rules=RULES)
    (d / ".github" / "workflows").mkdir(parents=True)
    (d / ".github" / "workflows" / "policy.yml").write_text("name: policy\non: [pull_request]\n")
    (d / "more").mkdir()
    (d / "more" / "x.yml").write_text("version: 1\nusers: {zoe: {}}\n")
    ps = load_policy_set(d)
    assert "zoe" in ps.users


def test_decide_fails_closed_on_an_internal_error() -> None:
    ps = load_policy_set(ROOT / "policies.yaml")
    req = PolicyRequest.from_mapping(
        {"user": "alice", "resource": "demo", "login": "demo", "duration": "1h", "time": T0}
    )
    ps._index.pop("demo")  # simulate a bug: the index lost a resource
    d = ps.decide(req)
    assert d.effect == "deny" and "internal error" in d.message and d.errors
    assert ps.naive_decide(req).effect == "allow"
