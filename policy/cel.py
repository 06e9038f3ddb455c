"""CEL: compile once, check names and cost statically, evaluate within a budget.

Untrusted rules are bounded twice (the limits are in `policy.limits`):
- at compile: text size, bracket nesting, list/string literal sizes, nesting of
  comprehensions, and a cost estimate (comprehension ranges multiplied through
  their nesting); a rule over any of them is refused at check with its location;
- at evaluation: every decision carries a `Budget`. The transpiled program runs
  with its own globals in which `celpy.evaluation`, `celpy.celtypes` and
  `operator` are replaced by views that charge, before each call, one unit per
  value element its arguments hold (walked, so a shared nested value costs what
  comparing or printing it costs), and each comprehension step. Every operation
  a CEL program can reach is one of those calls or a step, so the budget bounds
  the work; running over raises `CelBudgetExceeded`, which the engine treats as
  any rule error: the decision is a deny naming the rule.

Thread safety: cel-python's own `evaluate` execs into the module globals of
`celpy.evaluation` (shared by every program); here each evaluation execs into a
fresh globals dict, so evaluations share nothing mutable and take no lock.
Compiling still takes `CEL_LOCK` (cel-python's parser and Environment touch
process state); compiles are bounded by the text limits.
"""
from __future__ import annotations

import contextvars
import logging
import operator
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import celpy
import celpy.celtypes as ct
import celpy.evaluation as ce
import lark
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError

from jitgate.errors import JitgateError
from policy import limits
from policy.names import bidi_or_control

# Expected evaluation errors (a missing map key) are reported in the decision;
# cel-python would also log each at ERROR level.
logging.getLogger("celpy").setLevel(logging.CRITICAL)

CEL_LOCK = threading.Lock()

CONTEXT_FIELDS: dict[str, tuple[str, ...] | None] = {
    "request": ("user", "resource", "login", "role", "duration", "reason", "ticket",
                "emergency", "extension", "start"),
    "user": ("name", "groups", "manager", "attributes"),
    "resource": ("name", "kind", "labels", "owners", "address", "logins", "roles"),
    "history": ("granted_90d", "denied_90d", "revoked_90d", "flagged_90d", "median_minutes"),
    "risk": ("known", "score", "reasons"),
    "now": None,
}
MACROS = ("exists", "all", "exists_one", "map", "filter")


class CelCompileError(JitgateError):
    """A CEL expression that cannot be used; `line`/`col` are 1-based within the text."""

    def __init__(self, message: str, code: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message, code=code)
        self.line = line
        self.col = col


class CelBudgetExceeded(JitgateError):
    """A decision's CEL work ran past its budget (never swallowed into a CEL value)."""

    code = "policy.cel_budget"

    def __init__(self, limit: int) -> None:
        super().__init__(f"over the CEL budget of {limit} units per decision")
        self.limit = limit


@dataclass
class Compiled:
    """A compiled expression, its AST (for the index's static analysis) and its cost estimate."""

    text: str
    ast: lark.Tree[Any]
    program: celpy.Runner
    cost: int = 0


class Cel:
    """One CEL environment for a policy set (compile only; evaluate via `evaluate`)."""

    def __init__(self) -> None:
        with CEL_LOCK:  # creating an Environment also touches process state (recursion limit)
            self.env = celpy.Environment(runner_class=celpy.CompiledRunner)

    def compile(self, text: str, max_collection: int = 1) -> Compiled:
        """Parse, check names, bounds and cost, transpile; raise CelCompileError with a plain message.

        `max_collection` is the largest list or map the context can hold (from the
        policy's users and resources): the cost estimate's size for a non-literal range.
        """
        check_text(text)
        try:
            with CEL_LOCK:
                ast = self.env.compile(text)
        except CELParseError as e:
            line, col = getattr(e, "line", None) or 1, getattr(e, "column", None) or 1
            raise CelCompileError(f"CEL syntax error: {_near(text, line, col)}", "policy.cel_syntax",
                                  line, col) from None
        except RecursionError:
            raise CelCompileError("CEL expression nested too deeply", "policy.cel_syntax") from None
        except Exception as e:  # lark raises several unrelated classes for odd input
            raise CelCompileError(f"CEL syntax error: {e}".splitlines()[0], "policy.cel_syntax") from None
        check_names(ast)
        try:
            cost = check_cost(ast, max_collection)
        except RecursionError:
            raise CelCompileError("CEL expression nested too deeply", "policy.cel_syntax") from None
        kind = static_type(ast)
        if kind is not None and kind != "bool":
            raise CelCompileError(f"`when` must be a bool, got {kind}", "policy.cel_not_bool")
        try:
            with CEL_LOCK:
                program = self.env.program(ast)
            _fix_has(program)
        except RecursionError:
            raise CelCompileError("CEL expression nested too deeply", "policy.cel_syntax") from None
        except Exception as e:
            raise CelCompileError(f"CEL does not compile: {e}".splitlines()[0], "policy.cel_syntax") from None
        return Compiled(text, ast, program, cost)


