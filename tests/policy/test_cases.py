"""Data-driven semantics tests: one YAML file per numbered rule of POLICY.md.

Each file has a default `policy` and `cases`. A case is one of:
  request + expect         the decision (indexed and naive) must match `expect`
  eligible: [...]          PolicySet.is_eligible answers (rule 6)
  votes + expect_progress  approval progress after votes (rule 5)
  policy + errors          the set is refused with these errors (rule 8)
  same_version / other_version   policy_version comparisons (rule 9)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policy import PolicyLoadError, PolicyRequest, load_policy_text
from policy.durations import parse_duration
from policy.testing import compare

CASES = Path(__file__).parent / "cases"


def _cases() -> list[Any]:
    out = []
    for f in sorted(CASES.glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        for case in doc["cases"]:
            out.append(pytest.param(doc, case, id=f"{f.stem}:{case['name']}"))
    return out


def _expect(raw: dict[str, Any]) -> dict[str, Any]:
    e = dict(raw)
    if e.get("max_duration") is not None:
        e["max_duration"] = parse_duration(e["max_duration"])
    if isinstance(e.get("approval"), str):
        e["approval"] = {"mode": e["approval"]}
    return e


def test_every_numbered_rule_has_a_case_file() -> None:
    rules = {yaml.safe_load(f.read_text())["rule"] for f in CASES.glob("*.yaml")}
    assert set(range(1, 10)) <= rules


@pytest.mark.parametrize("doc,case", _cases())
def test_case(doc: dict[str, Any], case: dict[str, Any]) -> None:
    text = case.get("policy", doc.get("policy"))
    if "errors" in case:
        with pytest.raises(PolicyLoadError) as info:
            load_policy_text(text, "case.yaml")
        got = info.value.errors
        for want in case["errors"]:
            hits = [e for e in got if e.code == want["code"]
                    and ("line" not in want or e.line == want["line"])
                    and ("col" not in want or e.col == want["col"])
                    and want.get("message", "") in e.message]
            assert hits, f"wanted {want}, got {[str(e) + ' [' + e.code + ']' for e in got]}"
        if "count" in case:
            assert len(got) == case["count"], [str(e) for e in got]
        return
    ps = load_policy_text(text, "case.yaml")
    if "same_version" in case or "other_version" in case:
        assert ps.version.startswith("sha256:") and len(ps.version) == 7 + 64
        if "same_version" in case:
            assert load_policy_text(case["same_version"]).version == ps.version
        if "other_version" in case:
            assert load_policy_text(case["other_version"]).version != ps.version
        if "request" in case:
            assert ps.decide(PolicyRequest.from_mapping(case["request"])).policy_version == ps.version
        return
    if "eligible" in case:
        for e in case["eligible"]:
            got = ps.is_eligible(e["approvers"], e["approver"], e["requester"], e["resource"])
            assert got is e["expect"], e
        return
    req = PolicyRequest.from_mapping(case["request"])
    decision = ps.decide(req)
    assert decision.to_json() == ps.naive_decide(req).to_json()
    if "expect" in case:
        assert compare(_expect(case["expect"]), decision) == []
    if "votes" in case:
        p = ps.approval_progress(decision, req.user, req.resource, [tuple(v) for v in case["votes"]])
        want = case["expect_progress"]
        assert p.state == want["state"], p
        if "level" in want:
            assert p.level == want["level"], p
        if "approvals" in want:
            assert p.approvals == want["approvals"], p
        if "denied_by" in want:
            assert p.denied_by == want["denied_by"], p
