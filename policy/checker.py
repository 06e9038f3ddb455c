"""Stages 2-3: what a Raw model means: each rule's fields together, cross-references
(names, approvers, tests), CEL compiled once, and the policy_version."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from policy import cel
from policy.approvers import split_owner, split_word
from policy.durations import format_duration
from policy.engine import activation, resource_value, user_value
from policy.loader import Raw, RawRule
from policy.model import ApprovalSpec, Loc, PolicyTest, Resource, Rule, Settings, User
from policy.request import PolicyRequest
from policy.yamlnodes import Sink


@dataclass
class Checked:
    """A cross-checked, compiled policy set (the parts PolicySet is made of)."""

    settings: Settings
    users: dict[str, User]
    groups: dict[str, frozenset[str]]
    resources: dict[str, Resource]
    rules: tuple[Rule, ...]
    tests: tuple[PolicyTest, ...]
    programs: dict[str, cel.Compiled]
    version: str


def check(raw: Raw, sink: Sink) -> Checked:
    """Report every rule, cross-reference and CEL problem to `sink`; return what could be built."""
    rules = build_rules(raw.rules, sink)
    members: dict[str, set[str]] = {}
    for u in raw.users.values():
        for g in u.groups:
            members.setdefault(g, set()).add(u.name)
    for g, lst in raw.groups.items():
        members.setdefault(g, set())
        for m, loc in lst:
            if m not in raw.users:
                _err(sink, loc, "policy.unknown_user", f"group `{g}`: unknown user `{m}`")
            else:
                members[g].add(m)
    users: dict[str, User] = {}
    for u in raw.users.values():
        if u.manager is not None and u.manager not in raw.users:
            _err(sink, u.manager_loc, "policy.unknown_user", f"user `{u.name}`: unknown manager `{u.manager}`")
        elif u.manager == u.name:
            _err(sink, u.manager_loc, "policy.type", f"user `{u.name}` cannot be their own manager")
        own_groups = tuple(sorted(g for g, ms in members.items() if u.name in ms))
        users[u.name] = User(u.name, own_groups, u.manager, u.attributes, loc=u.loc)
    groups = {g: frozenset(ms) for g, ms in members.items()}

    for res in raw.resources.values():
        for entry, loc in zip(res.owners, raw.owner_locs.get(res.name, []), strict=False):
            _check_approver(sink, loc, f"resource `{res.name}`", "owner", split_owner, entry, users, groups)
    for word, loc, what in raw.approver_refs:
        _check_approver(sink, loc, what, "approver", split_word, word, users, groups)

    for rule in rules:
        if rule.approval is None or rule.approval.mode != "levels":
            continue
        for i, lv in enumerate(rule.approval.levels, 1):
            reach = _reach(lv.approvers, groups)
            if reach is not None and len(reach) < lv.min:
                _err(sink, rule.approval.loc, "policy.unmeetable_level",
                     f"rule `{rule.name}`: level {i} needs {lv.min} approvers but only "
                     f"{len(reach)} can approve ({', '.join(sorted(reach)) or 'nobody'})")

    rule_names = {r.name for r in rules}
    for t in raw.tests:
        if t.request.user not in users:
            _err(sink, t.loc, "policy.unknown_user", f"test `{t.name}`: unknown user `{t.request.user}`")
        if t.request.resource not in raw.resources:
            _err(sink, t.loc, "policy.unknown_resource",
                 f"test `{t.name}`: unknown resource `{t.request.resource}`")
        for name in t.expect.get("rules") or []:
            if name not in rule_names:
                _err(sink, t.expect_loc, "policy.unknown_rule",
                     f"test `{t.name}`: expects unknown rule `{name}`")

    settings = raw.settings or Settings()
    programs = _compile(rules, sink, users, raw.resources)
    content = canonical(settings, users, raw.resources, rules)
    version = "sha256:" + hashlib.sha256(content.encode()).hexdigest()
    return Checked(settings, users, groups, dict(raw.resources), tuple(rules), tuple(raw.tests),
                   programs, version)


# Fields a deny rule refuses: it grants nothing, so it has nothing to approve or limit.
DENY_TAKES_NO = ("approval", "review", "max_duration", "max_extensions", "session", "notify", "activate",
                 "claim_within", "max_sessions")


def build_rules(written: list[RawRule], sink: Sink) -> list[Rule]:
    """Check what each rule's fields mean together; the rules with a `when` become Rules,
    numbered in file order across the set (a rule without one is still checked)."""
    rules: list[Rule] = []
    for w in written:
        approval, review = _rule_semantics(w, sink)
        if w.when is None:
            continue
        rules.append(Rule(name=w.name, when=w.when, position=len(rules), effect=w.effect, approval=approval,
                          review=review, max_duration=w.max_duration, max_extensions=w.max_extensions,
                          session=w.session, message=w.message, description=w.description,
                          notify=w.notify, activate=w.activate or "on_approval", claim_within=w.claim_within,
                          max_sessions=w.max_sessions, loc=w.loc, when_loc=w.when_loc, step_up=w.step_up))
    return rules


def _lifecycle_fields(r: Rule) -> dict[str, Any]:
    """The Additions' rule fields in the hashed content, only when written: a set that does not
    use them keeps the policy_version it had before they existed."""
    out: dict[str, Any] = {}
    if r.activate != "on_approval":
        out["activate"] = r.activate
    if r.claim_within is not None:
        out["claim_within"] = format_duration(r.claim_within)
    if r.max_sessions is not None:
        out["max_sessions"] = r.max_sessions
    return out


def _rule_semantics(w: RawRule, sink: Sink) -> tuple[ApprovalSpec | None, tuple[str, ...]]:
    """POLICY.md rule 1 and policy/README.md for one rule: a deny rule takes no approval or
    limits, only deny rules carry a `message`, an allow rule states its approval, break_glass
    and `review` go together. Returns the rule's approval and reviewers."""
    what = f"rule `{w.name}`"
    if w.effect == "deny":
        for k in DENY_TAKES_NO:
            if k in w.written:
                _err(sink, w.written[k], "policy.unknown_field", f"{what}: a deny rule takes no `{k}`")
    else:
        if "message" in w.written:
            _err(sink, w.written["message"], "policy.unknown_field",
                 f"{what}: `message` is for deny rules (an {w.effect} rule shows none)")
        if w.effect == "allow" and "approval" not in w.written:
            _err(sink, w.loc, "policy.missing_field",
                 f"{what}: an allow rule needs `approval` (auto, break_glass or levels)")
    written = w.approval
    if written is not None and written.review is not None and w.review is not None:
        _err(sink, w.written["review"], "policy.duplicate", f"{what}: `review` given twice")
    review = w.review if w.review is not None else (written.review if written is not None else None) or ()
    approval = None if written is None else ApprovalSpec(written.mode or "levels", written.levels or (), written.loc)
    if approval is not None and approval.mode == "break_glass" and not review:
        _err(sink, approval.loc, "policy.missing_field",
             f"{what}: break_glass needs `review` (who reviews the access afterwards)")
    if review and (approval is None or approval.mode != "break_glass"):
        _err(sink, w.written.get("review", w.loc), "policy.unknown_field",
             f"{what}: `review` is only for break_glass approval")
    # On first use, an approved grant nobody uses must still lapse: the claim window is required,
    # and it means nothing without on_first_use.
    if w.activate == "on_first_use" and w.claim_within is None and "claim_within" not in w.written:
        _err(sink, w.written["activate"], "policy.missing_field",
             f"{what}: `activate: on_first_use` needs `claim_within` (how long the grant waits for its first use)")
    if "claim_within" in w.written and w.activate != "on_first_use":
        _err(sink, w.written["claim_within"], "policy.unknown_field",
             f"{what}: `claim_within` is only for `activate: on_first_use`")
    return approval, review


