"""The plain baseline: a LightGBM quantile model on a history's raw fields only
(user, resource, kind, labels, login/role, hour, weekday): no words, no personal
history statistics. What anyone would try first; the model must never do worse.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

from recommend.history import HistoryRow
from recommend.model import TrainParams

PLAIN_CATEGORICAL = ("user", "resource", "kind", "labels", "access")
PLAIN_FEATURES = (*PLAIN_CATEGORICAL, "hour", "weekday")


def _raw(row: HistoryRow) -> tuple:
    labels = ",".join(f"{k}={v}" for k, v in sorted(row.labels.items()))
    at = row.requested_at
    return (row.user, row.resource, row.kind, labels, row.access, at.hour + at.minute / 60.0, float(at.weekday()))


def _encode(raw: Sequence[tuple], vocab: list[dict[str, int]]) -> np.ndarray:
    out = np.empty((len(raw), len(PLAIN_FEATURES)), dtype=np.float64)
    ncat = len(PLAIN_CATEGORICAL)
    for i, r in enumerate(raw):
        for j in range(ncat):
            out[i, j] = vocab[j].get(r[j], math.nan)
        out[i, ncat:] = r[ncat:]
    return out


def plain_predictions(rows: Sequence[HistoryRow], train_end: int, params: TrainParams) -> np.ndarray:
    """Train on rows[:train_end] (time-ordered) and predict minutes for rows[train_end:]."""
    raw = [_raw(r) for r in rows]
    vocab = [
        {v: i for i, v in enumerate(sorted({r[j] for r in raw[:train_end]}))} for j in range(len(PLAIN_CATEGORICAL))
    ]
    x = _encode(raw, vocab)
    used = np.fromiter((r.used_minutes for r in rows), dtype=np.float64, count=len(rows))
    dataset = lgb.Dataset(x[:train_end], label=np.log1p(used[:train_end]), feature_name=list(PLAIN_FEATURES),
                          categorical_feature=list(PLAIN_CATEGORICAL), free_raw_data=True,
                          params={"verbosity": -1, "max_bin": 255, "seed": params.seed})
    booster = lgb.train(params.lightgbm(), dataset, num_boost_round=params.num_rounds)
    return np.maximum(np.expm1(booster.predict(x[train_end:], num_threads=params.num_threads)), 0.0)
