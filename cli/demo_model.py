"""A trained duration model for the demo from its first start, and training on a store.

`ensure_demo_model` does nothing when `<server data dir>/model` already holds a
model that loads. Otherwise it tells the synthetic story (recommend/demo.py)
about the policies' own resources and people, imports it into the data
directory's store (once: a store that already holds imported rows is left as it
is) and trains on the store, so the demo's first request already gets a
model's answer with a personal explanation ("your last 5 on orders-db used
35-50 min").
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controlplane.local_history import StoreHistory, count_imported, history_from_store, import_rows, model_dir_of
from recommend.demo import DEMO_ROWS, DEMO_SEED, demo_history, policy_set_of
from recommend.errors import ModelError
from recommend.model import TrainParams, load_model
from recommend.training import DEFAULT_MAX_MINUTES, DEFAULT_STEP_MINUTES, TrainOutcome, train_and_save

if TYPE_CHECKING:
    from policy import PolicySet

DEMO_PARAMS = TrainParams(num_rounds=150)  # a few seconds on 3000 rows; enough for a demo's answers
DEMO_SOURCE = "jitgate demo: synthetic history"


@dataclass(frozen=True)
class DemoModel:
    """What `ensure_demo_model` did."""

    trained: bool  # False: a usable model was already there
    model_dir: Path
    version: str | None
    imported_rows: int
    train_rows: int


def train_from_store(data_dir: str | os.PathLike[str], policies: PolicySet | None = None,
                     days: float | None = None, params: TrainParams | None = None, *, force: bool = False,
                     max_minutes: float | None = None, step_minutes: float | None = None
                     ) -> tuple[TrainOutcome, StoreHistory]:
    """Train on the store's history and save into `<data dir>/model` (if not worse than
    the saved model); a running server picks the new model up by itself.
    Returns (TrainOutcome, the history used)."""
    history = history_from_store(data_dir, policies, days)
    outcome = train_and_save(history.rows, model_dir_of(data_dir), params or TrainParams(), force=force,
                             max_minutes=DEFAULT_MAX_MINUTES if max_minutes is None else max_minutes,
                             step_minutes=DEFAULT_STEP_MINUTES if step_minutes is None else step_minutes,
                             peers_of=policies.peers_of if policies is not None else None)
    return outcome, history


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
    ps = policy_set_of(policies)
    imported = 0
    if count_imported(server_data_dir) == 0:
        history = demo_history(ps, rows, seed, now)
        text = "\n".join(json.dumps(r.to_json(), sort_keys=True) for r in history)
        digest = hashlib.sha256(text.encode()).hexdigest()
        imported = import_rows(server_data_dir, history, DEMO_SOURCE, digest).rows
    outcome, used = train_from_store(server_data_dir, ps, params=DEMO_PARAMS, force=True)
    return DemoModel(True, model_dir, outcome.version, imported, len(used.rows))


__all__ = ["DemoModel", "ensure_demo_model", "train_from_store"]
