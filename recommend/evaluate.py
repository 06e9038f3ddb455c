"""Measured quality: coverage, excess minutes and extensions of the model and of
the baselines, on the newest 20% of a history (time-based split).

* coverage: share of held-out grants whose used time fits the offered duration;
* excess_minutes: mean (offered - used) over the covered grants;
* extension_rate: mean number of extensions a grant would have needed, each
  extension adding the offered duration again (ceil(used / offered) - 1).

Baselines: a fixed default (1 h, the maximum), per resource (median, p80), per
task type of the keyword list (p80), per person and resource (p80), and a plain
LightGBM quantile model on the raw fields (recommend.plain). Those that learn
from the history are also shown calibrated to the target coverage on the same
recent window as the model (`name@target`), so that excess is compared at equal
coverage.

Every strategy is served the same way (rounded up to the step, clamped to the
maximum) and every history-based baseline sees the same past as the model: all
grants that had finished before each held-out request, training part included.
"""
from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from recommend.calibrate import Scale
from recommend.features import quantile, with_finished_past
from recommend.history import HistoryRow

TEST_SHARE = 0.2
BASELINES: tuple[str, ...] = ("fixed_1h", "fixed_max", "resource_median", "resource_p80", "task_p80",
                               "user_resource_p80")
# Baselines that learn from the history: the ones calibrated to the target coverage as the model is.
CALIBRATED_BASELINES: tuple[str, ...] = ("resource_p80", "task_p80", "user_resource_p80", "plain_lgbm")
CALIBRATED_SUFFIX = "@target"
MIN_PAIR_ROWS = 3  # fewer past grants of a person on a resource: user_resource_p80 uses the resource's p80
DEFAULT_MINUTES = 60.0


@dataclass(frozen=True)
class Metrics:
    """Quality of one strategy on held-out grants."""

    coverage: float
    excess_minutes: float
    extension_rate: float

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def split_index(count: int, test_share: float = TEST_SHARE) -> int:
    """Index of the first held-out row of `count` time-ordered rows (newest share held out)."""
    return count - math.ceil(count * test_share) if count else 0


def score(offered: np.ndarray, used: np.ndarray) -> Metrics:
    """Metrics of offered durations (minutes) against used minutes."""
    if len(used) == 0:
        return Metrics(math.nan, math.nan, math.nan)
    covered = used <= offered + 1e-9
    excess = float(np.mean((offered - used)[covered])) if covered.any() else math.nan
    extensions = np.maximum(0.0, np.ceil(used / np.maximum(offered, 1e-9) - 1e-9) - 1.0)
    return Metrics(float(np.mean(covered)), excess, float(np.mean(extensions)))


class _Sorted:
    """Values kept sorted for running medians and percentiles."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: float) -> None:
        bisect.insort(self.values, value)

    def quantile(self, q: float) -> float:
        return quantile(self.values, q) if self.values else math.nan


def baseline_predictions(rows: Sequence[HistoryRow], cut: int, max_minutes: float) -> dict[str, np.ndarray]:
    """Each baseline's length (minutes, before rounding) for rows[cut:], from each row's finished past."""
    by_resource: dict[str, _Sorted] = defaultdict(_Sorted)
    by_pair: dict[tuple[str, str], _Sorted] = defaultdict(_Sorted)
    by_task: dict[str, _Sorted] = defaultdict(_Sorted)  # task type from the keyword list
    everyone = _Sorted()
    out: dict[str, list[float]] = {name: [] for name in BASELINES}
    for index, (row, done) in enumerate(with_finished_past(rows)):
        for past in done:
            by_resource[past.resource].add(past.used_minutes)
            by_pair[(past.user, past.resource)].add(past.used_minutes)
            by_task[past.task].add(past.used_minutes)
            everyone.add(past.used_minutes)
        if index < cut:
            continue
        resource = by_resource.get(row.resource)
        pair = by_pair.get((row.user, row.resource))
        fallback_p50 = everyone.quantile(0.5) if everyone.values else DEFAULT_MINUTES
        fallback_p80 = everyone.quantile(0.8) if everyone.values else DEFAULT_MINUTES
        out["fixed_1h"].append(60.0)
        out["fixed_max"].append(max_minutes)
        out["resource_median"].append(resource.quantile(0.5) if resource else fallback_p50)
        out["resource_p80"].append(resource.quantile(0.8) if resource else fallback_p80)
        task = by_task.get(row.task)
        out["task_p80"].append(task.quantile(0.8) if task else fallback_p80)
        if pair and len(pair.values) >= MIN_PAIR_ROWS:
            out["user_resource_p80"].append(pair.quantile(0.8))
        else:
            out["user_resource_p80"].append(resource.quantile(0.8) if resource else fallback_p80)
    return {name: np.asarray(values, dtype=np.float64) for name, values in out.items()}


@dataclass
class Evaluation:
    """Model and baselines on one held-out set."""

    model: Metrics
    baselines: dict[str, Metrics]
    rows_train: int
    rows_test: int
    train_seconds: float = 0.0
    pinball: float = math.nan
    target: float = math.nan  # the coverage the model (and each `@target` baseline) was calibrated to
    alpha: float = math.nan  # the model's quantile level (chosen on the calibration window)
    scale: Scale = field(default_factory=Scale)  # the model's calibration (factor, exponent) at the evaluated step

    def to_json(self) -> dict[str, Any]:
        """The shape `jitgate recommend evaluate --output json` prints."""
        return {
            "model": self.model.to_json(),
            "baselines": {name: m.to_json() for name, m in self.baselines.items()},
            "rows_train": self.rows_train,
            "rows_test": self.rows_test,
            "target_coverage": self.target,
        }

    def best_baseline(self) -> tuple[str, Metrics] | None:
        """The baseline with the least excess among those covering at least as much as the model."""
        eligible = [(m.excess_minutes, n, m) for n, m in self.baselines.items()
                    if m.coverage >= self.model.coverage and not math.isnan(m.excess_minutes)]
        if not eligible:
            return None
        _, name, metrics = min(eligible)
        return name, metrics