def _err(sink: Sink, loc: Loc, code: str, message: str) -> None:
    sink.add(loc, code, message)


def _check_approver(sink: Sink, loc: Loc, what: str, role: str, split: Callable[[str], tuple[str, str]],
                    word: str, users: dict[str, User], groups: dict[str, frozenset[str]]) -> None:
    """An approver word or owner entry (read by `split`) is well formed and names a known user or group."""
    try:
        kind, name = split(word)
    except ValueError as e:
        _err(sink, loc, "policy.unknown_approver", f"{what}: {e}")
        return
    if kind == "user" and name not in users:
        _err(sink, loc, "policy.unknown_user", f"{what} {role}: unknown user `{name}`")
    elif kind == "group" and name not in groups:
        _err(sink, loc, "policy.unknown_group", f"{what} {role}: unknown group `{name}`")


def _reach(words: list[str], groups: dict[str, frozenset[str]]) -> set[str] | None:
    """Everyone a level can reach, or None when it depends on the request (manager/owner)."""
    out: set[str] = set()
    for w in words:
        try:
            kind, name = split_word(w)
        except ValueError:
            return None
        if kind == "user":
            out.add(name)
        elif kind == "group":
            out |= groups.get(name, frozenset())
        else:
            return None
    return out


def _compile(rules: list[Rule], sink: Sink, users: dict[str, User],
             resources: dict[str, Resource]) -> dict[str, cel.Compiled]:
    env = cel.Cel()
    programs: dict[str, cel.Compiled] = {}
    probe = _probe_activation(users, resources)
    largest = largest_collection(users, resources)
    for rule in rules:
        try:
            compiled = env.compile(rule.when, largest)
        except cel.CelCompileError as e:
            base = rule.when_loc
            loc = Loc(base.file, base.line, base.col + e.col - 1) if e.line == 1 else \
                Loc(base.file, base.line + e.line - 1, e.col)
            _err(sink, loc, e.code, f"rule `{rule.name}`: {e}")
            continue
        # A value that is clearly not a bool on sample data is a type error; an
        # evaluation error on sample data is not (it may be a label the sample lacks).
        try:
            value = cel.evaluate(compiled, probe)
        except Exception:
            value = None
        if value is not None and not cel.is_bool(value):
            _err(sink, rule.when_loc, "policy.cel_not_bool",
                 f"rule `{rule.name}`: `when` must be a bool, got {_cel_kind(value)}")
            continue
        programs[rule.name] = compiled
    return programs


