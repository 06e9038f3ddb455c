"""The rule index: which rules can match a request, known without running CEL.

A rule's `when` is split at its top-level `&&`. Conjuncts of these shapes are
understood statically (string literals only):

    resource.kind / resource.name / request.resource  ==  "x"   (or `in ["x", "y"]`)
    resource.labels.K  or  resource.labels["K"]        ==  "x"   (or `in [...]`)
    request.login / request.role                       ==  "x"   (or `in [...]`)
    user.name / request.user                           ==  "x"   (or `in [...]`)
    "g" in user.groups
    request.emergency, !request.emergency
    has(resource.labels.K)
    resource.labels.K != "x"
    history.<counter> OP 3, request.extension OP 1      (OP: == != < <= > >=, whole numbers)
    request.duration OP duration("1h30m")
    request.ticket / request.reason  == or !=  "x"

Resource conjuncts are resolved per resource when the set is loaded; request
conjuncts are checked per decision. CEL's `&&` is false as soon as one side is
false, even when the other side errors, so skipping a rule whose static
conjunct is false gives exactly the naive answer. A label the resource does
not have makes CEL raise, so such a resource keeps the rule and runs its CEL.
A rule whose conjuncts are all static and true matches without running CEL.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import lark

from policy.cel import unwrap
from policy.durations import parse_duration
from policy.model import Resource, Rule
from policy.request import HISTORY_COUNTERS, PolicyRequest

_PLAIN_STRING = re.compile(r"""^(?:"([^"\\\n]*)"|'([^'\\\n]*)')$""")
_WHOLE = re.compile(r"^[0-9]{1,15}$")
_HMS = re.compile(r"^(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "relation_eq": operator.eq, "relation_ne": operator.ne, "relation_lt": operator.lt,
    "relation_le": operator.le, "relation_gt": operator.gt, "relation_ge": operator.ge}
_FLIP = {"relation_eq": "relation_eq", "relation_ne": "relation_ne", "relation_lt": "relation_gt",
         "relation_le": "relation_ge", "relation_gt": "relation_lt", "relation_ge": "relation_le"}

RESOURCE_FIELDS = ("kind", "name", "label", "has_label")


@dataclass(frozen=True)
class Pred:
    """A static conjunct: `field` (kind, name, label, emergency, login, role) in `values`."""

    field: str
    key: str = ""
    values: frozenset[str] = frozenset()
    flag: bool = True  # emergency: wanted value; label: False for `!=`
    op: str = ""  # cmp: relation_eq, relation_lt, ...
    value: Any = None  # cmp: the literal (int, timedelta or str)


@dataclass(frozen=True)
class Analysis:
    """What the index knows about one rule."""

    resource_preds: tuple[Pred, ...]
    request_preds: tuple[Pred, ...]
    residual: bool  # some conjunct needs CEL


@dataclass(frozen=True)
class Candidate:
    """A rule that may match requests on one resource."""

    rule: Rule
    request_preds: tuple[Pred, ...]
    needs_cel: bool


def analyse(ast: lark.Tree[Any]) -> Analysis:
    """Split a rule's AST into static predicates and a residual flag."""
    res: list[Pred] = []
    req: list[Pred] = []
    residual = False
    for leaf in _conjuncts(ast):
        p = _pred(leaf)
        if p is None:
            residual = True
        elif p.field in RESOURCE_FIELDS:
            res.append(p)
        else:
            req.append(p)
    return Analysis(tuple(res), tuple(req), residual)


def _conjuncts(ast: lark.Tree[Any]) -> list[Any]:
    node = ast
    if not (isinstance(node, lark.Tree) and node.data == "expr" and len(node.children) == 1):
        return [ast]
    node = node.children[0]
    if not (isinstance(node, lark.Tree) and node.data == "conditionalor" and len(node.children) == 1):
        return [ast]
    node = node.children[0]
    out: list[Any] = []
    while isinstance(node, lark.Tree) and node.data == "conditionaland" and len(node.children) == 2:
        out.append(node.children[1])
        node = node.children[0]
    if isinstance(node, lark.Tree) and node.data == "conditionaland" and len(node.children) == 1:
        out.append(node.children[0])
    else:
        out.append(node)
    out.reverse()
    return out


def _path(tree: Any) -> list[str] | None:
    """`a.b.c` or `a.b["c"]` as ["a", "b", "c"], else None."""
    tree = unwrap(tree)
    if not isinstance(tree, lark.Tree):
        return None
    if tree.data == "ident" and tree.children:
        return [str(tree.children[0])]
    if tree.data == "member_dot" and len(tree.children) == 2:
        base = _path(tree.children[0])
        return None if base is None else [*base, str(tree.children[1])]
    if tree.data == "member_index" and len(tree.children) == 2:
        base = _path(tree.children[0])
        key = _string(tree.children[1])
        return None if base is None or key is None else [*base, key]
    return None


