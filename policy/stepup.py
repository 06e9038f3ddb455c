"""`step_up:` on a rule: a fresh sign-in to approve or to activate what the rule matches.

```yaml
  - name: prod-needs-manager-and-security
    step_up: {for: [approve, activate], max_age: 15m, mfa: true}
```

- `for`: `approve` (the approver of any level), `activate` (the requester, when asking);
  default both.
- `max_age`: the person's last sign-in at the identity provider (the ID token's
  `auth_time`) lies within this; `mfa: true`: that sign-in's `amr` holds `mfa`. At least one.
- Several matching rules: for each action the smallest `max_age`, `mfa` if any asks.
A person without a sign-in (an admin-issued bundle) never meets a step-up. The control
plane checks it (`controlplane/signin/stepup.py`); the policy only says what is needed.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import yaml

from policy.durations import format_duration

if TYPE_CHECKING:  # yamlnodes imports model, which imports this module
    from policy.yamlnodes import Reader

STEP_UP_FIELDS = ("for", "max_age", "mfa")
STEP_UP_ACTIONS = ("approve", "activate")


@dataclass(frozen=True)
class StepUp:
    actions: tuple[str, ...] = STEP_UP_ACTIONS
    max_age: timedelta | None = None
    mfa: bool = False

    def to_json(self) -> dict[str, object]:
        return {"for": list(self.actions), "max_age": None if self.max_age is None else format_duration(self.max_age),
                "mfa": self.mfa}


def read_step_up(reader: Reader, node: yaml.Node, what: str) -> StepUp | None:
    """`step_up:` of a rule; None when unreadable (the errors are reported with their place)."""
    f = reader.fields(node, what, STEP_UP_FIELDS)
    if f is None:
        return None
    actions: tuple[str, ...] = STEP_UP_ACTIONS
    if "for" in f:
        items = reader.text_list(f["for"][1], f"{what}.for") or []
        for value, item in items:
            if value not in STEP_UP_ACTIONS:
                reader.error(item, "policy.type",
                             f"{what}.for: unknown action `{value}` (use approve or activate)")
                return None
        actions = tuple(dict.fromkeys(v for v, _ in items))
        if not actions:
            reader.error(f["for"][1], "policy.type", f"{what}.for: name approve, activate or both")
            return None
    max_age = reader.duration(f["max_age"][1], f"{what}.max_age") if "max_age" in f else None
    mfa = bool(reader.boolean(f["mfa"][1], f"{what}.mfa")) if "mfa" in f else False
    if max_age is None and not mfa:
        reader.error(node, "policy.type", f"{what}: give `max_age`, `mfa: true` or both")
        return None
    return StepUp(actions, max_age, mfa)


@dataclass(frozen=True)
class Need:
    """What one action needs, combined over the rules that ask (and which rules)."""

    max_age: timedelta | None
    mfa: bool
    rules: tuple[str, ...]


def combine(rules: Iterable[tuple[str, StepUp | None]], action: str) -> Need | None:
    """The combined need of `action` over (rule name, step_up); None when no rule asks."""
    ages: list[timedelta] = []
    mfa = False
    names: list[str] = []
    for name, s in rules:
        if s is None or action not in s.actions:
            continue
        names.append(name)
        if s.max_age is not None:
            ages.append(s.max_age)
        mfa = mfa or s.mfa
    if not names:
        return None
    return Need(min(ages) if ages else None, mfa, tuple(names))


__all__ = ["STEP_UP_ACTIONS", "STEP_UP_FIELDS", "Need", "StepUp", "combine", "read_step_up"]
