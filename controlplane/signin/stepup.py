"""The control plane's step-up check: a rule's `step_up:` (policy/stepup.py) against the
person's last sign-in (the `people` table: the ID token's `auth_time` and `amr`).

What a request needs is read from the rules its decision matched (`decision.rules`), by
name, in the policy set in force: a rule's step-up added or tightened later applies to
requests already waiting; a rule removed no longer asks. Each refusal is audited as
`signin.step_up_refused` by the caller of the check (after its transaction rolled back).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from controlplane.errors import JitError
from controlplane.store import people as people_store
from policy.durations import format_duration
from policy.stepup import Need, combine

_SECOND = timedelta(seconds=1)


class StepUpRequired(JitError):
    def __init__(self, message: str) -> None:
        super().__init__("signin.step_up", message)


def need_of(policy_set: Any, rule_names: Iterable[str], action: str) -> Need | None:
    """The combined step-up of `action` over the named rules in force (None: none asks)."""
    by_name = {r.name: r for r in policy_set.rules if r.step_up is not None}
    if not by_name:
        return None  # the fast path: no rule in force asks for a step-up
    return combine(((n, by_name[n].step_up) for n in rule_names if n in by_name), action)


def check(store: Any, need: Need | None, actor: str, action: str, now: datetime) -> None:
    """Raise StepUpRequired unless `actor`'s last sign-in meets `need`."""
    if need is None:
        return
    with store.read() as tx:
        person = people_store.get_person(tx.conn, actor)
    rules = ", ".join(f"`{n}`" for n in need.rules)
    verb = "approve" if action == "approve" else "ask for this access"
    if person is None:
        raise StepUpRequired(f"rule {rules} requires a sign-in through the identity provider to {verb}: "
                             "run `jitgate login`")
    if need.max_age is not None:
        if person.auth_time is None:
            raise StepUpRequired(f"rule {rules} requires a recent sign-in to {verb}, and the provider did not say "
                                 "when you signed in: run `jitgate login`")
        age = now - person.auth_time
        if age > need.max_age:
            raise StepUpRequired(f"rule {rules} requires a sign-in within {format_duration(need.max_age)} to {verb}; "
                                 f"yours was {format_duration(age - age % _SECOND)} ago: run `jitgate login`")
    if need.mfa and "mfa" not in person.amr:
        raise StepUpRequired(f"rule {rules} requires a sign-in with multi-factor authentication to {verb}: "
                             "run `jitgate login` and use your second factor")


def enforce(ledger: Any, rule_names: Iterable[str], action: str, actor: str, subject: str, now: datetime) -> None:
    """`check` for the policy set in force; a refusal is audited (its own transaction) and raised."""
    need = need_of(ledger.policy.current, rule_names, action)
    if need is None:
        return
    try:
        check(ledger.store, need, actor, action, now)
    except StepUpRequired as e:
        audit(ledger, e, actor, subject, action, now)
        raise


def audit(ledger: Any, e: JitError, actor: str, subject: str, action: str, now: datetime) -> None:
    ledger.record("signin.step_up_refused", actor, subject, {"action": action, "code": e.code, "message": e.message})

__all__ = ["StepUpRequired", "audit", "check", "enforce", "need_of"]
