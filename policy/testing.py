"""Policy tests (`tests:` in a policy file): run each request, compare with `expect`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from policy.decision import Decision
from policy.durations import format_duration
from policy.model import PolicyTest


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