def _string(tree: Any) -> str | None:
    tree = unwrap(tree)
    if isinstance(tree, lark.Tree) and tree.data == "literal" and tree.children:
        tree = tree.children[0]
    if isinstance(tree, lark.Token):
        m = _PLAIN_STRING.match(str(tree))
        if m:
            return m.group(1) if m.group(1) is not None else m.group(2)
    return None


def _string_list(tree: Any) -> frozenset[str] | None:
    tree = unwrap(tree)
    if not (isinstance(tree, lark.Tree) and tree.data == "list_lit"):
        return None
    if not tree.children:
        return frozenset()
    exprlist = tree.children[0]
    if not (isinstance(exprlist, lark.Tree) and exprlist.data == "exprlist"):
        return None
    out = []
    for item in exprlist.children:
        s = _string(item)
        if s is None:
            return None
        out.append(s)
    return frozenset(out)


def _field_of(path: list[str] | None) -> tuple[str, str] | None:
    if path is None:
        return None
    if path in (["resource", "kind"],):
        return "kind", ""
    if path in (["resource", "name"], ["request", "resource"]):
        return "name", ""
    if len(path) == 3 and path[:2] == ["resource", "labels"]:
        return "label", path[2]
    if path == ["request", "login"]:
        return "login", ""
    if path == ["request", "role"]:
        return "role", ""
    if path in (["user", "name"], ["request", "user"]):
        return "user", ""
    return None


def _pred(leaf: Any) -> Pred | None:
    node = unwrap(leaf)
    if not isinstance(node, lark.Tree):
        return None
    # request.emergency / !request.emergency / !!...
    negations = 0
    probe = node
    while isinstance(probe, lark.Tree) and probe.data == "unary" and len(probe.children) == 2 \
            and isinstance(probe.children[0], lark.Tree) and probe.children[0].data == "unary_not" \
            and not probe.children[0].children:
        negations += 1
        probe = unwrap(probe.children[1])
    if _path(probe) == ["request", "emergency"]:
        return Pred("emergency", flag=negations % 2 == 0)
    if negations:
        return None
    if node.data == "ident_arg" and len(node.children) == 2 and str(node.children[0]) == "has":
        exprlist = node.children[1]
        if isinstance(exprlist, lark.Tree) and len(exprlist.children) == 1:
            path = _path(exprlist.children[0])
            if path is not None and len(path) == 3 and path[:2] == ["resource", "labels"]:
                return Pred("has_label", path[2])
        return None
    if node.data == "relation" and len(node.children) == 2 and isinstance(node.children[0], lark.Tree):
        op = node.children[0]
        if (op.data not in _OPS and op.data != "relation_in") or len(op.children) != 1:
            return None
        lhs, rhs = op.children[0], node.children[1]
        cmp = _comparison(op.data, lhs, rhs)
        if cmp is not None:
            return cmp
        if op.data == "relation_ne":
            for a, b in ((lhs, rhs), (rhs, lhs)):
                f, s = _field_of(_path(a)), _string(b)
                if f is not None and f[0] == "label" and s is not None:
                    return Pred("label", f[1], frozenset([s]), flag=False)
            return None
        if op.data != "relation_in" and op.data != "relation_eq":
            return None
        if op.data == "relation_eq":
            for a, b in ((lhs, rhs), (rhs, lhs)):
                f, s = _field_of(_path(a)), _string(b)
                if f is not None and s is not None:
                    return Pred(f[0], f[1], frozenset([s]))
            return None
        f, values = _field_of(_path(lhs)), _string_list(rhs)
        if f is not None and values is not None:
            return Pred(f[0], f[1], values)
        group = _string(lhs)
        if group is not None and _path(rhs) == ["user", "groups"]:
            return Pred("group", "", frozenset([group]))
    return None


def _comparison(op: str, lhs: Any, rhs: Any) -> Pred | None:
    """history/extension vs a whole number, duration vs duration("..."), ticket/reason vs text."""
    if op == "relation_in":
        return None
    for a, b, o in ((lhs, rhs, op), (rhs, lhs, _FLIP[op])):
        path = _path(a)
        if path is None or len(path) != 2:
            continue
        if (path[0] == "history" and path[1] in HISTORY_COUNTERS) or path == ["request", "extension"]:
            n = _whole(b)
            if n is not None:
                return Pred("cmp", ".".join(path), op=o, value=n)
        elif path == ["request", "duration"]:
            d = _duration_literal(b)
            if d is not None:
                return Pred("cmp", "request.duration", op=o, value=d)
        elif path in (["request", "ticket"], ["request", "reason"]) and o in ("relation_eq", "relation_ne"):
            text = _string(b)
            if text is not None:
                return Pred("cmp", ".".join(path), op=o, value=text)
    return None


