"""CEL: compile once, check names statically, evaluate under one lock.

Thread safety: cel-python's `CompiledRunner` evaluates by `exec` into the
*module globals* of `celpy.evaluation` (it writes `base_activation` and reads
`CEL` there), so even one runner per thread would race. Every evaluation in
the process therefore goes through `CEL_LOCK`, a process-wide lock; decisions
run few CEL programs each (see index.py), so the lock is held briefly.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import celpy
import celpy.celtypes as ct
import lark

# Expected evaluation errors (a missing map key) are reported in the decision;
# cel-python would also log each at ERROR level.
logging.getLogger("celpy").setLevel(logging.CRITICAL)

CEL_LOCK = threading.Lock()

CONTEXT_FIELDS: dict[str, tuple[str, ...] | None] = {
    "request": ("user", "resource", "login", "role", "duration", "reason", "ticket",
                "emergency", "extension"),
    "user": ("name", "groups", "manager", "attributes"),
    "resource": ("name", "kind", "labels", "owners", "address", "logins", "roles"),
    "history": ("granted_90d", "denied_90d", "revoked_90d", "flagged_90d", "median_minutes"),
    "risk": ("known", "score", "reasons"),
    "now": None,
}
MACROS = ("exists", "all", "exists_one", "map", "filter")


class CelCompileError(Exception):
    """A CEL expression that cannot be used; `line`/`col` are 1-based within the text."""

    def __init__(self, message: str, code: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.code = code
        self.line = line
        self.col = col


@dataclass
class Compiled:
    """A compiled expression and its AST (for the index's static analysis)."""

    text: str
    ast: lark.Tree
    program: celpy.Runner


class Cel:
    """One CEL environment for a policy set (compile only; evaluate via `evaluate`)."""

    def __init__(self) -> None:
        with CEL_LOCK:  # creating an Environment also touches process state (recursion limit)
            self.env = celpy.Environment(runner_class=celpy.CompiledRunner)

    def compile(self, text: str) -> Compiled:
        """Parse, check names and transpile; raise CelCompileError with a plain message."""
        try:
            ast = self.env.compile(text)
        except celpy.CELParseError as e:
            line, col = getattr(e, "line", None) or 1, getattr(e, "column", None) or 1
            raise CelCompileError(f"CEL syntax error: {_near(text, line, col)}", "policy.cel_syntax",
                                  line, col) from None
        except RecursionError:
            raise CelCompileError("CEL expression nested too deeply", "policy.cel_syntax") from None
        except Exception as e:  # lark raises several unrelated classes for odd input
            raise CelCompileError(f"CEL syntax error: {e}".splitlines()[0], "policy.cel_syntax") from None
        check_names(ast)
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
        return Compiled(text, ast, program)


_HAS = re.compile(r"lambda activation: not isinstance\(celpy\.evaluation\.result\(activation, (ex_\d+_h)\), CELEvalError\)")


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


def evaluate(compiled: Compiled, activation: dict[str, Any]) -> Any:
    """Run a program; raises celpy.CELEvalError (or others) on evaluation errors."""
    with CEL_LOCK:
        return compiled.program.evaluate(activation)


def is_bool(value: Any) -> bool:
    return isinstance(value, (bool, ct.BoolType))


# --- static checks ---------------------------------------------------------

def check_names(ast: lark.Tree) -> None:
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


def static_type(ast: lark.Tree) -> str | None:
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
    return celpy.json_to_cel(value)


def duration(td: timedelta) -> ct.DurationType:
    return ct.DurationType(seconds=int(td.total_seconds()))


def timestamp(t: datetime) -> ct.TimestampType:
    return ct.TimestampType(t)


def cel_map(d: dict[str, Any]) -> ct.MapType:
    return ct.MapType({ct.StringType(k): v for k, v in d.items()})
