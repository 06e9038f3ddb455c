"""Stage 4: a request -> a Decision, exactly by POLICY.md's semantics.

`evaluate_naive` runs every rule's CEL in file order (the reference);
`evaluate_indexed` runs only the index's candidates. Both feed `combine`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import celpy.celtypes as ct

from policy import cel
from policy.decision import NO_SESSION, SESSION_OPTIONS, Approval, ApprovalLevel, Decision, SessionOptions
from policy.durations import format_duration
from policy.index import Candidate, request_passes
from policy.limits import MAX_DURATION
from policy.model import Resource, Rule, Settings, User
from policy.request import HISTORY_COUNTERS, PolicyRequest, format_time

_S = ct.StringType


@dataclass
class Outcome:
    """Which rules matched (file order) and which failed to evaluate."""

    matched: list[Rule]
    errors: list[tuple[Rule, str]]


def user_value(user: User) -> ct.MapType:
    """The CEL `user` object (built once per user at load)."""
    return cel.cel_map({
        "name": _S(user.name),
        "groups": ct.ListType([_S(g) for g in user.groups]),
        "manager": _S(user.manager or ""),
        "attributes": cel.to_cel(user.attributes),
    })


def resource_value(res: Resource) -> ct.MapType:
    """The CEL `resource` object (built once per resource at load)."""
    return cel.cel_map({
        "name": _S(res.name),
        "kind": _S(res.kind),
        "labels": cel.cel_map({k: _S(v) for k, v in res.labels.items()}),
        "owners": ct.ListType([_S(o) for o in res.owners]),
        "address": _S(res.address),
        "logins": ct.ListType([_S(x) for x in res.logins]),
        "roles": ct.ListType([_S(x) for x in res.roles]),
    })


def activation(req: PolicyRequest, user: ct.MapType, resource: ct.MapType) -> dict[str, Any]:
    """The CEL context of POLICY.md for one request."""
    request = cel.cel_map({
        "user": _S(req.user),
        "resource": _S(req.resource),
        "login": _S(req.login),
        "role": _S(req.role),
        "duration": cel.duration(req.duration),
        "reason": _S(req.reason),
        "ticket": _S(req.ticket),
        "emergency": ct.BoolType(req.emergency),
        "extension": ct.IntType(req.extension),
        "start": cel.timestamp(req.window_start),
    })
    history: dict[str, ct.IntType | ct.DoubleType] = {
        name: ct.IntType(req.history_value(name)) for name in HISTORY_COUNTERS}
    history["median_minutes"] = ct.DoubleType(req.history_value("median_minutes"))
    risk = req.risk
    return {"request": request, "user": user, "resource": resource,
            "history": cel.cel_map(history), "now": cel.timestamp(req.window_start),
            "risk": cel.cel_map({"known": ct.BoolType(risk is not None and risk.known),
                                 "score": ct.DoubleType(risk.score if risk is not None and risk.known else 0.0),
                                 "reasons": ct.ListType([_S(r) for r in (risk.reasons if risk else ())])})}


def _error_text(e: BaseException) -> str:
    """The innermost readable message of a cel-python error."""
    parts: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            parts.append(x)
        elif isinstance(x, (tuple, list)):
            for y in x:
                walk(y)
        elif isinstance(x, BaseException):
            walk(x.args)
    walk(e.args)
    useful = [p for p in parts if p not in ("evaluation error",)]
    return useful[0] if useful else type(e).__name__


def run_rule(rule: Rule, compiled: cel.Compiled, act: Mapping[str, Any],
             budget: cel.Budget) -> tuple[bool, str | None]:
    """(matched, error) of one rule, charging the decision's `budget`; never raises.

    A rule that runs over the budget is an error like any other: the decision is a deny.
    """
    try:
        value = cel.evaluate(compiled, dict(act), budget)
    except cel.CelBudgetExceeded as e:
        return False, f"rule `{rule.name}`: evaluation error: {e}"
    except RecursionError:
        return False, f"rule `{rule.name}`: evaluation error: expression nested too deeply"
    except Exception as e:  # cel-python raises CELEvalError and, for odd inputs, plain Python errors
        return False, f"rule `{rule.name}`: evaluation error: {_error_text(e)}"
    if not cel.is_bool(value):
        return False, f"rule `{rule.name}`: `when` returned {type(value).__name__}, not a bool"
    return bool(value), None


def considered(rule: Rule, req: PolicyRequest) -> bool:
    """A break_glass rule applies only to emergency requests (POLICY.md rule 4)."""
    return req.emergency or not rule.break_glass


def evaluate_naive(rules: Iterable[Rule], programs: Mapping[str, cel.Compiled],
                   req: PolicyRequest, act: Mapping[str, Any]) -> Outcome:
    """Every rule's CEL, in file order: the reference evaluator."""
    out = Outcome([], [])
    budget = cel.Budget()
    for rule in rules:
        if not considered(rule, req):
            continue
        ok, err = run_rule(rule, programs[rule.name], act, budget)
        if err:
            out.errors.append((rule, err))
        elif ok:
            out.matched.append(rule)
    return out