def _whole(tree: Any) -> int | None:
    tree = unwrap(tree)
    if isinstance(tree, lark.Tree) and tree.data == "literal" and tree.children:
        tree = tree.children[0]
    if isinstance(tree, lark.Token) and _WHOLE.match(str(tree)):
        return int(str(tree))
    return None


def _duration_literal(tree: Any) -> timedelta | None:
    tree = unwrap(tree)
    if not (isinstance(tree, lark.Tree) and tree.data == "ident_arg" and len(tree.children) == 2
            and str(tree.children[0]) == "duration"):
        return None
    exprlist = tree.children[1]
    if not (isinstance(exprlist, lark.Tree) and len(exprlist.children) == 1):
        return None
    text = _string(exprlist.children[0])
    if text is None or not text or not _HMS.match(text):
        return None
    try:
        return parse_duration(text)
    except ValueError:
        return None


def _request_value(key: str, req: PolicyRequest) -> Any:
    if key == "request.duration":
        return timedelta(seconds=int(req.duration.total_seconds()))
    if key == "request.extension":
        return req.extension
    if key == "request.ticket":
        return req.ticket
    if key == "request.reason":
        return req.reason
    return req.history_value(key.split(".", 1)[1])


def resource_verdict(preds: Iterable[Pred], resource: Resource) -> bool | None:
    """True/False when the resource conjuncts decide, None when CEL must (missing label)."""
    unknown = False
    for p in preds:
        if p.field == "kind":
            ok: bool | None = resource.kind in p.values
        elif p.field == "name":
            ok = resource.name in p.values
        elif p.field == "has_label":
            ok = p.key in resource.labels
        else:
            ok = (resource.labels[p.key] in p.values) == p.flag if p.key in resource.labels else None
        if ok is False:
            return False
        if ok is None:
            unknown = True
    return None if unknown else True


def request_passes(preds: Iterable[Pred], req: PolicyRequest, groups: frozenset[str]) -> bool:
    """Whether the request-side conjuncts hold (they are always decidable)."""
    for p in preds:
        if p.field == "emergency":
            if req.emergency != p.flag:
                return False
        elif p.field == "login":
            if req.login not in p.values:
                return False
        elif p.field == "role":
            if req.role not in p.values:
                return False
        elif p.field == "user":
            if req.user not in p.values:
                return False
        elif p.field == "cmp":
            if not _OPS[p.op](_request_value(p.key, req), p.value):
                return False
        elif p.field == "group":
            if not p.values <= groups:
                return False
    return True


def missing_labels(preds: Iterable[Pred], resource: Resource) -> list[str]:
    """Labels a rule compares that the resource lacks (its CEL will raise there)."""
    return [p.key for p in preds if p.field == "label" and p.key not in resource.labels]


def build(rules: list[Rule], analyses: dict[str, Analysis],
          resources: dict[str, Resource]) -> dict[str, tuple[Candidate, ...]]:
    """Per resource, the candidate rules in file order."""
    by_value: dict[tuple[str, str, str], set[str]] = {}
    has_label: dict[str, set[str]] = {}
    for r in resources.values():
        by_value.setdefault(("kind", "", r.kind), set()).add(r.name)
        by_value.setdefault(("name", "", r.name), set()).add(r.name)
        for k, v in r.labels.items():
            by_value.setdefault(("label", k, v), set()).add(r.name)
            has_label.setdefault(k, set()).add(r.name)
    all_names = set(resources)
    out: dict[str, list[Candidate]] = {name: [] for name in resources}
    for rule in rules:
        a = analyses[rule.name]
        names = all_names
        for p in a.resource_preds:
            hits: set[str] = set()
            if p.field == "label" and not p.flag:
                continue  # `!=`: decided per resource below
            if p.field == "has_label":
                hits = set(has_label.get(p.key, set()))
            for v in p.values:
                hits |= by_value.get((p.field, p.key, v), set())
            if p.field == "label":
                hits |= all_names - has_label.get(p.key, set())  # missing label: CEL decides
            names = names & hits
        if a.resource_preds:
            ordered: Iterable[str] = sorted(names)
        else:
            ordered = names
        for name in ordered:
            verdict = resource_verdict(a.resource_preds, resources[name])
            if verdict is False:
                continue
            out[name].append(Candidate(rule, a.request_preds, a.residual or verdict is None))
    return {k: tuple(v) for k, v in out.items()}
