"""A trained duration model for the demo from its first start.

`ensure_demo_model` does nothing when `<server data dir>/model` already holds a
model that loads. Otherwise it tells the synthetic story (recommend/synth.py)
about the policies' own resources and people, over the last few months, imports
it into the data directory's store (once: a store that already holds imported
rows is left as it is) and trains on the store, so the demo's first request
already gets a model's answer with a personal explanation ("your last 5 on
orders-db used 35-50 min").
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recommend.errors import ModelError
from recommend.history import HistoryRow
from recommend.model import TrainParams, load_model
from recommend.store import count_imported, import_rows, model_dir_of, train_from_store
from recommend.synth import PersonSpec, ResourceSpec, generate

DEMO_ROWS = 3000
DEMO_SEED = 7
DEMO_SPAN_DAYS = 180
DEMO_PARAMS = TrainParams(num_rounds=150)
DEMO_SOURCE = "jitgate demo: synthetic history"
# Policy groups that say which habits a person has (recommend.synth archetypes).
_GROUP_ARCHETYPE = {"sre": "sre", "oncall": "sre", "dba": "dba", "developers": "developer",
                    "developer": "developer", "analysts": "analyst", "analyst": "analyst", "support": "support",
                    "managers": "analyst", "security": "support", "contractor": "developer",
                    "admins": "sre"}
_PROBE_TIME = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)  # a Wednesday, office hours


@dataclass(frozen=True)
class DemoModel:
    """What `ensure_demo_model` did."""

    trained: bool  # False: a usable model was already there
    model_dir: Path
    version: str | None
    imported_rows: int
    train_rows: int


def _policy_set(policies: Any) -> Any:
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
    ps = _policy_set(policies)
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


def ensure_demo_model(server_data_dir: Path, policies: Any, *, rows: int = DEMO_ROWS, seed: int = DEMO_SEED,
                      now: datetime | None = None) -> DemoModel:
    """Make sure `<server_data_dir>/model` holds a model; if not, import a synthetic history
    matching `policies` (a policy file/folder path or a loaded policy.PolicySet) into the
    store of `server_data_dir` (created if new, 0700) and train on the store.

    A few seconds for the default 3000 rows. Raises RecommendError (a plain message)
    when the store cannot be used or training fails.
    """
    model_dir = model_dir_of(server_data_dir)
    try:
        bundle = load_model(model_dir)
        return DemoModel(False, model_dir, bundle.metadata.version, 0, bundle.metadata.rows)
    except ModelError:
        pass
    ps = _policy_set(policies)
    imported = 0
    if count_imported(server_data_dir) == 0:
        history = demo_history(ps, rows, seed, now)
        text = "\n".join(json.dumps(r.to_json(), sort_keys=True) for r in history)
        digest = hashlib.sha256(text.encode()).hexdigest()
        imported = import_rows(server_data_dir, history, DEMO_SOURCE, digest).rows
    outcome, used = train_from_store(server_data_dir, ps, params=DEMO_PARAMS, force=True)
    return DemoModel(True, model_dir, outcome.version, imported, len(used.rows))
