"""Where the control plane's rules live (issue 14): one write path, one approval rule, one grace source.

Read as text (the AST), so each test fails the moment a second copy appears.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONTROLPLANE = ROOT / "controlplane"


def _sources(folder: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    return [p for p in sorted(folder.rglob("*.py")) if not any(part in skip for part in p.parts)]


def _calls(path: Path, name: str) -> list[int]:
    """Lines where `path` calls an attribute or function called `name`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == name:
                lines.append(node.lineno)
    return lines


def _strings(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_audit_events_are_appended_only_by_the_ledger() -> None:
    """Every state change commits through Ledger.write / Write.commit (listeners hear after the commit)."""
    found = {str(p.relative_to(ROOT)): _calls(p, "append_audit_many") for p in _sources(CONTROLPLANE, ("store",))}
    assert {path for path, lines in found.items() if lines} == {"controlplane/ledger.py"}


def test_approval_rule_codes_come_from_policy_only() -> None:
    """POLICY.md rule 5 ("nobody approves their own request; one person one level") is
    policy.approvals.judge_vote: the control plane raises what it answers and words none of it."""
    rule_codes = {"approval.self", "approval.duplicate", "approval.two_levels", "approval.level_order"}
    copies = {str(p.relative_to(ROOT)) for p in _sources(CONTROLPLANE) if rule_codes & _strings(p)}
    assert copies == set()
    assert _calls(CONTROLPLANE / "approvals.py", "judge_vote")
    assert rule_codes <= _strings(ROOT / "policy" / "approvals.py")


def test_the_broker_invents_no_grace_period() -> None:
    """The grace period's one source is the policies' settings, sent by the control plane."""
    text = (ROOT / "broker" / "cpclient.py").read_text()
    assert "grace_period" in text and "timedelta(minutes=5)" not in text
