"""checker.py: what a rule's fields mean together (build_rules), and cross-references.

The loader only reads what is written; these refusals come from the checker, each
at the `file:line:col` of the field that breaks the rule.
"""
from __future__ import annotations

import pytest

from policy import PolicyLoadError, load_policy_text
from policy.checker import build_rules
from policy.loader import Raw, read_text
from policy.yamlnodes import Sink

HEAD = """\
version: 1
users: {ann: {groups: [sre]}, sam: {groups: [security]}}
resources: {h: {kind: ssh, address: "h:22", logins: [ops]}}
rules:
"""


def _errors(rules: str) -> list[str]:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(HEAD + rules, "p.yaml")
    return [f"{e} [{e.code}]" for e in info.value.errors]


def _at(rule: str, text: str, nth: int = 1) -> str:
    """`p.yaml:5:COL` of the `nth` occurrence of `text` in the rule's line."""
    col = -1
    for _ in range(nth):
        col = rule.index(text, col + 1)
    return f"p.yaml:5:{col + 1}"


DENY = "  - {name: d, when: 'true', effect: deny, approval: auto, max_duration: 1h}"
ALLOW_MESSAGE = "  - {name: a, when: 'true', approval: auto, message: hi}"
NO_APPROVAL = "  - {name: a, when: 'true'}"
GLASS_ALONE = "  - {name: a, when: 'true', approval: break_glass}"
REVIEW_ALONE = "  - {name: a, when: 'true', approval: auto, review: [user:sam]}"
REVIEW_TWICE = "  - {name: a, when: 'true', approval: {mode: break_glass, review: [user:sam]}, review: [user:sam]}"


@pytest.mark.parametrize("rule,want", [
    (DENY, [f"{_at(DENY, 'approval')}: rule `d`: a deny rule takes no `approval` [policy.unknown_field]",
            f"{_at(DENY, 'max_duration')}: rule `d`: a deny rule takes no `max_duration` [policy.unknown_field]"]),
    (ALLOW_MESSAGE, [f"{_at(ALLOW_MESSAGE, 'message')}: rule `a`: `message` is for deny rules (an allow rule "
                     "shows none) [policy.unknown_field]"]),
    (NO_APPROVAL, [f"{_at(NO_APPROVAL, '{')}: rule `a`: an allow rule needs `approval` (auto, break_glass or "
                   "levels) [policy.missing_field]"]),
    (GLASS_ALONE, [f"{_at(GLASS_ALONE, 'break_glass')}: rule `a`: break_glass needs `review` (who reviews the "
                   "access afterwards) [policy.missing_field]"]),
    (REVIEW_ALONE, [f"{_at(REVIEW_ALONE, 'review')}: rule `a`: `review` is only for break_glass approval "
                    "[policy.unknown_field]"]),
    (REVIEW_TWICE, [f"{_at(REVIEW_TWICE, 'review', 2)}: rule `a`: `review` given twice [policy.duplicate]"]),
])
def test_rule_semantics_are_refused_where_the_field_is(rule: str, want: list[str]) -> None:
    assert _errors(rule + "\n") == want


def test_the_loader_reads_and_the_checker_judges() -> None:
    raw, sink = Raw(files=["p.yaml"]), Sink()
    read_text("p.yaml", HEAD + DENY + "\n", raw, sink)
    assert sink.errors == [] and str(raw.rules[0].written["approval"]) == _at(DENY, "approval")
    rules = build_rules(raw.rules, sink)
    assert [e.message for e in sink.errors] == ["rule `d`: a deny rule takes no `approval`",
                                                "rule `d`: a deny rule takes no `max_duration`"]
    assert [(r.name, r.position, r.effect) for r in rules] == [("d", 0, "deny")]


def test_a_rule_without_when_is_still_checked_but_not_built() -> None:
    raw, sink = Raw(files=["p.yaml"]), Sink()
    read_text("p.yaml", HEAD + "  - {name: a, approval: break_glass}\n  - {name: b, when: 'true', approval: auto}\n",
              raw, sink)
    assert [e.message for e in sink.errors] == ["rule: missing field `when`"]
    rules = build_rules(raw.rules, sink)
    messages = [e.message for e in sink.errors]
    assert "rule `a`: break_glass needs `review` (who reviews the access afterwards)" in messages
    assert [(r.name, r.position) for r in rules] == [("b", 0)]  # positions count only built rules


def test_review_comes_from_the_rule_or_its_approval() -> None:
    ps = load_policy_text(HEAD + "  - {name: a, when: 'true', approval: {mode: break_glass, review: [user:sam]}}\n"
                                 "  - {name: b, when: 'true', approval: break_glass, review: [group:security]}\n")
    assert [r.review for r in ps.rules] == [("user:sam",), ("group:security",)]
    assert [r.approval.mode for r in ps.rules if r.approval] == ["break_glass", "break_glass"]


def test_unknown_approvers_are_named() -> None:
    rule = "  - {name: a, when: 'true', approval: {levels: [{approvers: [user:zed, boss]}]}}"
    assert _errors(rule + "\n") == [
        f"{_at(rule, 'user:zed')}: rule `a` approver: unknown user `zed` [policy.unknown_user]",
        f"{_at(rule, 'boss')}: rule `a`: unknown approver `boss` (use user:NAME, group:NAME, manager or owner) "
        "[policy.unknown_approver]"]
