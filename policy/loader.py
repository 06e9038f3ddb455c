"""Stage 1: YAML files -> a merged, typed but not yet cross-checked model."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policy.decision import SESSION_OPTIONS, ApprovalLevel
from policy.errors import PolicyError, RequestError
from policy.limits import MAX_POLICY_FILE_BYTES, MAX_POLICY_FILES, MAX_POLICY_SET_BYTES
from policy.model import (
    EFFECTS, RESOURCE_KINDS, ApprovalSpec, Loc, PolicyTest, Resource, Rule, Settings,
)
from policy.request import PolicyRequest
from policy.yamlnodes import Reader, Sink, compose

TOP_FIELDS = ("version", "settings", "users", "groups", "resources", "rules", "tests")
SETTINGS_FIELDS = ("grace_period", "pending_timeout", "default_max_extensions", "duration_step")
USER_FIELDS = ("groups", "manager", "attributes", "description")
RESOURCE_FIELDS = ("kind", "address", "labels", "logins", "roles", "owners", "host_key",
                   "host_ca", "database", "credentials", "description")
RULE_FIELDS = ("name", "when", "effect", "approval", "review", "max_duration", "max_extensions",
               "session", "message", "description")
TEST_FIELDS = ("name", "request", "expect")
EXPECT_FIELDS = ("effect", "approval", "rules", "message", "max_duration", "max_extensions",
                 "session", "errors")
APPROVAL_FIELDS = ("mode", "levels", "review")
LEVEL_FIELDS = ("approvers", "min")
SECRET_PREFIXES = ("env:", "file:")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class RawUser:
    """A user as written, before `groups:` memberships are merged in."""

    name: str
    groups: list[str]
    manager: str | None
    attributes: dict[str, Any]
    description: str
    loc: Loc
    manager_loc: Loc


@dataclass
class Raw:
    """Everything read from one or more files, in file order, with locations."""

    files: list[str] = field(default_factory=list)
    settings: Settings | None = None
    users: dict[str, RawUser] = field(default_factory=dict)
    groups: dict[str, list[tuple[str, Loc]]] = field(default_factory=dict)
    group_locs: dict[str, Loc] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    owner_locs: dict[str, list[Loc]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    approver_refs: list[tuple[str, Loc, str]] = field(default_factory=list)  # (word, where, rule)
    tests: list[PolicyTest] = field(default_factory=list)
    expect_locs: dict[str, Loc] = field(default_factory=dict)


def policy_files(path: Path) -> list[Path]:
    """The YAML files of a policy set: the file itself, or every *.yaml/*.yml below a folder,
    sorted by path; hidden files and folders (`.github/`, `.ci.yml`) are not policy."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")
                      and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [path]


def read_raw(path: Path, sink: Sink) -> Raw:
    """Read every file of the set into one Raw model; problems go to `sink`."""
    raw = Raw()
    files = policy_files(path)
    if path.is_dir() and not files:
        sink.errors.append(PolicyError(str(path), 1, 1, "policy.io", "no .yaml files in this folder"))
    if len(files) > MAX_POLICY_FILES:
        sink.errors.append(PolicyError(str(path), 1, 1, "policy.file_size",
                                       f"{len(files)} policy files, above the limit of {MAX_POLICY_FILES}"))
        return raw
    total = 0
    for f in files:
        display = str(f)
        raw.files.append(display)
        try:
            size = f.stat().st_size
            total += size
            if size > MAX_POLICY_FILE_BYTES:
                sink.errors.append(PolicyError(display, 1, 1, "policy.file_size",
                                               f"file is {size} bytes, above the limit of {MAX_POLICY_FILE_BYTES}"))
                continue
            if total > MAX_POLICY_SET_BYTES:
                sink.errors.append(PolicyError(display, 1, 1, "policy.file_size",
                                               f"the policy set reaches {total} bytes with this file, above the "
                                               f"limit of {MAX_POLICY_SET_BYTES}"))
                continue
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            sink.errors.append(PolicyError(display, 1, 1, "policy.io", f"cannot read file: {reason}"))
            continue
        read_text(display, text, raw, sink)
    return raw


def read_text(display: str, text: str, raw: Raw, sink: Sink) -> None:
    """Read one file's text into `raw`."""
    root = compose(display, text, sink)
    if root is None:
        if not any(e.file == display for e in sink.errors):
            sink.errors.append(PolicyError(display, 1, 1, "policy.missing_field", "empty policy file"))
        return
    _FileReader(Reader(display, sink), raw).read(root)


class _FileReader:
    def __init__(self, r: Reader, raw: Raw) -> None:
        self.r = r
        self.raw = raw

    def read(self, root: yaml.Node) -> None:
        top = self.r.fields(root, "policy file", TOP_FIELDS, required=("version",))
        if top is None:
            return
        if "version" in top:
            vnode = top["version"][1]
            if not (isinstance(vnode, yaml.ScalarNode) and vnode.tag.endswith(":int") and vnode.value == "1"):
                self.r.error(vnode, "policy.version", "unsupported policy format: `version` must be 1")
        readers = {"settings": self.settings, "users": self.users, "groups": self.groups,
                   "resources": self.resources, "rules": self.rules, "tests": self.tests}
        for key, fn in readers.items():
            if key in top:
                fn(top[key][1])

    # --- settings -----------------------------------------------------------
    def settings(self, node: yaml.Node) -> None:
        r = self.r
        f = r.fields(node, "settings", SETTINGS_FIELDS)
        if f is None:
            return
        if self.raw.settings is not None:
            r.error(node, "policy.duplicate",
                    f"`settings` given twice (first at {self.raw.settings.loc})")
            return
        kw: dict[str, Any] = {}
        for name in ("grace_period", "pending_timeout", "duration_step"):
            if name in f:
                v = r.duration(f[name][1], f"settings.{name}")
                if v is not None:
                    kw[name] = v
        if "default_max_extensions" in f:
            v = r.integer(f["default_max_extensions"][1], "settings.default_max_extensions")
            if v is not None:
                kw["default_max_extensions"] = v
        self.raw.settings = Settings(**kw, loc=r.loc(node))

    # --- users and groups ---------------------------------------------------
    def users(self, node: yaml.Node) -> None:
        r = self.r
        pairs = r.mapping(node, "users")
        for name, knode, vnode in pairs or []:
            what = f"user `{name}`"
            if name in self.raw.users:
                r.error(knode, "policy.duplicate",
                        f"duplicate user `{name}` (first at {self.raw.users[name].loc})")
                continue
            if isinstance(vnode, yaml.ScalarNode) and vnode.tag.endswith(":null"):
                f: dict[str, tuple[yaml.Node, yaml.Node]] | None = {}
            else:
                f = r.fields(vnode, what, USER_FIELDS)
            if f is None:
                continue
            groups = [g for g, _ in (r.text_list(f["groups"][1], f"{what}: groups") or [])] if "groups" in f else []
            manager = None
            manager_loc = r.loc(knode)
            if "manager" in f:
                manager = r.name(f["manager"][1], f"{what}: manager")
                manager_loc = r.loc(f["manager"][1])
            attributes: dict[str, Any] = {}
            if "attributes" in f:
                a = r.plain(f["attributes"][1], f"{what}: attributes")
                if isinstance(a, dict):
                    attributes = a
                elif a is not None:
                    r.type_error(f["attributes"][1], f"{what}: attributes", "a mapping")
            desc = r.text(f["description"][1], f"{what}: description") if "description" in f else ""
            self.raw.users[name] = RawUser(name, groups, manager, attributes, desc or "",
                                           r.loc(knode), manager_loc)

    def groups(self, node: yaml.Node) -> None:
        r = self.r
        for name, knode, vnode in r.mapping(node, "groups") or []:
            if name in self.raw.group_locs:
                r.error(knode, "policy.duplicate",
                        f"duplicate group `{name}` (first at {self.raw.group_locs[name]})")
                continue
            self.raw.group_locs[name] = r.loc(knode)
            members = r.text_list(vnode, f"group `{name}`")
            self.raw.groups[name] = [(m, r.loc(n)) for m, n in members or []]

    # --- resources ----------------------------------------------------------
    def resources(self, node: yaml.Node) -> None:
        r = self.r
        for name, knode, vnode in r.mapping(node, "resources") or []:
            what = f"resource `{name}`"
            if name in self.raw.resources:
                r.error(knode, "policy.duplicate",
                        f"duplicate resource `{name}` (first at {self.raw.resources[name].loc})")
                continue
            f = r.fields(vnode, what, RESOURCE_FIELDS, required=("kind", "address"))
            if f is None:
                continue
            ok = True
            kind = r.text(f["kind"][1], f"{what}: kind") if "kind" in f else None
            if kind is not None and kind not in RESOURCE_KINDS:
                r.error(f["kind"][1], "policy.type",
                        f"{what}: unknown kind `{kind}` (known: {', '.join(RESOURCE_KINDS)})")
                kind = None
            ok &= kind is not None
            address = r.text(f["address"][1], f"{what}: address", allow_empty=False) if "address" in f else None
            if address is not None and not _valid_address(address):
                r.error(f["address"][1], "policy.type", f"{what}: address must be host:port, got `{address}`")
                address = None
            ok &= address is not None
            kw: dict[str, Any] = {}
            if "labels" in f:
                labels = r.text_map(f["labels"][1], f"{what}: label")
                ok &= labels is not None
                kw["labels"] = labels or {}
            for lst in ("logins", "roles"):
                if lst in f:
                    items = r.text_list(f[lst][1], f"{what}: {lst}")
                    ok &= items is not None
                    kw[lst] = tuple(v for v, _ in items or [])
            if "owners" in f:
                items = r.text_list(f["owners"][1], f"{what}: owners")
                ok &= items is not None
                kw["owners"] = tuple(v for v, _ in items or [])
                self.raw.owner_locs[name] = [r.loc(n) for _, n in items or []]
            for txt in ("host_key", "host_ca", "database", "credentials", "description"):
                if txt in f:
                    v = r.text(f[txt][1], f"{what}: {txt}", allow_empty=(txt == "description"))
                    ok &= v is not None
                    kw[txt] = v
            creds = kw.get("credentials")
            if creds is not None and not creds.startswith(SECRET_PREFIXES):
                r.error(f["credentials"][1], "policy.secret",
                        f"{what}: credentials must be a reference (`env:NAME` or `file:PATH`), "
                        "never the secret itself")
                ok = False
            elif creds is not None and _credentials_problem(creds):
                r.error(f["credentials"][1], "policy.credentials", f"{what}: credentials `{creds}` "
                        f"{_credentials_problem(creds)}")
                ok = False
            if kind == "ssh" and "roles" in f:
                r.error(f["roles"][0], "policy.unknown_field", f"{what}: an ssh resource has `logins`, not `roles`")
            if kind == "postgres" and "logins" in f:
                r.error(f["logins"][0], "policy.unknown_field", f"{what}: a postgres resource has `roles`, not `logins`")
            if kind == "ssh" and not kw.get("logins"):
                r.error(vnode, "policy.missing_field", f"{what}: an ssh resource needs `logins`")
            if kind == "postgres" and not kw.get("roles"):
                r.error(vnode, "policy.missing_field", f"{what}: a postgres resource needs `roles`")
            # Kept even when a field is wrong (the set is refused anyway), so later
            # references to it do not add misleading `unknown resource` errors.
            kw = {k: v for k, v in kw.items() if v is not None}
            self.raw.resources[name] = Resource(name=name, kind=kind or "ssh", address=address or "",
                                                **kw, loc=r.loc(knode))

    # --- rules --------------------------------------------------------------
    def rules(self, node: yaml.Node) -> None:
        r = self.r
        if not isinstance(node, yaml.SequenceNode):
            r.type_error(node, "rules", "a list")
            return
        seen = {rule.name: rule.loc for rule in self.raw.rules}
        for item in node.value:
            f = r.fields(item, "rule", RULE_FIELDS, required=("name", "when"))
            if f is None:
                continue
            name = r.name(f["name"][1], "rule name") if "name" in f else None
            if name is None:
                continue
            what = f"rule `{name}`"
            if name in seen:
                r.error(f["name"][1], "policy.duplicate", f"duplicate rule name `{name}` (first at {seen[name]})")
                continue
            seen[name] = r.loc(item)
            rule = self._rule(name, what, item, f)
            if rule is not None:
                self.raw.rules.append(rule)

    def _rule(self, name: str, what: str, item: yaml.Node,
              f: dict[str, tuple[yaml.Node, yaml.Node]]) -> Rule | None:
        r = self.r
        ok = True
        when = None
        if "when" in f:
            wnode = f["when"][1]
            if isinstance(wnode, yaml.ScalarNode) and wnode.tag.endswith(":bool"):
                when = "true" if r.scalar(wnode) else "false"
            else:
                when = r.text(wnode, f"{what}: when", allow_empty=False)
        ok &= when is not None
        effect = "allow"
        if "effect" in f:
            e = r.text(f["effect"][1], f"{what}: effect")
            if e is not None and e not in EFFECTS:
                r.error(f["effect"][1], "policy.type", f"{what}: unknown effect `{e}` (use allow, require or deny)")
                e = None
            ok &= e is not None
            effect = e or "allow"
        kw: dict[str, Any] = {}
        if effect == "deny":
            for k in ("approval", "review", "max_duration", "max_extensions", "session"):
                if k in f:
                    r.error(f[k][0], "policy.unknown_field", f"{what}: a deny rule takes no `{k}`")
                    ok = False
        else:
            if "message" in f:
                r.error(f["message"][0], "policy.unknown_field",
                        f"{what}: `message` is for deny rules (an {effect} rule shows none)")
                ok = False
            if effect == "allow" and "approval" not in f:
                r.error(item, "policy.missing_field",
                        f"{what}: an allow rule needs `approval` (auto, break_glass or levels)")
                ok = False
        if "approval" in f:
            spec, review = self._approval(what, f["approval"][1])
            ok &= spec is not None
            if spec is not None:
                kw["approval"] = spec
            if review is not None:
                kw["review"] = review
        if "review" in f:
            items = r.text_list(f["review"][1], f"{what}: review")
            ok &= items is not None
            if "review" in kw:
                r.error(f["review"][0], "policy.duplicate", f"{what}: `review` given twice")
                ok = False
            kw["review"] = tuple(v for v, _ in items or [])
            self._approver_locs(what, items or [])
        approval = kw.get("approval")
        if approval is not None and approval.mode == "break_glass" and not kw.get("review"):
            r.error(f["approval"][1], "policy.missing_field",
                    f"{what}: break_glass needs `review` (who reviews the access afterwards)")
            ok = False
        if kw.get("review") and (approval is None or approval.mode != "break_glass"):
            r.error(f["review"][0] if "review" in f else item, "policy.unknown_field",
                    f"{what}: `review` is only for break_glass approval")
            ok = False
        if "max_duration" in f:
            v = r.duration(f["max_duration"][1], f"{what}: max_duration")
            ok &= v is not None
            if v is not None:
                kw["max_duration"] = v
        if "max_extensions" in f:
            v = r.integer(f["max_extensions"][1], f"{what}: max_extensions")
            ok &= v is not None
            if v is not None:
                kw["max_extensions"] = v
        if "session" in f:
            sf = r.fields(f["session"][1], f"{what}: session", SESSION_OPTIONS)
            ok &= sf is not None
            sess = {}
            for k, (_kn, vn) in (sf or {}).items():
                b = r.boolean(vn, f"{what}: session.{k}")
                ok &= b is not None
                sess[k] = bool(b)
            kw["session"] = sess
        if "message" in f:
            m = r.text(f["message"][1], f"{what}: message")
            ok &= m is not None
            kw["message"] = m or ""
        if "description" in f:
            kw["description"] = r.text(f["description"][1], f"{what}: description") or ""
        if when is None:
            return None  # other field errors are reported; the rule still gets its CEL checked
        wnode = f["when"][1]
        return Rule(name=name, when=when, position=len(self.raw.rules), effect=effect,
                    loc=r.loc(item), when_loc=_cel_origin(r, wnode), **kw)

    def _approval(self, what: str, node: yaml.Node) -> tuple[ApprovalSpec | None, tuple[str, ...] | None]:
        r = self.r
        if isinstance(node, yaml.ScalarNode):
            mode = r.text(node, f"{what}: approval")
            if mode in ("auto", "break_glass"):
                return ApprovalSpec(mode=mode, loc=r.loc(node)), None
            if mode is not None:
                r.error(node, "policy.type",
                        f"{what}: approval must be `auto`, `break_glass` or a mapping with `levels`, got `{mode}`")
            return None, None
        f = r.fields(node, f"{what}: approval", APPROVAL_FIELDS)
        if f is None:
            return None, None
        mode = "levels"
        if "mode" in f:
            m = r.text(f["mode"][1], f"{what}: approval.mode")
            if m not in ("auto", "levels", "break_glass"):
                if m is not None:
                    r.error(f["mode"][1], "policy.type", f"{what}: unknown approval mode `{m}`")
                return None, None
            mode = m
        review = None
        if "review" in f:
            items = r.text_list(f["review"][1], f"{what}: approval.review")
            if items is None:
                return None, None
            review = tuple(v for v, _ in items)
            self._approver_locs(what, items)
        if mode != "levels":
            if "levels" in f:
                r.error(f["levels"][0], "policy.unknown_field", f"{what}: `levels` need mode `levels`")
                return None, None
            return ApprovalSpec(mode=mode, loc=r.loc(node)), review
        if "levels" not in f:
            r.error(node, "policy.missing_field", f"{what}: approval needs `levels`")
            return None, None
        lnode = f["levels"][1]
        if not isinstance(lnode, yaml.SequenceNode) or not lnode.value:
            r.error(lnode, "policy.type", f"{what}: approval.levels must be a non-empty list")
            return None, None
        levels = []
        for i, lv in enumerate(lnode.value, 1):
            lf = r.fields(lv, f"{what}: level {i}", LEVEL_FIELDS, required=("approvers",))
            if lf is None or "approvers" not in lf:
                return None, None
            items = r.text_list(lf["approvers"][1], f"{what}: level {i} approvers")
            if items is None:
                return None, None
            if not items:
                r.error(lf["approvers"][1], "policy.type", f"{what}: level {i} names no approvers")
                return None, None
            self._approver_locs(what, items)
            mn = 1
            if "min" in lf:
                v = r.integer(lf["min"][1], f"{what}: level {i} min", minimum=1)
                if v is None:
                    return None, None
                mn = v
            levels.append(ApprovalLevel([v for v, _ in items], mn))
        return ApprovalSpec(mode="levels", levels=tuple(levels), loc=r.loc(node)), review

    def _approver_locs(self, what: str, items: list[tuple[str, yaml.Node]]) -> None:
        self.raw.approver_refs.extend((v, self.r.loc(n), what) for v, n in items)

    # --- tests --------------------------------------------------------------
    def tests(self, node: yaml.Node) -> None:
        r = self.r
        if not isinstance(node, yaml.SequenceNode):
            r.type_error(node, "tests", "a list")
            return
        seen = {t.name: t.loc for t in self.raw.tests}
        for item in node.value:
            f = r.fields(item, "test", TEST_FIELDS, required=("name", "request", "expect"))
            if f is None or "name" not in f:
                continue
            name = r.name(f["name"][1], "test name")
            if name is None:
                continue
            if name in seen:
                r.error(f["name"][1], "policy.duplicate", f"duplicate test name `{name}` (first at {seen[name]})")
                continue
            seen[name] = r.loc(item)
            if "request" not in f or "expect" not in f:
                continue
            request = self._request(name, f["request"][1])
            expect = self._expect(name, f["expect"][1])
            if request is not None and expect is not None:
                self.raw.tests.append(PolicyTest(name, request, expect, r.loc(item)))
                self.raw.expect_locs[name] = r.loc(f["expect"][1])

    def _request(self, name: str, node: yaml.Node) -> PolicyRequest | None:
        n_errors = len(self.r.sink.errors)
        data = self.r.plain(node, f"test `{name}`: request")
        if len(self.r.sink.errors) != n_errors:
            return None
        try:
            return PolicyRequest.from_mapping(data)
        except RequestError as e:
            self.r.error(node, "policy.bad_request", f"test `{name}`: {e}")
            return None

    def _expect(self, name: str, node: yaml.Node) -> dict[str, Any] | None:
        r = self.r
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
                out[key] = self._expect_approval(what, v)
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
                sf = r.fields(v, f"{what}.session", SESSION_OPTIONS) or {}
                out[key] = {k: r.boolean(vn, f"{what}.session.{k}") for k, (_kn, vn) in sf.items()}
            elif key == "errors":
                out[key] = r.boolean(v, f"{what}.errors")
        return out if len(r.sink.errors) == n_errors else None

    def _expect_approval(self, what: str, node: yaml.Node) -> dict[str, Any] | None:
        r = self.r
        if isinstance(node, yaml.ScalarNode):
            m = r.text(node, f"{what}.approval")
            if m is not None and m not in ("auto", "levels", "break_glass"):
                r.error(node, "policy.type", f"{what}.approval must be auto, levels or break_glass")
            return {"mode": m}
        f = r.fields(node, f"{what}.approval", APPROVAL_FIELDS)
        if f is None:
            return None
        out: dict[str, Any] = {}
        if "mode" in f:
            out["mode"] = r.text(f["mode"][1], f"{what}.approval.mode")
        if "review" in f:
            out["review"] = [x for x, _ in r.text_list(f["review"][1], f"{what}.approval.review") or []]
        if "levels" in f:
            plain = r.plain(f["levels"][1], f"{what}.approval.levels")
            levels = []
            for lv in plain if isinstance(plain, list) else []:
                if not isinstance(lv, dict) or not isinstance(lv.get("approvers"), list):
                    r.error(f["levels"][1], "policy.type",
                            f"{what}.approval.levels: each level needs `approvers`")
                    return None
                levels.append({"approvers": [str(a) for a in lv["approvers"]], "min": lv.get("min", 1)})
            out["levels"] = levels
        return out


def _credentials_problem(ref: str) -> str | None:
    """Why a `credentials:` reference reaches outside what a broker may resolve (the broker
    checks again against its own allow-list and credentials directory); None when it does not."""
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        if not _ENV_NAME.fullmatch(rest):
            return "must name an environment variable (letters, digits, `_`)"
        return "names a jitgate setting, never a credential" if rest.upper().startswith("JITGATE_") else None
    if (not rest or rest.startswith("/") or "\\" in rest or "\x00" in rest
            or any(part in ("", ".", "..") for part in rest.split("/"))):
        return "must be a path relative to the broker's credentials directory, without `..`"
    return None


def _valid_address(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _cel_origin(r: Reader, node: yaml.Node) -> Loc:
    """Where column 1 of the CEL text sits in the file (quoted scalars start one later)."""
    loc = r.loc(node)
    if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        return Loc(loc.file, loc.line, loc.col + 1)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        return Loc(loc.file, loc.line + 1, loc.col)  # approximate: the block's first line
    return loc
