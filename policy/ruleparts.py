"""Readers of the parts a rule and a test's `expect` both write: `approval` and `session`.

One reader each, so a rule and a test spell these the same way. They read what is
written; what it means for a rule (a deny rule takes no approval, break_glass
needs a review) is `checker.py`'s.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import yaml

from policy.decision import APPROVAL_MODES, SESSION_OPTIONS, ApprovalLevel
from policy.model import Loc
from policy.yamlnodes import Reader

APPROVAL_FIELDS = ("mode", "levels", "review")
LEVEL_FIELDS = ("approvers", "min")

# Called with the approver words of one list and their nodes, as each list is read.
OnApprovers = Callable[[list[tuple[str, yaml.Node]]], None]


@dataclass(frozen=True)
class WrittenApproval:
    """An `approval:` as written: a mode word, or a mapping whose parts may be left out (None)."""

    mode: str | None  # None: a mapping without `mode` (which means `levels`)
    levels: tuple[ApprovalLevel, ...] | None
    review: tuple[str, ...] | None
    loc: Loc


def read_approval(r: Reader, node: yaml.Node, what: str, on_approvers: OnApprovers, *,
                  partial: bool = False) -> WrittenApproval | None:
    """`approval:` at `node`; None (with the problem reported) when it cannot be read.

    A rule's approval is complete: mode `levels` (the default) needs `levels`, and only
    it has levels. A test's expectation is `partial`, shaped like a decision's approval:
    it names only the parts it checks (`approval: levels`), and `levels: []` goes with
    `auto` and `break_glass`.
    """
    if isinstance(node, yaml.ScalarNode):
        mode = r.text(node, f"{what}: approval")
        if mode in ("auto", "break_glass") or (partial and mode == "levels"):
            return WrittenApproval(mode, None, None, r.loc(node))
        if mode is not None:
            r.error(node, "policy.type",
                    f"{what}: approval must be `auto`, `break_glass` or a mapping with `levels`, got `{mode}`")
        return None
    f = r.fields(node, f"{what}: approval", APPROVAL_FIELDS)
    if f is None:
        return None
    written_mode = None
    if "mode" in f:
        m = r.text(f["mode"][1], f"{what}: approval.mode")
        if m not in APPROVAL_MODES:
            if m is not None:
                r.error(f["mode"][1], "policy.type", f"{what}: unknown approval mode `{m}`")
            return None
        written_mode = m
    review = None
    if "review" in f:
        items = r.text_list(f["review"][1], f"{what}: approval.review")
        if items is None:
            return None
        review = tuple(v for v, _ in items)
        on_approvers(items)
    levels = None
    if "levels" in f:
        if (written_mode or "levels") != "levels" and not partial:
            r.error(f["levels"][0], "policy.unknown_field", f"{what}: `levels` need mode `levels`")
            return None
        levels = _read_levels(r, f["levels"][1], what, on_approvers, allow_empty=partial)
        if levels is None:
            return None
    elif (written_mode or "levels") == "levels" and not partial:
        r.error(node, "policy.missing_field", f"{what}: approval needs `levels`")
        return None
    return WrittenApproval(written_mode, levels, review, r.loc(node))


def _read_levels(r: Reader, node: yaml.Node, what: str, on_approvers: OnApprovers, *,
                 allow_empty: bool) -> tuple[ApprovalLevel, ...] | None:
    if not isinstance(node, yaml.SequenceNode) or not (node.value or allow_empty):
        r.error(node, "policy.type", f"{what}: approval.levels must be a non-empty list")
        return None
    levels = []
    for i, lv in enumerate(node.value, 1):
        lf = r.fields(lv, f"{what}: level {i}", LEVEL_FIELDS, required=("approvers",))
        if lf is None or "approvers" not in lf:
            return None
        items = r.text_list(lf["approvers"][1], f"{what}: level {i} approvers")
        if items is None:
            return None
        if not items:
            r.error(lf["approvers"][1], "policy.type", f"{what}: level {i} names no approvers")
            return None
        on_approvers(items)
        least = 1
        if "min" in lf:
            n = r.integer(lf["min"][1], f"{what}: level {i} min", minimum=1)
            if n is None:
                return None
            least = n
        levels.append(ApprovalLevel([v for v, _ in items], least))
    return tuple(levels)


def read_session(r: Reader, node: yaml.Node, what: str) -> dict[str, bool] | None:
    """`session:` options (`what` names the field, e.g. "rule `r`: session"); None when unreadable."""
    f = r.fields(node, what, SESSION_OPTIONS)
    if f is None:
        return None
    out: dict[str, bool] = {}
    for k, (_kn, vn) in f.items():
        b = r.boolean(vn, f"{what}.{k}")
        if b is not None:
            out[k] = b
    return out