def evaluate_indexed(candidates: Iterable[Candidate], programs: Mapping[str, cel.Compiled],
                     req: PolicyRequest, act: Mapping[str, Any], groups: frozenset[str]) -> Outcome:
    """Only the candidates of the request's resource; static matches skip CEL."""
    out = Outcome([], [])
    budget = cel.Budget()
    for c in candidates:
        if not considered(c.rule, req):
            continue
        if not request_passes(c.request_preds, req, groups):
            continue
        if not c.needs_cel:
            out.matched.append(c.rule)
            continue
        ok, err = run_rule(c.rule, programs[c.rule.name], act, budget)
        if err:
            out.errors.append((c.rule, err))
        elif ok:
            out.matched.append(c.rule)
    return out


def deny(version: str, message: str, rules: list[str] | None = None,
         errors: list[str] | None = None, max_duration: timedelta | None = None) -> Decision:
    """A refusal: nothing to approve, no session options."""
    return Decision(effect="deny", approval=None, max_duration=max_duration, max_extensions=0,
                    session=NO_SESSION, rules=list(rules or []), message=message,
                    policy_version=version, errors=list(errors or []))


def precheck(req: PolicyRequest, users: Mapping[str, User], resources: Mapping[str, Resource],
             version: str) -> Decision | None:
    """Refusals that need no rule: unknown user or resource, a login/role not offered,
    a duration past the bound every policy shares (CEL durations overflow far above it)."""
    if req.duration > MAX_DURATION or req.duration <= timedelta(0):
        return deny(version, f"requested duration must be between 1s and {format_duration(MAX_DURATION)}")
    if req.user not in users:
        return deny(version, f"unknown user `{req.user}`")
    res = resources.get(req.resource)
    if res is None:
        return deny(version, f"unknown resource `{req.resource}`")
    # An ssh host is asked for a login, a database for a role; never the other.
    if res.kind == "ssh":
        kind, word, asked, offered, other, other_asked = "an ssh host", "login", req.login, res.logins, "role", req.role
    else:
        kind, word, asked, offered, other, other_asked = "a database", "role", req.role, res.roles, "login", req.login
    if other_asked:
        return deny(version, f"`{res.name}` is {kind}: ask for a {word}, not a {other}")
    if asked not in offered:
        if not asked:
            return deny(version, f"`{res.name}` needs a {word} (one of {', '.join(offered)})")
        return deny(version, f"{word} `{asked}` is not offered on `{res.name}` (one of {', '.join(offered)})")
    return None


