"""testing.py: reading `tests:` (request, expect) and comparing expectations with decisions."""
from __future__ import annotations

import pytest

from policy import PolicyLoadError, load_policy_text

POLICY = """\
version: 1
users: {ann: {manager: max, groups: [oncall]}, max: {}, sam: {groups: [security]}}
resources: {h: {kind: ssh, address: "h:22", logins: [ops]}}
rules:
  - {name: lv, when: '!request.emergency', approval: {levels: [{approvers: [manager]}]}, max_duration: 2h}
  - {name: bg, when: 'request.emergency', approval: break_glass, review: [group:security]}
tests:
  - name: t
    request: {user: ann, resource: h, login: ops, duration: 1h, time: "2026-01-01T00:00:00Z", emergency: EMERGENCY}
    expect: EXPECT
"""


def _results(expect: str, emergency: bool = False) -> list[tuple[bool, list[str]]]:
    text = POLICY.replace("EXPECT", expect).replace("EMERGENCY", "true" if emergency else "false")
    return [(r.passed, r.failures) for r in load_policy_text(text, "p.yaml", run_tests=False).run_tests()]


@pytest.mark.parametrize("expect,emergency", [
    ("{effect: allow, approval: levels}", False),                       # a mode word alone
    ("{approval: {levels: [{approvers: [manager]}]}}", False),           # levels alone
    ("{approval: {mode: levels, levels: [{approvers: [manager], min: 1}]}}", False),
    ("{approval: break_glass, max_duration: null}", True),
    ("{approval: {mode: break_glass, levels: [], review: [group:security]}}", True),  # the decision's JSON
    ("{max_duration: 2h, session: {pty: true}, errors: false, rules: [lv]}", False),
])
def test_expectations_name_only_what_they_check(expect: str, emergency: bool) -> None:
    assert _results(expect, emergency) == [(True, [])]


def test_a_failing_expectation_says_what_differs() -> None:
    assert _results("{approval: {levels: [{approvers: [group:security]}]}}") == [
        (False, ["approval.levels: expected [{'approvers': ['group:security'], 'min': 1}], "
                 "got [{'approvers': ['manager'], 'min': 1}]"])]


def _at(expect: str, text: str) -> str:
    """`p.yaml:10:COL` of `text` in the `expect:` line."""
    return f"p.yaml:10:{len('    expect: ') + expect.index(text) + 1}"


SOMETIMES = "{approval: sometimes}"
WEIRD = "{approval: {mode: weird}}"
COLOUR = "{approval: {levels: [{approvers: [manager], colour: red}]}}"
MAYBE = "{effect: maybe}"
TTY = "{session: {tty: true}}"
NOPE = "{rules: [nope]}"


@pytest.mark.parametrize("expect,want", [
    (SOMETIMES, f"{_at(SOMETIMES, 'sometimes')}: test `t`: expect: approval must be `auto`, `break_glass` or a "
                "mapping with `levels`, got `sometimes`"),
    (WEIRD, f"{_at(WEIRD, 'weird')}: test `t`: expect: unknown approval mode `weird`"),
    (COLOUR, f"{_at(COLOUR, 'colour')}: test `t`: expect: level 1: unknown field `colour` (known: approvers, min)"),
    (MAYBE, f"{_at(MAYBE, 'maybe')}: test `t`: expect.effect must be allow or deny"),
    (TTY, f"{_at(TTY, 'tty')}: test `t`: expect.session: unknown field `tty` (known: pty, exec, sftp, "
          "port_forwarding)"),
    (NOPE, f"{_at(NOPE, '{')}: test `t`: expects unknown rule `nope`"),
])
def test_a_malformed_expectation_is_refused_where_it_is(expect: str, want: str) -> None:
    with pytest.raises(PolicyLoadError) as info:
        _results(expect)
    assert [str(e) for e in info.value.errors] == [want]


def test_test_names_are_unique_across_the_set() -> None:
    text = POLICY.replace("EXPECT", "{effect: allow}").replace("EMERGENCY", "false")
    twice = text + text[text.index("  - name: t"):]
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(twice, "p.yaml")
    assert [str(e) for e in info.value.errors] == ["p.yaml:11:11: duplicate test name `t` (first at p.yaml:8:5)"]
