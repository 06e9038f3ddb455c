"""Reading YAML as nodes with marks, so every value keeps its `file:line:col`.

PyYAML's default constructors drop positions and silently keep the last of two
equal mapping keys; here keys are checked for duplicates and every type error
is collected (not raised), so one pass reports all errors of a file.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from policy.durations import parse_duration
from policy.errors import PolicyError
from policy.model import Loc

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass
class Sink:
    """Collects errors of one load."""

    errors: list[PolicyError] = field(default_factory=list)

    def add(self, loc: Loc, code: str, message: str) -> None:
        self.errors.append(PolicyError(loc.file, loc.line, loc.col, code, message))


def node_loc(file: str, node: yaml.Node) -> Loc:
    m = node.start_mark
    return Loc(file, m.line + 1, m.column + 1)


def compose(file: str, text: str, sink: Sink) -> yaml.Node | None:
    """Parse YAML text to a node tree; a syntax error goes to `sink`."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)
        problem = e.problem or e.context or "invalid YAML"
        sink.add(loc, "policy.yaml_syntax", f"YAML syntax error: {problem}")
    except yaml.YAMLError as e:
        sink.add(Loc(file, 1, 1), "policy.yaml_syntax", f"YAML error: {e}")
    except RecursionError:
        sink.add(Loc(file, 1, 1), "policy.yaml_syntax", "YAML nested too deeply")
    return None


def describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return {"str": "text", "int": "a number", "float": "a number", "bool": "a boolean",
            "null": "nothing", "timestamp": "a timestamp"}.get(tag, tag)


class Reader:
    """Typed access to the nodes of one file, reporting problems to a sink."""

    def __init__(self, file: str, sink: Sink) -> None:
        self.file = file
        self.sink = sink
        self._constructor = SafeConstructor()

    def loc(self, node: yaml.Node) -> Loc:
        return node_loc(self.file, node)

    def error(self, node: yaml.Node, code: str, message: str) -> None:
        self.sink.add(self.loc(node), code, message)

    def type_error(self, node: yaml.Node, what: str, expected: str) -> None:
        hint = "; quote it" if expected == "text" and isinstance(node, yaml.ScalarNode) else ""
        self.error(node, "policy.type", f"{what} must be {expected}, got {describe(node)}{hint}")

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]] | None:
        """Pairs (key text, key node, value node) in order; duplicates are reported."""
        if not isinstance(node, yaml.MappingNode):
            self.type_error(node, what, "a mapping")
            return None
        if any(k.tag == _MERGE for k, _ in node.value):
            try:
                self._constructor.flatten_mapping(node)
            except yaml.MarkedYAMLError as e:
                self.error(node, "policy.yaml_syntax", f"{what}: bad merge key: {e.problem}")
                return None
        seen: dict[str, Loc] = {}
        pairs: list[tuple[str, yaml.Node, yaml.Node]] = []
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.error(knode, "policy.type", f"{what}: keys must be text, got {describe(knode)}")
                continue
            key = knode.value
            if key in seen:
                first = seen[key]
                self.error(knode, "policy.duplicate",
                           f"{what}: duplicate key `{key}` (first at line {first.line})")
                continue
            seen[key] = self.loc(knode)
            pairs.append((key, knode, vnode))
        return pairs

    def fields(self, node: yaml.Node, what: str, known: tuple[str, ...],
               required: tuple[str, ...] = ()) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """A mapping with a closed set of fields; unknown and missing ones are reported."""
        pairs = self.mapping(node, what)
        if pairs is None:
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, knode, vnode in pairs:
            if key not in known:
                self.error(knode, "policy.unknown_field",
                           f"{what}: unknown field `{key}` (known: {', '.join(known)})")
                continue
            out[key] = (knode, vnode)
        for req in required:
            if req not in out:
                self.error(node, "policy.missing_field", f"{what}: missing field `{req}`")
        return out

    def scalar(self, node: yaml.Node) -> Any:
        """The constructed value of a scalar node (raises ValueError on a bad scalar)."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
            raise ValueError(str(e)) from None

    def text(self, node: yaml.Node, what: str, *, allow_empty: bool = True) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            self.type_error(node, what, "text")
            return None
        if not allow_empty and not node.value.strip():
            self.error(node, "policy.type", f"{what} must not be empty")
            return None
        return node.value

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":bool"):
            return bool(self.scalar(node))
        self.type_error(node, what, "true or false")
        return None

    def integer(self, node: yaml.Node, what: str, *, minimum: int = 0) -> int | None:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":int"):
            try:
                v = self.scalar(node)
            except ValueError:
                v = None
            if isinstance(v, int) and v >= minimum:
                return v
            self.error(node, "policy.type", f"{what} must be a whole number >= {minimum}")
            return None
        self.type_error(node, what, f"a whole number >= {minimum}")
        return None

    def duration(self, node: yaml.Node, what: str) -> timedelta | None:
        text = self.text(node, what) if isinstance(node, yaml.ScalarNode) and node.tag == _STR else None
        if text is None:
            if not (isinstance(node, yaml.ScalarNode) and node.tag == _STR):
                self.error(node, "policy.bad_duration",
                           f"{what} must be a duration like `30m` or `1h30m`, got {describe(node)}")
            return None
        try:
            td = parse_duration(text)
        except ValueError as e:
            self.error(node, "policy.bad_duration", f"{what}: {e}")
            return None
        if td <= timedelta(0):
            self.error(node, "policy.bad_duration", f"{what} must be longer than 0s")
            return None
        return td

    def text_list(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.type_error(node, what, "a list")
            return None
        out = []
        for item in node.value:
            v = self.text(item, f"{what} entry", allow_empty=False)
            if v is not None:
                out.append((v, item))
        return out

    def text_map(self, node: yaml.Node, what: str) -> dict[str, str] | None:
        pairs = self.mapping(node, what)
        if pairs is None:
            return None
        out = {}
        for key, _k, vnode in pairs:
            v = self.text(vnode, f"{what} `{key}`")
            if v is not None:
                out[key] = v
        return out

    def plain(self, node: yaml.Node, what: str, depth: int = 0) -> Any:
        """Any JSON-like value (for attributes and requests); timestamps become RFC 3339 text."""
        if depth > 50:
            self.error(node, "policy.type", f"{what} is nested too deeply")
            return None
        if isinstance(node, yaml.MappingNode):
            pairs = self.mapping(node, what)
            if pairs is None:
                return None
            return {k: self.plain(v, f"{what}.{k}", depth + 1) for k, _kn, v in pairs}
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(v, what, depth + 1) for v in node.value]
        try:
            v = self.scalar(node)
        except ValueError as e:
            self.error(node, "policy.type", f"{what}: bad value: {e}")
            return None
        if isinstance(v, (_dt.datetime, _dt.date)):
            return v.isoformat()
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            return None if self.error(node, "policy.type", f"{what}: not a finite number") else None
        if isinstance(v, (bytes, set)):
            self.type_error(node, what, "text, a number, a boolean, a list or a mapping")
            return None
        return v
