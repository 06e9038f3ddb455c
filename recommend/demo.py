"""The demo's synthetic history: the synthetic story (recommend/synth.py) told about
the policies' own resources and people, over the last few months.

Storing it and training on it is the CLI's (cli/demo_model.py): this package is
a library and never opens the control plane's store.
"""
from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recommend.history import HistoryRow
from recommend.synth import PersonSpec, ResourceSpec, generate

DEMO_ROWS = 3000
DEMO_SEED = 7
DEMO_SPAN_DAYS = 180
# Policy groups that say which habits a person has (recommend.synth archetypes).
_GROUP_ARCHETYPE = {"sre": "sre", "oncall": "sre", "dba": "dba", "developers": "developer",
                    "developer": "developer", "analysts": "analyst", "analyst": "analyst", "support": "support",
                    "managers": "analyst", "security": "support", "contractor": "developer",
                    "admins": "sre"}
_PROBE_TIME = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)  # a Wednesday, office hours


def policy_set_of(policies: Any) -> Any:
    """A loaded PolicySet, or the one at a policy file/folder path."""
    if isinstance(policies, (str, os.PathLike)):
        from policy import load_policy_set

        return load_policy_set(policies if isinstance(policies, str) else Path(policies), run_tests=False)
    return policies


def _may_use(ps: Any, user: str, resource: Any) -> bool:
    """Whether the policies would consider `user` on `resource` at all (not a deny)."""
    from policy import PolicyRequest

    login = next((name for name in resource.logins if name != "root"), resource.logins[0] if resource.logins else "")
    role = resource.roles[0] if resource.roles and not login else ""
    try:
        decision = ps.decide(PolicyRequest(user=user, resource=resource.name, duration=timedelta(minutes=30),
                                           time=_PROBE_TIME, login=login, role=role,
                                           reason="routine work", ticket="OPS-1"))
    except Exception:  # a policy that cannot decide this probe: leave the pair out
        return False
    return bool(decision.allowed)


def demo_specs(policies: Any) -> tuple[list[ResourceSpec], list[PersonSpec]]:
    """The policies' SSH and PostgreSQL resources, and their users with what each may use."""
    ps = policy_set_of(policies)
    resources = [r for r in ps.resources.values() if r.kind in ("ssh", "postgres")]
    specs = [ResourceSpec(r.name, r.kind, dict(r.labels), tuple(r.logins), tuple(r.roles)) for r in resources]
    people = []
    for name, user in sorted(ps.users.items()):
        archetype = next((_GROUP_ARCHETYPE[g] for g in user.groups if g in _GROUP_ARCHETYPE), None)
        allowed = tuple(r.name for r in resources if _may_use(ps, name, r))
        if allowed:
            people.append(PersonSpec(name, archetype, allowed))
    return specs, people


def demo_history(policies: Any, rows: int = DEMO_ROWS, seed: int = DEMO_SEED,
                 now: datetime | None = None) -> list[HistoryRow]:
    """A synthetic history about the policies' resources and users, ending about `now`."""
    resources, people = demo_specs(policies)
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = (end - timedelta(days=DEMO_SPAN_DAYS + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return generate(rows, seed, start, resources=resources, people=people, span_days=DEMO_SPAN_DAYS)
