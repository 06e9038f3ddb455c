"""POLICY.md Additions: `activate`, `claim_within` and `max_sessions` on rules, combined
across matching rules, in the decision and its JSON; refused where they mean nothing."""
from __future__ import annotations

from datetime import timedelta

import pytest

from policy import PolicyLoadError, PolicyRequest, load_policy_text
from policy.decision import Decision

HEAD = """\
version: 1
users: {ann: {groups: [sre]}}
resources: {h: {kind: ssh, address: "h:22", logins: [ops], labels: {env: dev}}}
rules:
"""
REQ = {"user": "ann", "resource": "h", "login": "ops", "duration": "30m", "time": "2026-11-18T10:00:00Z"}


def _decide(rules: str) -> Decision:
    return load_policy_text(HEAD + rules, "p.yaml").decide(PolicyRequest.from_mapping(REQ))


def _errors(rules: str) -> list[str]:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(HEAD + rules, "p.yaml")
    return [f"{e} [{e.code}]" for e in info.value.errors]


def test_absent_fields_mean_the_behaviour_before_them() -> None:
    plain = "  - {name: a, when: 'true', approval: auto}\n"
    d = _decide(plain)
    assert (d.activate, d.claim_within, d.max_sessions) == ("on_approval", None, None)
    # The policy_version of a set that does not use them is unchanged by their existence.
    assert load_policy_text(HEAD + plain, "p.yaml").version == load_policy_text(HEAD + plain, "q.yaml").version


def test_combined_first_use_if_any_smallest_claim_and_session_count() -> None:
    d = _decide("  - {name: a, when: 'true', approval: auto, activate: on_first_use, claim_within: 2h,"
                " max_sessions: 3}\n"
                "  - {name: b, when: 'true', effect: require, activate: on_first_use, claim_within: 30m}\n"
                "  - {name: c, when: 'true', effect: require, max_sessions: 1}\n")
    assert d.allowed and d.activate == "on_first_use"
    assert d.claim_within == timedelta(minutes=30) and d.max_sessions == 1
    j = d.to_json()
    assert (j["activate"], j["claim_within"], j["max_sessions"]) == ("on_first_use", "30m", 1)
    assert Decision.from_json(j) == d
    other = _decide("  - {name: a, when: 'true', approval: auto, max_sessions: 2}\n")
    assert other.activate == "on_approval" and other.max_sessions == 2
    assert _decide("  - {name: a, when: 'true', approval: auto, max_sessions: 2}\n").to_json()["max_sessions"] == 2


def test_a_used_field_changes_the_version() -> None:
    a = load_policy_text(HEAD + "  - {name: a, when: 'true', approval: auto}\n", "p.yaml").version
    b = load_policy_text(HEAD + "  - {name: a, when: 'true', approval: auto, max_sessions: 1}\n", "p.yaml").version
    assert a != b


@pytest.mark.parametrize("rule, wanted", [
    ("{name: a, when: 'true', approval: auto, activate: later}", "unknown activate `later`"),
    ("{name: a, when: 'true', approval: auto, activate: on_first_use}", "needs `claim_within`"),
    ("{name: a, when: 'true', approval: auto, claim_within: 1h}", "only for `activate: on_first_use`"),
    ("{name: a, when: 'true', approval: auto, activate: on_first_use, claim_within: 0s}", "longer than 0s"),
    ("{name: a, when: 'true', approval: auto, max_sessions: 0}", "whole number >= 1"),
    ("{name: a, when: 'true', approval: auto, max_sessions: many}", "whole number >= 1"),
    ("{name: a, when: 'true', effect: deny, max_sessions: 1}", "a deny rule takes no `max_sessions`"),
])
def test_refused_with_their_position(rule: str, wanted: str) -> None:
    errors = _errors(f"  - {rule}\n")
    assert any(wanted in e and e.startswith("p.yaml:5:") and "[policy." in e for e in errors), errors


WINDOW = """\
  - {name: night, when: 'now.getHours("UTC") >= 22 && request.start == now', approval: auto, max_duration: 2h}
"""


def test_a_scheduled_window_is_judged_at_its_start_and_bounded_ahead() -> None:
    ps = load_policy_text(HEAD + WINDOW, "p.yaml")
    later = {**REQ, "duration": "2h", "time": "2026-12-05T10:00:00Z", "start": "2026-12-05T22:00:00Z"}
    d = ps.decide(PolicyRequest.from_mapping(later))
    assert d.allowed, d.message  # `now` is the window's start (22:00), not the request's time (10:00)
    assert not ps.decide(PolicyRequest.from_mapping({k: v for k, v in later.items() if k != "start"})).allowed
    # max_duration bounds the window (2h), not the 12 h wait before it.
    assert PolicyRequest.from_mapping(later).to_mapping()["start"] == "2026-12-05T22:00:00Z"
    far = ps.decide(PolicyRequest.from_mapping({**later, "start": "2026-12-13T22:00:00Z"}))
    assert not far.allowed and "max_schedule_ahead" in far.message
    past = ps.decide(PolicyRequest.from_mapping({**later, "time": "2026-12-05T23:00:00Z"}))
    assert not past.allowed and "in the past" in past.message
    wide = load_policy_text(HEAD.replace("rules:", "settings: {max_schedule_ahead: 30d}\nrules:") + WINDOW, "p.yaml")
    assert wide.decide(PolicyRequest.from_mapping({**later, "start": "2026-12-13T22:00:00Z"})).allowed
    assert wide.version != ps.version
