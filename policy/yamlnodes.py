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

from policy import limits
from policy.durations import parse_duration
from policy.errors import PolicyError
from policy.model import Loc
from policy.names import name_problem, shown

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


class YamlBoundError(yaml.YAMLError):
    """A file past one of the YAML bounds of `policy.limits`, at the node that crossed it."""

    def __init__(self, mark: Any, code: str, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.code = code
        self.message = message


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases, expanded nodes and nesting while composing.

    Composing itself stays small (an alias shares its node); it is every later walk
    that would expand a billion-laughs file, so the node count here includes each
    alias's whole expanded subtree, and the file is refused before anything walks it.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._nodes = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(anchored node) -> its expanded node count

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > limits.MAX_YAML_ALIASES:
                raise YamlBoundError(event.start_mark, "policy.yaml_aliases",
                                     f"more than {limits.MAX_YAML_ALIASES} YAML aliases in one file")
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise YamlBoundError(event.start_mark, "policy.yaml_aliases",
                                     f"alias `*{event.anchor}` refers to a node that contains it")
            self._count(size, event.start_mark)
            return node
        self._depth += 1
        if self._depth > limits.MAX_YAML_DEPTH:
            raise YamlBoundError(event.start_mark, "policy.yaml_depth",
                                 f"YAML nested deeper than {limits.MAX_YAML_DEPTH} levels")
        before = self._nodes
        self._count(1, event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if getattr(event, "anchor", None) is not None:
            self._sizes[id(node)] = self._nodes - before
        return node

    def _count(self, n: int, mark: Any) -> None:
        self._nodes += n
        if self._nodes > limits.MAX_YAML_NODES:
            raise YamlBoundError(mark, "policy.yaml_size",
                                 f"the file expands to more than {limits.MAX_YAML_NODES} YAML nodes "
                                 "(aliases counted expanded)")


def _mark_loc(file: str, mark: Any) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)


def compose(file: str, text: str, sink: Sink) -> yaml.Node | None:
    """Parse YAML text to a node tree within the YAML bounds; a problem goes to `sink`."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.MAX_POLICY_FILE_BYTES:
        sink.add(Loc(file, 1, 1), "policy.file_size",
                 f"file is {size} bytes, above the limit of {limits.MAX_POLICY_FILE_BYTES}")
        return None
    loader: BoundedLoader | None = None
    try:
        loader = BoundedLoader(text)  # its reader refuses unprintable characters here already
        return loader.get_single_node()
    except YamlBoundError as e:
        sink.add(_mark_loc(file, e.mark), e.code, e.message)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        sink.add(_mark_loc(file, mark), "policy.yaml_syntax", f"YAML syntax error: {problem}")
    except yaml.reader.ReaderError as e:  # a raw control character: point at it
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        sink.add(Loc(file, line, col), "policy.bad_text",
                 f"unprintable character U+{e.character:04X}"
                 if isinstance(e.character, int) else "unprintable character")
    except yaml.YAMLError as e:
        sink.add(Loc(file, 1, 1), "policy.yaml_syntax", f"YAML error: {e}")
    except RecursionError:
        sink.add(Loc(file, 1, 1), "policy.yaml_syntax", "YAML nested too deeply")
    finally:
        if loader is not None:
            loader.dispose()
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
            if not self.valid_name(knode, key, f"{what}: key"):
                continue
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

    def named_items(self, node: yaml.Node, what: str, known: tuple[str, ...], required: tuple[str, ...],
                    seen: dict[str, Loc]) -> list[tuple[str, yaml.Node, dict[str, tuple[yaml.Node, yaml.Node]]]]:
        """A list of mappings named by a `name` field unique across the set (`rules:`, `tests:`;
        `what` is "rule" or "test"): (name, item, fields) of each item with a usable new name.
        `seen` holds the names read before (from other files) and is updated."""
        if not isinstance(node, yaml.SequenceNode):
            self.type_error(node, f"{what}s", "a list")
            return []
        out = []
        for item in node.value:
            f = self.fields(item, what, known, required)
            name = self.name(f["name"][1], f"{what} name") if f is not None and "name" in f else None
            if f is None or name is None:
                continue
            if name in seen:
                self.error(f["name"][1], "policy.duplicate",
                           f"duplicate {what} name `{name}` (first at {seen[name]})")
                continue
            seen[name] = self.loc(item)
            out.append((name, item, f))
        return out

    def valid_name(self, node: yaml.Node, text: str, what: str) -> bool:
        """Whether `text` may be a name (see policy.names); reports the problem at `node`."""
        problem = name_problem(text)
        if problem is None:
            return True
        self.error(node, "policy.bad_name", f"{what} `{shown(text)}` {problem}")
        return False

    def name(self, node: yaml.Node, what: str) -> str | None:
        """Non-empty text that is a valid name."""
        v = self.text(node, what, allow_empty=False)
        return v if v is not None and self.valid_name(node, v, what) else None

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
        return str(node.value)

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
            v = self.name(item, f"{what} entry")
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
            if v is not None and (not v or self.valid_name(vnode, v, f"{what} `{key}`")):
                out[key] = v
        return out

    def plain(self, node: yaml.Node, what: str, depth: int = 0) -> Any:
        """Any JSON-like value (for attributes and requests); timestamps become RFC 3339 text."""
        if depth > limits.MAX_YAML_DEPTH:
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
            self.error(node, "policy.type", f"{what}: not a finite number")
            return None
        if isinstance(v, (bytes, set)):
            self.type_error(node, what, "text, a number, a boolean, a list or a mapping")
            return None
        return v