def combine(outcome: Outcome, req: PolicyRequest, settings: Settings, version: str) -> Decision:
    """POLICY.md rules 1-4 and 7 over the matched rules."""
    if outcome.errors:
        errs = [e for _r, e in sorted(outcome.errors, key=lambda x: x[0].position)]
        names = [r.name for r, _e in sorted(outcome.errors, key=lambda x: x[0].position)]
        return deny(version, f"refused because a rule could not be evaluated: {errs[0]}", names, errs)
    matched = sorted(outcome.matched, key=lambda r: r.position)
    denies = [r for r in matched if r.effect == "deny"]
    if denies:
        msgs = [r.message or f"denied by rule `{r.name}`" for r in denies]
        return deny(version, "; ".join(dict.fromkeys(msgs)), [r.name for r in denies])
    if not any(r.effect == "allow" for r in matched):
        return deny(version, f"no rule allows `{req.user}` access to `{req.resource}`")
    contributing = [r for r in matched if r.effect in ("allow", "require")]
    approval = _approval(contributing, req)
    max_duration: timedelta | None = None
    max_extensions = settings.default_max_extensions
    explicit_ext: list[int] = []
    for r in contributing:
        if r.max_duration is not None:
            max_duration = r.max_duration if max_duration is None else min(max_duration, r.max_duration)
        if r.max_extensions is not None:
            explicit_ext.append(r.max_extensions)
    if explicit_ext:
        max_extensions = min(explicit_ext)
    # POLICY.md Additions: on first use if any rule says so, the smallest claim window and session count.
    first_use = any(r.activate == "on_first_use" for r in contributing)
    claims = [r.claim_within for r in contributing if r.claim_within is not None]
    counts = [r.max_sessions for r in contributing if r.max_sessions is not None]
    session = SessionOptions(**{opt: all(r.session.get(opt, True) for r in contributing)
                                for opt in SESSION_OPTIONS})
    names = [r.name for r in contributing]
    if max_duration is not None and req.duration > max_duration:
        return deny(version, f"requested {format_duration(req.duration)} is above the maximum of "
                             f"{format_duration(max_duration)} for `{req.resource}`; ask for "
                             f"{format_duration(max_duration)} or less", names, max_duration=max_duration)
    if req.start is not None and req.start < req.time:
        return deny(version, f"the window's start {format_time(req.start)} is in the past", names,
                    max_duration=max_duration)
    if req.start is not None and req.start - req.time > settings.max_schedule_ahead:
        return deny(version, f"the window starts more than {format_duration(settings.max_schedule_ahead)} ahead "
                             f"(settings.max_schedule_ahead); ask again closer to it", names,
                    max_duration=max_duration)
    if req.extension > max_extensions:
        return deny(version, f"extension {req.extension} is above the maximum of {max_extensions} "
                             f"extension(s) for `{req.resource}`", names, max_duration=max_duration)
    return Decision(effect="allow", approval=approval, max_duration=max_duration,
                    max_extensions=max_extensions, session=session, rules=names, message="",
                    policy_version=version, activate="on_first_use" if first_use else "on_approval",
                    claim_within=min(claims) if first_use and claims else None,
                    max_sessions=min(counts) if counts else None)


def _approval(rules: list[Rule], req: PolicyRequest) -> Approval:
    glass = [r for r in rules if r.break_glass and req.emergency]
    if glass:
        review: list[str] = []
        for r in glass:
            review.extend(w for w in r.review if w not in review)
        return Approval(mode="break_glass", levels=[], review=review)
    levels: list[ApprovalLevel] = []
    seen: set[tuple[tuple[str, ...], int]] = set()
    for r in rules:
        if r.approval is None or r.approval.mode != "levels":
            continue
        for lv in r.approval.levels:
            key = (tuple(lv.approvers), lv.min)
            if key not in seen:
                seen.add(key)
                levels.append(ApprovalLevel(list(lv.approvers), lv.min))
    return Approval(mode="levels", levels=levels) if levels else Approval(mode="auto")