def largest_collection(users: dict[str, User], resources: dict[str, Resource]) -> int:
    """The most entries any list or map in the CEL context can hold (the cost estimate's
    size for a range that is not a literal): groups, attributes at any depth, labels,
    owners, logins and roles. Requests hold no collections."""
    largest = 1
    stack: list[Any] = []
    for u in users.values():
        stack.append(list(u.groups))
        stack.append(u.attributes)
    for r in resources.values():
        stack.extend([r.labels, list(r.owners), list(r.logins), list(r.roles)])
    while stack:
        v = stack.pop()
        if isinstance(v, (list, dict)):
            largest = max(largest, len(v))
            stack.extend(v.values() if isinstance(v, dict) else v)
    return largest


def _cel_kind(value: Any) -> str:
    name = type(value).__name__.replace("Type", "").lower()
    return {"string": "a string", "int": "a number", "uint": "a number", "double": "a number",
            "list": "a list", "map": "a map", "duration": "a duration",
            "timestamp": "a timestamp"}.get(name, name)


def _probe_activation(users: dict[str, User], resources: dict[str, Resource]) -> dict[str, Any]:
    user = next(iter(users.values()), User("someone"))
    res = next(iter(resources.values()), Resource("something", "ssh", "host:22", logins=("root",)))
    req = PolicyRequest(user=user.name, resource=res.name, duration=timedelta(hours=1),
                        time=datetime(2026, 1, 1, 12, tzinfo=UTC),
                        login=res.logins[0] if res.logins else "", role=res.roles[0] if res.roles else "")
    return activation(req, user_value(user), resource_value(res))


def canonical(settings: Settings, users: dict[str, User], resources: dict[str, Resource],
              rules: list[Rule]) -> str:
    """The content that decides, as canonical JSON (descriptions and tests left out)."""
    def dur(td: timedelta | None) -> str | None:
        return None if td is None else format_duration(td)
    doc = {
        "version": 1,
        "settings": {"grace_period": dur(settings.grace_period),
                     "pending_timeout": dur(settings.pending_timeout),
                     "default_max_extensions": settings.default_max_extensions,
                     "duration_step": dur(settings.duration_step),
                     # only when changed: a set that does not use it keeps its policy_version
                     **({"max_schedule_ahead": dur(settings.max_schedule_ahead)}
                        if settings.max_schedule_ahead != Settings().max_schedule_ahead else {})},
        "users": {u.name: {"groups": list(u.groups), "manager": u.manager, "attributes": u.attributes}
                  for u in users.values()},
        "resources": {r.name: {"kind": r.kind, "address": r.address, "labels": r.labels,
                               "logins": list(r.logins), "roles": list(r.roles), "owners": list(r.owners),
                               "host_key": r.host_key, "host_ca": r.host_ca, "database": r.database,
                               "credentials": r.credentials} for r in resources.values()},
        "rules": [{"name": r.name, "when": r.when, "effect": r.effect,
                   "approval": None if r.approval is None else {
                       "mode": r.approval.mode,
                       "levels": [lv.to_json() for lv in r.approval.levels]},
                   "review": list(r.review), "max_duration": dur(r.max_duration),
                   "max_extensions": r.max_extensions, "session": r.session, "message": r.message,
                   # only when set: versions of sets without them stay what they were
                   **({"step_up": r.step_up.to_json()} if r.step_up is not None else {}),
                   **({"notify": list(r.notify)} if r.notify else {}),
                   **_lifecycle_fields(r)}
                  for r in rules],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
