"""Train a candidate on the older 80% of a history (its newest 15% kept aside to
calibrate, recommend.calibrate), measure it on the newest 20%, and replace the
saved model only if the candidate is not worse there.

The saved model is the measured one (trained on the older 80%), so its metrics
are honest, and a later history that only grew holds out rows neither model saw.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recommend.calibrate import CALIBRATION_SHARE, DEFAULT_COVERAGE, MIN_CALIBRATION_ROWS, Calibration, calibrated
from recommend.errors import ModelError, TrainingError
from recommend.evaluate import (
    BASELINES,
    CALIBRATED_BASELINES,
    CALIBRATED_SUFFIX,
    Evaluation,
    baseline_predictions,
    score,
    split_index,
)
from recommend.features import (
    CATEGORICAL,
    FEATURES,
    RawFeatures,
    encode,
    in_time_order,
    make_vocabularies,
    past_features,
)
from recommend.history import HistoryRow, format_time, parse_time
from recommend.model import (
    MIN_TRAIN_ROWS,
    ModelBundle,
    ModelMetadata,
    TrainParams,
    load_model,
    model_version,
    pinball_loss,
    save_model,
    train_booster,
)
from recommend.plain import plain_predictions
from recommend.risk import PeersOf, save_risk, train_risk
from recommend.rounding import offer_minutes
from recommend.stats import summarize
from recommend.text import WordStats, learned_from

DEFAULT_MAX_MINUTES = 480.0
DEFAULT_STEP_MINUTES = 15.0
MIN_FRESH_ROWS = 20  # held-out rows newer than the old model's data needed to compare on those only


@dataclass(frozen=True)
class Prepared:
    """A history in time order with every row's past-only features and the split points:
    rows[:fit_end] train the booster, rows[fit_end:cut] are the recent calibration window,
    rows[cut:] are held out. `words` are the word statistics as known at the cut."""

    rows: list[HistoryRow]
    raw: list[RawFeatures]
    cut: int
    fit_end: int
    words: WordStats

    @property
    def used(self) -> np.ndarray:
        return np.fromiter((r.used_minutes for r in self.rows), dtype=np.float64, count=len(self.rows))


def calibration_start(cut: int) -> int:
    """Where the recent calibration window of the `cut` training rows starts (== cut: none)."""
    window = max(MIN_CALIBRATION_ROWS, int(cut * CALIBRATION_SHARE))
    return cut - window if cut - window >= MIN_TRAIN_ROWS else cut


def prepare(rows: Sequence[HistoryRow]) -> Prepared:
    """Sort, compute features, split (newest 20% held out); refuses too small a history."""
    ordered = in_time_order(rows)
    cut = split_index(len(ordered))
    if cut < MIN_TRAIN_ROWS or len(ordered) - cut < 1:
        raise TrainingError(f"too little history to train and test: {len(ordered)} rows, "
                            f"need at least {math.ceil(MIN_TRAIN_ROWS / 0.8) + 1}")
    raw, words = past_features(ordered, freeze_words_at=cut)
    return Prepared(rows=ordered, raw=raw, cut=cut, fit_end=calibration_start(cut), words=words)


def fit(prepared: Prepared, params: TrainParams, max_minutes: float = DEFAULT_MAX_MINUTES,
        step_minutes: float = DEFAULT_STEP_MINUTES,
        coverage: float = DEFAULT_COVERAGE) -> tuple[ModelBundle, np.ndarray, float]:
    """Train on the older part, calibrate on the recent window; returns the bundle, its raw
    (uncalibrated) predictions on the held-out part, and the training seconds.

    With several quantile levels to choose from (`params.alpha_choices`), one booster is trained
    per level and the one whose calibrated offers leave the least excess on the recent window is
    kept: the choice is made on training rows, never on the held-out part."""
    cut, fit_end = prepared.cut, prepared.fit_end
    vocab = make_vocabularies(prepared.raw[:fit_end])
    x = encode(prepared.raw, vocab)
    used = prepared.used
    window_used = used[fit_end:cut]
    started = time.perf_counter()
    best: tuple[float, TrainParams, Any, np.ndarray] | None = None
    for alpha in params.alpha_choices or (params.alpha,):
        chosen = replace(params, alpha=alpha, alpha_choices=())
        booster = train_booster(x[:fit_end], used[:fit_end], chosen)
        window = np.maximum(np.expm1(booster.predict(x[fit_end:cut], num_threads=params.num_threads)), 0.0)
        calibration = Calibration.of(window, window_used)
        excess = score(calibrated(window, calibration, coverage, step_minutes, max_minutes, shaped=True),
                       window_used).excess_minutes if calibration.usable else 0.0
        if best is None or excess < best[0] - 1e-9:
            best = (excess, chosen, booster, window)
    assert best is not None
    _excess, chosen, booster, window = best
    seconds = time.perf_counter() - started
    text = booster.model_to_string()
    bundle = ModelBundle(booster=booster, metadata=_metadata(prepared, chosen, vocab, text), text=text)
    calibration = Calibration.of(window, window_used)
    bundle.metadata.calibration = calibration.to_json()
    bundle.calibration = calibration
    predicted = bundle.predict_minutes(x[cut:], num_threads=params.num_threads)
    test_used = used[cut:]
    metrics = score(calibrated(predicted, calibration, coverage, step_minutes, max_minutes, shaped=True), test_used)
    bundle.metadata.metrics = {
        **metrics.to_json(),
        "pinball": round(pinball_loss(test_used, predicted, chosen.alpha), 4),
    }
    bundle.metadata.extra = {"max_minutes": max_minutes, "step_minutes": step_minutes, "coverage": coverage,
                             "train_seconds": round(seconds, 3),
                             "alpha_choices": list(params.alpha_choices or (params.alpha,))}
    return bundle, predicted, seconds


def _metadata(prepared: Prepared, params: TrainParams, vocab: dict[str, list[str]], text: str) -> ModelMetadata:
    train_rows = prepared.rows[:prepared.cut]
    return ModelMetadata(
        version=model_version(text),
        trained_at=format_time(datetime.now(UTC)),
        trained_until=format_time(train_rows[-1].requested_at),
        rows=len(prepared.rows), rows_train=prepared.cut, rows_test=len(prepared.rows) - prepared.cut,
        alpha=params.alpha, params={**params.lightgbm(), "num_rounds": params.num_rounds},
        features=list(FEATURES), categorical=list(CATEGORICAL), vocabularies=vocab,
        metrics={}, stats=summarize(train_rows), words=prepared.words.to_json(),
    )


def evaluate_history(rows: Sequence[HistoryRow], params: TrainParams = TrainParams(),
                     max_minutes: float = DEFAULT_MAX_MINUTES, step_minutes: float = DEFAULT_STEP_MINUTES,
                     coverage: float = DEFAULT_COVERAGE) -> tuple[Evaluation, ModelBundle]:
    """Model and baselines on the newest 20% of `rows`, the model and the `@target` baselines
    calibrated to `coverage` on the same recent window; the trained model is returned too."""
    prepared = prepare(rows)
    bundle, predicted, seconds = fit(prepared, params, max_minutes, step_minutes, coverage)
    cut, fit_end = prepared.cut, prepared.fit_end
    used = prepared.used
    test_used = used[cut:]
    calibration = bundle.calibration
    model = score(calibrated(predicted, calibration, coverage, step_minutes, max_minutes, shaped=True), test_used)
    raw = baseline_predictions(prepared.rows, fit_end, max_minutes)  # window and held-out rows
    raw["plain_lgbm"] = plain_predictions(prepared.rows, fit_end, params)
    window = cut - fit_end
    baselines = {name: score(offer_minutes(raw[name][window:], max_minutes, step_minutes), test_used)
                 for name in (*BASELINES, "plain_lgbm")}
    for name in CALIBRATED_BASELINES:
        own = Calibration.of(raw[name][:window], used[fit_end:cut])
        baselines[name + CALIBRATED_SUFFIX] = score(
            calibrated(raw[name][window:], own, coverage, step_minutes, max_minutes), test_used)
    evaluation = Evaluation(model=model, baselines=baselines, rows_train=cut, rows_test=len(test_used),
                            train_seconds=seconds,
                            pinball=pinball_loss(test_used, predicted, bundle.metadata.alpha),
                            target=coverage, alpha=bundle.metadata.alpha,
                            scale=calibration.scale(coverage, step_minutes, max_minutes))
    return evaluation, bundle


@dataclass
class TrainOutcome:
    """What `train` did: whether the saved model was replaced, and why."""

    replaced: bool
    reason: str
    version: str
    metrics: dict[str, float]
    previous_version: str | None = None
    previous_pinball: float | None = None
    compared_rows: int = 0
    warnings: list[str] = field(default_factory=list)


def train_and_save(rows: Sequence[HistoryRow], model_dir: str | Path, params: TrainParams = TrainParams(), *,
                   force: bool = False, max_minutes: float = DEFAULT_MAX_MINUTES,
                   step_minutes: float = DEFAULT_STEP_MINUTES, peers_of: PeersOf | None = None) -> TrainOutcome:
    """Train a candidate and save it unless the saved model scores better (lower
    pinball loss at the candidate's alpha) on the held-out rows. `force` saves anyway.
    The risk model is trained beside it, with `peers_of` naming each requester's peers as the
    server will (PolicySet.peers_of; None: everyone)."""
    prepared = prepare(rows)
    bundle, predicted, _ = fit(prepared, params, max_minutes, step_minutes)
    outcome = TrainOutcome(replaced=True, reason="no model saved yet", version=bundle.metadata.version,
                           metrics=dict(bundle.metadata.metrics))
    try:
        old = load_model(model_dir)
    except ModelError as exc:
        if (Path(model_dir) / "model.txt").exists() or (Path(model_dir) / "model.json").exists():
            outcome.reason = "the saved model is unusable"
            outcome.warnings.append(str(exc))
        old = None
    if old is not None:
        outcome.previous_version = old.metadata.version
        new_loss, old_loss, compared = _compare(prepared, predicted, old, bundle.metadata.alpha)
        outcome.previous_pinball, outcome.compared_rows = round(old_loss, 4), compared
        if new_loss <= old_loss + 1e-9:
            outcome.reason = f"not worse on {compared} held-out rows (pinball {new_loss:.3f} <= {old_loss:.3f})"
        elif force:
            outcome.reason = (
                f"forced although worse on {compared} held-out rows (pinball {new_loss:.3f} > {old_loss:.3f})"
            )
        else:
            outcome.replaced = False
            outcome.reason = (
                f"worse on {compared} held-out rows (pinball {new_loss:.3f} > {old_loss:.3f}); "
                f"kept {old.metadata.version}"
            )
    if outcome.replaced:
        # Serving reads words as of the whole history (the newest grants included), like personal history.
        bundle.metadata.words = learned_from(in_time_order(rows)).to_json()
        save_model(model_dir, bundle)
    _save_risk_model(rows, model_dir, outcome, peers_of)
    return outcome


def _save_risk_model(rows: Sequence[HistoryRow], model_dir: str | Path, outcome: TrainOutcome,
                     peers_of: PeersOf | None = None) -> None:
    """Train and save the risk model beside the duration model (it has no held-out score to lose);
    a history too small for it leaves any saved one in place and says so."""
    try:
        save_risk(model_dir, train_risk(rows, peers_of=peers_of))
    except TrainingError as exc:
        outcome.warnings.append(f"risk model not trained: {exc}")


def _compare(prepared: Prepared, predicted: np.ndarray, old: ModelBundle, alpha: float) -> tuple[float, float, int]:
    """Pinball loss of candidate and old model on held-out rows the old model did not train on
    (when there are enough of them), else on all held-out rows."""
    test_rows = prepared.rows[prepared.cut:]
    used = prepared.used[prepared.cut:]
    try:
        old_until = parse_time(old.metadata.trained_until)
    except ValueError:
        old_until = None
    fresh = np.array([old_until is not None and r.requested_at > old_until for r in test_rows], dtype=bool)
    mask = fresh if fresh.sum() >= MIN_FRESH_ROWS else np.ones(len(test_rows), dtype=bool)
    x_old = encode(prepared.raw[prepared.cut:], old.metadata.vocabularies)
    old_pred = old.predict_minutes(x_old, num_threads=1)
    return (pinball_loss(used[mask], predicted[mask], alpha), pinball_loss(used[mask], old_pred[mask], alpha),
            int(mask.sum()))