_HAS = re.compile(r"lambda activation: not isinstance\(celpy\.evaluation\.result\(activation, (ex_\d+_h)\), "
                  r"CELEvalError\)")


def _fix_has(program: celpy.Runner) -> None:
    """Make `has()` return a CEL bool in cel-python 0.5.0's transpiled code.

    Its template yields a Python bool, which `&&`, `||` and `!` reject
    ("no such overload"), so `has(x.y) && x.y == 1` raised instead of being
    false. Only this program's code is rewritten; the library is untouched.
    """
    tp = getattr(program, "tp", None)
    if tp is None or "ident_arg has" not in tp.source_text:
        return
    tp.source_text = _HAS.sub(
        r"lambda activation: celpy.celtypes.BoolType(not isinstance("
        r"celpy.evaluation.result(activation, \1), CELEvalError))", tp.source_text)
    tp.executable_code = compile(tp.source_text, "<string>", "exec")


def _near(text: str, line: int, col: int) -> str:
    """`unexpected `x`` for the character at a 1-based position, or `unexpected end`."""
    lines = text.splitlines() or [""]
    if 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]):
        return f"unexpected `{lines[line - 1][col - 1:col + 9].rstrip()}`"
    return "unexpected end of expression"


# --- evaluation within a budget ----------------------------------------------

