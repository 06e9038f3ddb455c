"""Policy tests (`tests:` in a policy file): read them, run each request, compare with `expect`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from policy.decision import Decision
from policy.durations import format_duration
from policy.errors import RequestError
from policy.model import PolicyTest
from policy.request import PolicyRequest
from policy.ruleparts import WrittenApproval, read_approval, read_session
from policy.yamlnodes import Reader


@dataclass(frozen=True)
class TestResult:
    """One policy test's outcome; `failures` say `field: expected X, got Y`."""

    __test__ = False  # not a pytest class

    name: str
    passed: bool
    failures: list[str]
    decision: Decision
    file: str
    line: int
    col: int
    expected: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


def run(tests: tuple[PolicyTest, ...], decide: Callable[[Any], Decision]) -> list[TestResult]:
    """Run every test with `decide`."""
    out = []
    for t in tests:
        d = decide(t.request)
        failures = compare(t.expect, d)
        out.append(TestResult(t.name, not failures, failures, d, t.loc.file, t.loc.line, t.loc.col,
                              _printable(t.expect)))
    return out


def _printable(expect: dict[str, Any]) -> dict[str, Any]:
    out = dict(expect)
    if out.get("max_duration") is not None:
        out["max_duration"] = format_duration(out["max_duration"])
    return out


def compare(expect: dict[str, Any], d: Decision) -> list[str]:
    """What differs between an expectation and a decision (empty when it holds)."""
    got = d.to_json()
    fails: list[str] = []

    def fail(name: str, want: Any, have: Any) -> None:
        fails.append(f"{name}: expected {want!r}, got {have!r}")

    if "effect" in expect and expect["effect"] != d.effect:
        fail("effect", expect["effect"], d.effect)
    if "approval" in expect:
        want = expect["approval"] or {}
        have = got["approval"] or {}
        if "mode" in want and want["mode"] != have.get("mode"):
            fail("approval.mode", want["mode"], have.get("mode"))
        if "levels" in want and want["levels"] != have.get("levels"):
            fail("approval.levels", want["levels"], have.get("levels"))
        if "review" in want and want["review"] != have.get("review", []):
            fail("approval.review", want["review"], have.get("review", []))
    if "rules" in expect and expect["rules"] != d.rules:
        fail("rules", expect["rules"], d.rules)
    if "message" in expect and expect["message"] not in d.message:
        fails.append(f"message: expected it to contain {expect['message']!r}, got {d.message!r}")
    if "max_duration" in expect and expect["max_duration"] != d.max_duration:
        fail("max_duration", _fmt(expect["max_duration"]), got["max_duration"])
    if "max_extensions" in expect and expect["max_extensions"] != d.max_extensions:
        fail("max_extensions", expect["max_extensions"], d.max_extensions)
    for k, v in (expect.get("session") or {}).items():
        if got["session"][k] != v:
            fail(f"session.{k}", v, got["session"][k])
    if "errors" in expect and expect["errors"] != bool(d.errors):
        fail("errors", expect["errors"], d.errors)
    return fails


def _fmt(td: Any) -> Any:
    return format_duration(td) if td is not None else None


# --- reading `tests:` ----------------------------------------------------------

TEST_FIELDS = ("name", "request", "expect")
EXPECT_FIELDS = ("effect", "approval", "rules", "message", "max_duration", "max_extensions",
                 "session", "errors")


def read_tests(r: Reader, node: yaml.Node, tests: list[PolicyTest]) -> None:
    """Append the tests of one file's `tests:` to `tests` (the set's, for duplicate names)."""
    seen = {t.name: t.loc for t in tests}
    for name, item, f in r.named_items(node, "test", TEST_FIELDS, ("name", "request", "expect"), seen):
        if "request" not in f or "expect" not in f:
            continue
        request = _read_request(r, name, f["request"][1])
        expect = _read_expect(r, name, f["expect"][1])
        if request is not None and expect is not None:
            tests.append(PolicyTest(name, request, expect, r.loc(item), r.loc(f["expect"][1])))


def _read_request(r: Reader, name: str, node: yaml.Node) -> PolicyRequest | None:
    n_errors = len(r.sink.errors)
    data = r.plain(node, f"test `{name}`: request")
    if len(r.sink.errors) != n_errors:
        return None
    try:
        return PolicyRequest.from_mapping(data)
    except RequestError as e:
        r.error(node, "policy.bad_request", f"test `{name}`: {e}")
        return None


def _read_expect(r: Reader, name: str, node: yaml.Node) -> dict[str, Any] | None:
    """The parts of a decision a test expects, in the form `compare` takes."""
    what = f"test `{name}`: expect"
    f = r.fields(node, what, EXPECT_FIELDS)
    if f is None:
        return None
    n_errors = len(r.sink.errors)
    out: dict[str, Any] = {}
    for key, (_k, v) in f.items():
        if key == "effect":
            e = r.text(v, f"{what}.effect")
            if e is not None and e not in ("allow", "deny"):
                r.error(v, "policy.type", f"{what}.effect must be allow or deny")
            out[key] = e
        elif key == "approval":
            approval = read_approval(r, v, what, lambda _items: None, partial=True)
            out[key] = None if approval is None else _expected_approval(approval)
        elif key == "rules":
            out[key] = [x for x, _ in r.text_list(v, f"{what}.rules") or []]
        elif key == "message":
            out[key] = r.text(v, f"{what}.message")
        elif key == "max_duration":
            if isinstance(v, yaml.ScalarNode) and v.tag.endswith(":null"):
                out[key] = None
            else:
                out[key] = r.duration(v, f"{what}.max_duration")
        elif key == "max_extensions":
            out[key] = r.integer(v, f"{what}.max_extensions")
        elif key == "session":
            out[key] = read_session(r, v, f"{what}.session")
        elif key == "errors":
            out[key] = r.boolean(v, f"{what}.errors")
    return out if len(r.sink.errors) == n_errors else None


def _expected_approval(a: WrittenApproval) -> dict[str, Any]:
    """The parts of a decision's approval JSON an expectation names."""
    out: dict[str, Any] = {}
    if a.mode is not None:
        out["mode"] = a.mode
    if a.review is not None:
        out["review"] = list(a.review)
    if a.levels is not None:
        out["levels"] = [lv.to_json() for lv in a.levels]
    return out
