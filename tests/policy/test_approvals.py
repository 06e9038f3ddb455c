"""approvals.py:progress, POLICY.md rule 5, as the control plane calls it: levels in order,
nobody approves their own request, one person counts for one level, an eligible deny ends it.
(tests/policy/cases/rule5_approval_levels.yaml runs the same rule through a whole policy.)"""
from __future__ import annotations

from policy.approvals import APPROVED, DENIED, PENDING, progress
from policy.decision import NO_SESSION, Approval, ApprovalLevel, Decision, SessionOptions

SECURITY = {"sec1", "sec2", "boss"}


def _decision(*levels: ApprovalLevel, mode: str = "levels") -> Decision:
    return Decision("allow", Approval(mode, list(levels)), None, 0, SessionOptions(), [], "", "v")


def _eligible(words: list[str], who: str) -> bool:
    return ("manager" in words and who == "boss") or ("group:security" in words and who in SECURITY)


TWO_LEVELS = _decision(ApprovalLevel(["manager"]), ApprovalLevel(["group:security"], 2))


def test_levels_are_met_in_order() -> None:
    p = progress(TWO_LEVELS, "ann", [("boss", "approve"), ("sec1", "approve"), ("sec2", "approve")], _eligible)
    assert (p.state, p.level, p.approvals) == (APPROVED, 2, [["boss"], ["sec1", "sec2"]])


def test_one_person_counts_for_one_level_and_never_for_their_own_request() -> None:
    p = progress(TWO_LEVELS, "sec2", [("boss", "approve"), ("boss", "approve"), ("sec2", "approve"),
                                      ("sec1", "approve")], _eligible)
    assert (p.state, p.level, p.approvals) == (PENDING, 1, [["boss"], ["sec1"]])
    assert p.ignored == [("boss", "already counted for a level of this request"),
                         ("sec2", "nobody approves their own request")]


def test_an_eligible_deny_ends_it_and_an_ineligible_one_does_not() -> None:
    p = progress(TWO_LEVELS, "ann", [("eve", "deny"), ("boss", "approve"), ("sec1", "deny")], _eligible)
    assert (p.state, p.denied_by, p.ignored) == (DENIED, "sec1", [("eve", "not an eligible approver")])


def test_auto_break_glass_and_deny_need_no_votes() -> None:
    assert progress(_decision(mode="auto"), "ann", [], _eligible).state == APPROVED
    assert progress(_decision(mode="break_glass"), "ann", [], _eligible).state == APPROVED
    deny = Decision("deny", None, None, 0, NO_SESSION, [], "no", "v")
    assert progress(deny, "ann", [("boss", "approve")], _eligible).state == DENIED