class Budget:
    """The CEL work one decision may still do, in units (see policy.limits)."""

    __slots__ = ("left", "limit")

    def __init__(self, units: int = limits.MAX_DECISION_COST) -> None:
        self.limit = units
        self.left = units

    def charge(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise CelBudgetExceeded(self.limit)

    def charge_values(self, values: tuple[Any, ...]) -> None:
        """One unit per element the values hold (nested values walked), strings per 64 chars."""
        stack = list(values)
        while stack:
            v = stack.pop()
            if isinstance(v, (str, bytes)):
                self.charge(1 + len(v) // 64)
            elif isinstance(v, (list, tuple)):
                self.charge(1)
                stack.extend(v)
            elif isinstance(v, dict):
                self.charge(1)
                stack.extend(v.keys())
                stack.extend(v.values())
            else:
                self.charge(1)

    def steps(self, iterable: Any) -> Any:
        """`iterable`, charging each comprehension step."""
        for item in iterable:
            self.charge(limits.CEL_STEP_COST)
            yield item


_BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("jitgate_cel_budget")
# Names of celpy.evaluation that only wrap control flow (their work is charged inside).
_UNCHARGED = frozenset({"result"})


def _charged(fn: Any) -> Any:
    def call(*args: Any) -> Any:
        _BUDGET.get().charge_values(args)
        return fn(*args)
    return call


def _stepped(macro: Any) -> Any:
    def call(activation: Any, bind: str, expr: Any, gen: Any) -> Any:
        budget = _BUDGET.get()
        return macro(activation, bind, expr, lambda act: budget.steps(gen(act)))
    return call


class _ChargingView:
    """A module as the transpiled code sees it: its callables charge the current budget."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if name in _UNCHARGED or not callable(value) or (
                isinstance(value, type) and issubclass(value, BaseException)):
            wrapped = value
        elif name.startswith("macro_"):
            wrapped = _stepped(value)
        else:
            wrapped = _charged(value)
        setattr(self, name, wrapped)  # cached: __getattr__ runs once per name
        return wrapped


_CELPY_VIEW = SimpleNamespace(evaluation=_ChargingView(ce), celtypes=_ChargingView(ct))
_OPERATOR_VIEW = _ChargingView(operator)
# A program's globals: the charging views and nothing else (a name outside them is a
# NameError at evaluation, i.e. a rule error).
_GLOBALS = {"celpy": _CELPY_VIEW, "operator": _OPERATOR_VIEW, "CELEvalError": ce.CELEvalError,
            "__builtins__": {"isinstance": isinstance}}


def evaluate(compiled: Compiled, activation: dict[str, Any], budget: Budget | None = None) -> Any:
    """Run a program within `budget` (a fresh one per call when None).

    Raises CelBudgetExceeded past the budget, celpy.CELEvalError (or others) on
    evaluation errors. Takes no lock: the program runs in its own globals.
    """
    tp = compiled.program.tp  # type: ignore[attr-defined]  # CompiledRunner
    act = tp.base_activation.clone()
    act.identifiers.load_values(activation)
    namespace = dict(_GLOBALS, base_activation=act)
    token = _BUDGET.set(budget or Budget())
    try:
        exec(tp.executable_code, namespace)
    except (CelBudgetExceeded, RecursionError, MemoryError):
        raise
    except Exception as ex:  # as cel-python's own evaluate: a Python problem inside the program
        raise ce.CELEvalError("evaluation error", type(ex), ex.args) from None
    finally:
        _BUDGET.reset(token)
    value = namespace["CEL"]
    if isinstance(value, ce.CELEvalError):
        raise value
    return value


def is_bool(value: Any) -> bool:
    return isinstance(value, (bool, ct.BoolType))


# --- static checks ---------------------------------------------------------

def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def check_text(text: str) -> None:
    """Bounds checked before parsing: size, control/bidi characters, bracket nesting."""
    if len(text) > limits.MAX_CEL_CHARS:
        raise CelCompileError(f"CEL expression is {len(text)} characters long, above the limit of "
                              f"{limits.MAX_CEL_CHARS}", "policy.cel_cost")
    for i, ch in enumerate(text):
        bad = bidi_or_control(ch, allow_newlines=True)
        if bad:
            raise CelCompileError(f"CEL expression contains {bad}", "policy.bad_text", *_line_col(text, i))
    depth = 0
    quote = ""
    escaped = False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth > limits.MAX_CEL_NESTING:
                raise CelCompileError(f"CEL expression nests brackets deeper than {limits.MAX_CEL_NESTING} "
                                      "levels", "policy.cel_cost", *_line_col(text, i))
        elif ch in ")]}":
            depth -= 1


def _where(tree: Any) -> tuple[int, int]:
    """Line and column (1-based) of the first token of a subtree."""
    if isinstance(tree, lark.Token):
        return tree.line or 1, tree.column or 1
    for tok in tree.scan_values(lambda v: isinstance(v, lark.Token)):
        return tok.line or 1, tok.column or 1
    return 1, 1


def _macro_parts(node: lark.Tree[Any]) -> tuple[Any, list[Any]] | None:
    """(range, [bind, body]) of a comprehension macro node, else None."""
    if node.data == "member_dot_arg" and len(node.children) >= 3 and str(node.children[1]) in MACROS:
        args = node.children[2]
        return node.children[0], list(args.children) if isinstance(args, lark.Tree) else []
    return None


def check_cost(ast: lark.Tree[Any], max_collection: int) -> int:
    """Literal sizes, comprehension nesting and the cost estimate (raises CelCompileError).

    The estimate, in the units of the evaluation budget: one per node, plus for each
    comprehension its range's size times (a step plus its body). A range's size is
    its literal's length, or `max_collection` for anything from the context.
    """
    cost, _size = _estimate(ast, max(1, max_collection), 0)
    if cost > limits.MAX_RULE_COST:
        raise CelCompileError(
            f"CEL cost estimate {cost} is above the limit of {limits.MAX_RULE_COST} (comprehension "
            f"ranges multiplied through their nesting; the largest list in the context has "
            f"{max_collection} entries)", "policy.cel_cost", *_where(ast))
    return cost


def _estimate(node: Any, m: int, nesting: int) -> tuple[int, int]:
    """(cost, size of the value) of a subtree; raises on a literal or nesting bound."""
    if isinstance(node, lark.Token):
        if _literal_kind(node) == "a string" and len(str(node)) - 2 > limits.MAX_CEL_STRING_LITERAL:
            raise CelCompileError(f"string literal of {len(str(node)) - 2} characters is above the limit of "
                                  f"{limits.MAX_CEL_STRING_LITERAL}", "policy.cel_cost", *_where(node))
        return 1, 1
    if node.data in ("list_lit", "map_lit"):
        items = node.children[0].children if node.children and isinstance(node.children[0], lark.Tree) else []
        count = len(items) if node.data == "list_lit" else len(items) // 2
        if count > limits.MAX_CEL_LIST_LITERAL:
            raise CelCompileError(f"{'list' if node.data == 'list_lit' else 'map'} literal of {count} entries "
                                  f"is above the limit of {limits.MAX_CEL_LIST_LITERAL}", "policy.cel_cost",
                                  *_where(node))
        cost = 1 + sum(_estimate(c, m, nesting)[0] for c in items)
        return cost, count
    parts = _macro_parts(node)
    if parts is not None:
        if nesting >= limits.MAX_CEL_COMPREHENSION_NESTING:
            raise CelCompileError(f"comprehensions nested deeper than {limits.MAX_CEL_COMPREHENSION_NESTING} "
                                  f"levels (`{node.children[1]}` inside another's body)",
                                  "policy.cel_cost", *_where(node.children[1]))
        rng, args = parts
        rcost, rsize = _estimate(rng, m, nesting)  # a range runs once: chained macros add, not multiply
        body = sum(_estimate(a, m, nesting + 1)[0] for a in args[1:])
        size = rsize if str(node.children[1]) in ("map", "filter") else 1
        return 1 + rcost + rsize * (limits.CEL_STEP_COST + body), size
    if node.data in ("ident", "member_dot"):
        cost = 1 + sum(_estimate(c, m, nesting)[0] for c in node.children)
        return cost, m
    results = [_estimate(c, m, nesting) for c in node.children]
    cost = 1 + sum(c for c, _s in results)
    sizes = [sz for _c, sz in results] or [1]
    size = sum(sizes) if node.data == "addition_add" else max(sizes)
    return cost, size


def check_names(ast: lark.Tree[Any]) -> None:
    """Unknown top-level names and unknown fields of request/user/resource/history fail here."""
    bound: set[str] = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and len(node.children) >= 3:
            method = node.children[1]
            args = node.children[2]
            if str(method) in MACROS and isinstance(args, lark.Tree) and args.children:
                first = args.children[0]
                for ident in first.iter_subtrees():
                    if ident.data == "ident" and ident.children:
                        bound.add(str(ident.children[0]))
                        break
    for node in ast.iter_subtrees():
        if node.data == "ident" and node.children:
            name = str(node.children[0])
            if name not in CONTEXT_FIELDS and name not in bound:
                tok = node.children[0]
                raise CelCompileError(
                    f"unknown name `{name}` (the context has {', '.join(CONTEXT_FIELDS)})",
                    "policy.cel_unknown_name", getattr(tok, "line", 1) or 1, getattr(tok, "column", 1) or 1)
        if node.data == "member_dot" and len(node.children) == 2:
            base, fieldtok = node.children
            root = _root_ident(base)
            if root in CONTEXT_FIELDS and root not in bound and _is_plain_ident(base):
                allowed = CONTEXT_FIELDS[root]
                if allowed is None or str(fieldtok) not in allowed:
                    fields = ", ".join(allowed) if allowed else "no fields (use methods like now.getHours(\"UTC\"))"
                    raise CelCompileError(
                        f"`{root}` has no field `{fieldtok}` (it has {fields})", "policy.cel_unknown_name",
                        getattr(fieldtok, "line", 1) or 1, getattr(fieldtok, "column", 1) or 1)


def _is_plain_ident(tree: Any) -> bool:
    return isinstance(tree, lark.Tree) and tree.data == "member" and len(tree.children) == 1 \
        and isinstance(tree.children[0], lark.Tree) and tree.children[0].data == "primary" \
        and isinstance(tree.children[0].children[0], lark.Tree) and tree.children[0].children[0].data == "ident"


def _root_ident(tree: Any) -> str | None:
    if _is_plain_ident(tree):
        return str(tree.children[0].children[0].children[0])
    return None


def unwrap(tree: Any) -> Any:
    """Skip single-child wrapper nodes (expr -> conditionalor -> ... -> member)."""
    while isinstance(tree, lark.Tree) and len(tree.children) == 1 and tree.data in (
            "expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication",
            "unary", "member", "primary"):
        tree = tree.children[0]
    return tree


def static_type(ast: lark.Tree[Any]) -> str | None:
    """The result kind when it is obvious without data ("bool", "string", ...), else None."""
    node = ast
    if isinstance(node, lark.Tree) and node.data == "expr" and len(node.children) == 3:
        a, b = static_type(node.children[1]), static_type(node.children[2])
        return a if a == b else None
    while isinstance(node, lark.Tree) and len(node.children) == 1 and node.data in (
            "expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication",
            "unary", "member", "primary"):
        node = node.children[0]
    if isinstance(node, lark.Tree):
        if node.data in ("conditionalor", "conditionaland") or node.data.startswith("relation"):
            return "bool"
        if node.data in ("unary_not",):
            return "bool"
        if node.data in ("unary_neg", "addition_add", "addition_sub", "multiplication_mul",
                         "multiplication_div", "multiplication_mod", "addition", "multiplication"):
            return "a number" if node.data != "addition_add" else None
        if node.data == "list_lit":
            return "a list"
        if node.data == "map_lit":
            return "a map"
        if node.data == "literal" and node.children:
            tok = node.children[0]
            return _literal_kind(tok)
        if node.data == "ident_arg" and node.children:
            fn = str(node.children[0])
            return {"duration": "a duration", "timestamp": "a timestamp", "size": "a number",
                    "int": "a number", "uint": "a number", "double": "a number",
                    "string": "a string", "bytes": "bytes"}.get(fn)
        if node.data == "member_dot_arg" and len(node.children) >= 2:
            method = str(node.children[1])
            if method in ("exists", "all", "exists_one", "startsWith", "endsWith", "contains", "matches"):
                return "bool"
            if method.startswith("get"):
                return "a number"
            if method in ("map", "filter"):
                return "a list"
    if isinstance(node, lark.Token):
        return _literal_kind(node)
    return None


def _literal_kind(tok: Any) -> str | None:
    t = getattr(tok, "type", "")
    v = str(tok)
    if t in ("STRING_LIT", "MLSTRING_LIT") or v[:1] in ('"', "'") or v[:2].lower() in ('r"', "r'"):
        return "a string"
    if t in ("BYTES_LIT",) or v[:2].lower() in ('b"', "b'"):
        return "bytes"
    if t in ("INT_LIT", "UINT_LIT", "FLOAT_LIT") or v[:1].isdigit():
        return "a number"
    if v in ("true", "false"):
        return "bool"
    if v == "null":
        return "null"
    return None


# --- context ---------------------------------------------------------------

def to_cel(value: Any) -> Any:
    """A plain Python value (from YAML/JSON) as a CEL value."""
    return json_to_cel(value)


def duration(td: timedelta) -> ct.DurationType:
    return ct.DurationType(seconds=int(td.total_seconds()))


def timestamp(t: datetime) -> ct.TimestampType:
    return ct.TimestampType(t)


def cel_map(d: dict[str, Any]) -> ct.MapType:
    return ct.MapType({ct.StringType(k): v for k, v in d.items()})
