"""Stage 1: YAML files -> a merged, typed model of what is written, not yet cross-checked.

Each field is read for its type and its own bounds; what fields mean together (a deny
rule takes no approval, break_glass needs a review) is checked in `checker.py`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from policy.errors import PolicyError
from policy.limits import MAX_POLICY_FILE_BYTES, MAX_POLICY_FILES, MAX_POLICY_SET_BYTES
from policy.model import EFFECTS, NOWHERE, RESOURCE_KINDS, Loc, PolicyTest, Resource, Settings
from policy.ruleparts import WrittenApproval, read_approval, read_session
from policy.stepup import StepUp, read_step_up
from policy.testing import read_tests
from policy.yamlnodes import Reader, Sink, compose

TOP_FIELDS = ("version", "settings", "users", "groups", "resources", "rules", "tests")
SETTINGS_FIELDS = ("grace_period", "pending_timeout", "default_max_extensions", "duration_step",
                   "max_schedule_ahead")
USER_FIELDS = ("groups", "manager", "attributes", "description")
RESOURCE_FIELDS = ("kind", "address", "labels", "logins", "roles", "owners", "host_key",
                   "host_ca", "database", "credentials", "description")
RULE_FIELDS = ("name", "when", "effect", "approval", "review", "max_duration", "max_extensions",
               "session", "message", "description", "notify", "step_up", "activate", "claim_within", "max_sessions")
MAX_NOTIFY_CHANNELS = 16  # channel names one rule may list in `notify:`
CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # as server.yaml's notify.channels names them
ACTIVATE_MODES = ("on_approval", "on_first_use")
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
class RawRule:
    """A rule as written, before its fields are checked together (checker.py makes the Rule).

    A field left out or unreadable keeps its default; `when` is None then (the rule is
    not built, but its other fields are still checked). `written` says where each field's key is.
    """

    name: str
    loc: Loc
    written: dict[str, Loc]
    when: str | None = None
    when_loc: Loc = NOWHERE
    effect: str = "allow"
    approval: WrittenApproval | None = None
    review: tuple[str, ...] | None = None  # the rule's own `review:` (approval.review is in `approval`)
    max_duration: timedelta | None = None
    max_extensions: int | None = None
    session: dict[str, bool] = field(default_factory=dict)
    message: str = ""
    description: str = ""
    step_up: StepUp | None = None
    notify: tuple[str, ...] = ()  # server.yaml channel names the approvers are told on (empty: the defaults)
    activate: str | None = None  # "on_approval" | "on_first_use" (POLICY.md Additions)
    claim_within: timedelta | None = None
    max_sessions: int | None = None


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
    rules: list[RawRule] = field(default_factory=list)
    approver_refs: list[tuple[str, Loc, str]] = field(default_factory=list)  # (word, where, rule)
    tests: list[PolicyTest] = field(default_factory=list)


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
        for name in ("grace_period", "pending_timeout", "duration_step", "max_schedule_ahead"):
            if name in f:
                td = r.duration(f[name][1], f"settings.{name}")
                if td is not None:
                    kw[name] = td
        if "default_max_extensions" in f:
            n = r.integer(f["default_max_extensions"][1], "settings.default_max_extensions")
            if n is not None:
                kw["default_max_extensions"] = n
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
            kind = r.text(f["kind"][1], f"{what}: kind") if "kind" in f else None
            if kind is not None and kind not in RESOURCE_KINDS:
                r.error(f["kind"][1], "policy.type",
                        f"{what}: unknown kind `{kind}` (known: {', '.join(RESOURCE_KINDS)})")
                kind = None
            address = r.text(f["address"][1], f"{what}: address", allow_empty=False) if "address" in f else None
            if address is not None and not _valid_address(address):
                r.error(f["address"][1], "policy.type", f"{what}: address must be host:port, got `{address}`")
                address = None
            kw: dict[str, Any] = {}
            if "labels" in f:
                kw["labels"] = r.text_map(f["labels"][1], f"{what}: label") or {}
            for lst in ("logins", "roles"):
                if lst in f:
                    kw[lst] = tuple(v for v, _ in r.text_list(f[lst][1], f"{what}: {lst}") or [])
            if "owners" in f:
                items = r.text_list(f["owners"][1], f"{what}: owners") or []
                kw["owners"] = tuple(v for v, _ in items)
                self.raw.owner_locs[name] = [r.loc(n) for _, n in items]
            for txt in ("host_key", "host_ca", "database", "credentials", "description"):
                if txt in f:
                    kw[txt] = r.text(f[txt][1], f"{what}: {txt}", allow_empty=(txt == "description"))
            creds = kw.get("credentials")
            if creds is not None and not creds.startswith(SECRET_PREFIXES):
                r.error(f["credentials"][1], "policy.secret",
                        f"{what}: credentials must be a reference (`env:NAME` or `file:PATH`), "
                        "never the secret itself")
            elif creds is not None and (problem := _credentials_problem(creds)):
                r.error(f["credentials"][1], "policy.credentials", f"{what}: credentials `{creds}` {problem}")
            if kind == "ssh" and "roles" in f:
                r.error(f["roles"][0], "policy.unknown_field", f"{what}: an ssh resource has `logins`, not `roles`")
            if kind == "postgres" and "logins" in f:
                r.error(f["logins"][0], "policy.unknown_field",
                        f"{what}: a postgres resource has `roles`, not `logins`")
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
        seen = {rule.name: rule.loc for rule in self.raw.rules}
        for name, item, f in self.r.named_items(node, "rule", RULE_FIELDS, ("name", "when"), seen):
            self.raw.rules.append(self._rule(name, item, f))

    def _rule(self, name: str, item: yaml.Node, f: dict[str, tuple[yaml.Node, yaml.Node]]) -> RawRule:
        """Every field of one rule as written; what they mean together is checked in checker.py."""
        r = self.r
        what = f"rule `{name}`"
        rule = RawRule(name=name, loc=r.loc(item), written={k: r.loc(kn) for k, (kn, _vn) in f.items()})
        if "when" in f:
            wnode = f["when"][1]
            if isinstance(wnode, yaml.ScalarNode) and wnode.tag.endswith(":bool"):
                rule.when = "true" if r.scalar(wnode) else "false"
            else:
                rule.when = r.text(wnode, f"{what}: when", allow_empty=False)
            rule.when_loc = _cel_origin(r, wnode)
        if "effect" in f:
            e = r.text(f["effect"][1], f"{what}: effect")
            if e is not None and e not in EFFECTS:
                r.error(f["effect"][1], "policy.type", f"{what}: unknown effect `{e}` (use allow, require or deny)")
            elif e is not None:
                rule.effect = e
        if "approval" in f:
            rule.approval = read_approval(r, f["approval"][1], what, lambda items: self._approvers(what, items))
        if "review" in f:
            items = r.text_list(f["review"][1], f"{what}: review") or []
            rule.review = tuple(v for v, _ in items)
            self._approvers(what, items)
        if "max_duration" in f:
            rule.max_duration = r.duration(f["max_duration"][1], f"{what}: max_duration")
        if "max_extensions" in f:
            rule.max_extensions = r.integer(f["max_extensions"][1], f"{what}: max_extensions")
        if "session" in f:
            rule.session = read_session(r, f["session"][1], f"{what}: session") or {}
        if "activate" in f:
            a = r.text(f["activate"][1], f"{what}: activate")
            if a is not None and a not in ACTIVATE_MODES:
                r.error(f["activate"][1], "policy.type",
                        f"{what}: unknown activate `{a}` (use on_approval or on_first_use)")
            elif a is not None:
                rule.activate = a
        if "claim_within" in f:
            rule.claim_within = r.duration(f["claim_within"][1], f"{what}: claim_within")
        if "max_sessions" in f:
            rule.max_sessions = r.integer(f["max_sessions"][1], f"{what}: max_sessions", minimum=1)
        if "message" in f:
            rule.message = r.text(f["message"][1], f"{what}: message") or ""
        if "description" in f:
            rule.description = r.text(f["description"][1], f"{what}: description") or ""
        if "step_up" in f:
            rule.step_up = read_step_up(r, f["step_up"][1], f"{what}: step_up")
        if "notify" in f:
            items = r.text_list(f["notify"][1], f"{what}: notify") or []
            if len(items) > MAX_NOTIFY_CHANNELS:
                r.error(f["notify"][1], "policy.limit",
                        f"{what}: notify names {len(items)} channels, at most {MAX_NOTIFY_CHANNELS}")
            for v, n in items:
                if not CHANNEL_NAME.fullmatch(v):
                    r.error(n, "policy.bad_text", f"{what}: notify channel `{v}` must be 1-64 of a-z, 0-9, `_`, `-`")
            rule.notify = tuple(dict.fromkeys(v for v, _ in items))
        return rule

    def _approvers(self, what: str, items: list[tuple[str, yaml.Node]]) -> None:
        self.raw.approver_refs.extend((v, self.r.loc(n), what) for v, n in items)

    # --- tests --------------------------------------------------------------
    def tests(self, node: yaml.Node) -> None:
        read_tests(self.r, node, self.raw.tests)


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
