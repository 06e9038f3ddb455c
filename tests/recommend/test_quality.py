"""The model must beat the per-resource median on data whose structure is known:
duration = task length x personal speed x environment x small noise."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from recommend.evaluate import baseline_predictions, score
from recommend.history import HistoryRow
from recommend.model import pinball_loss
from recommend.rounding import offer_minutes
from recommend.training import evaluate_history, fit, prepare
from tests.recommend.conftest import FAST

TASKS = {"monthly report": 15.0, "deploy release": 40.0, "run schema migration": 120.0}
ENV = {"prod": 0.8, "staging": 1.2}


def known_structure(count: int, seed: int = 3) -> list[HistoryRow]:
    rng = random.Random(seed)
    resources = [(f"db-{env}-{i}", env) for env in ENV for i in range(3)]
    people = {f"user{i}": (rng.choice([0.6, 1.0, 1.6]), rng.sample(resources, 2)) for i in range(30)}
    start = datetime(2026, 1, 5, tzinfo=UTC)
    rows = []
    for n in range(count):
        user = rng.choice(sorted(people))
        speed, homes = people[user]
        resource, env = rng.choice(homes)
        reason = rng.choice(sorted(TASKS))
        used = TASKS[reason] * speed * ENV[env] * rng.lognormvariate(0.0, 0.15)
        rows.append(HistoryRow(user=user, resource=resource, kind="postgres",
                               labels={"env": env, "sensitivity": "high"}, role="readwrite", reason=reason,
                               requested_at=start + timedelta(minutes=37 * n), asked_minutes=120,
                               used_minutes=round(used, 1)))
    return rows


def test_model_beats_per_resource_median_on_known_structure() -> None:
    prepared = prepare(known_structure(3000))
    _, predicted, _ = fit(prepared, FAST)
    used = prepared.used[prepared.cut:]
    median = baseline_predictions(prepared.rows, prepared.cut, 480)["resource_median"]
    model_loss, median_loss = pinball_loss(used, predicted, 0.8), pinball_loss(used, median, 0.8)
    assert model_loss < 0.5 * median_loss, (model_loss, median_loss)
    model, base = score(offer_minutes(predicted, 480, 15), used), score(offer_minutes(median, 480, 15), used)
    assert model.coverage >= 0.75 and model.coverage > base.coverage + 0.15
    assert model.extension_rate < base.extension_rate


def test_evaluation_table_and_model_beats_history_baselines() -> None:
    evaluation, _ = evaluate_history(known_structure(3000), FAST, max_minutes=480, step_minutes=15)
    shape = evaluation.to_json()
    assert set(shape) == {"model", "baselines", "rows_train", "rows_test", "target_coverage"}
    assert {"fixed_1h", "fixed_max", "resource_median", "user_resource_p80", "plain_lgbm"} <= set(shape["baselines"])
    assert shape["rows_train"] == 2400 and shape["rows_test"] == 600
    assert evaluation.baselines["fixed_max"].coverage == 1.0
    pair = evaluation.baselines["user_resource_p80"]
    # tasks of very different length share each person's resources: knowing the task must pay off
    assert evaluation.model.coverage >= 0.8
    assert evaluation.model.excess_minutes < 0.7 * pair.excess_minutes
    best = evaluation.best_baseline()
    assert best is not None and best[1].coverage >= evaluation.model.coverage
