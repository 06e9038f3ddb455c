"""Conformal calibration of offers to a target coverage.

The quantile model's raw output is not a promise: on another organisation's
history an alpha-0.8 model may cover 75% or 90%, and rounding up to the policy's
step adds coverage of its own. So the newest part of the training rows (a recent
window the model did not train on) is kept aside; the model's predictions there
and the used minutes are saved with the model. For a target coverage, a duration
step and a maximum, the offer is the prediction times the smallest factor that
makes at least ceil((n + 1) * target) of the n window grants fit after rounding
up to the step and clamping (split conformal calibration, per step). Exchangeable
rows would then be covered at least `target` of the time; drifting ones about so.

The model's own offers are also reshaped (`Calibration.scale`): the offer is
factor * 60 * (prediction / 60) ** exponent, the exponent (from EXPONENTS) the one
whose calibrated offers leave the least excess on the same window. An exponent
below 1 covers short work a little more generously and long work a little less:
a minute of slack costs the same on either, but long work's spread in minutes is
wider, so the same coverage is bought with fewer idle minutes. The choice is made
on the window (part of the training rows), never on held-out rows. Baselines
calibrated for comparison keep the plain factor (`calibrated`).
"""
from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recommend.rounding import offer_minutes

DEFAULT_COVERAGE = 0.85  # the share of grants an offer should cover without an extension
MIN_COVERAGE, MAX_COVERAGE = 0.5, 0.99  # below: offers are guesses; above: only the maximum covers
CALIBRATION_SHARE = 0.15  # newest share of the training rows kept aside as the recent window
MIN_CALIBRATION_ROWS = 30  # fewer window rows: no calibration (the factor would be noise)
MAX_CALIBRATION_ROWS = 5000  # newest window rows kept in a model file (~100 KB of JSON)
FACTOR_RANGE = (1 / 32, 32.0)  # a factor outside this says the model is broken, not miscalibrated
_SEARCH_STEPS = 48  # bisection steps over log(factor): far below a minute of difference
_CACHE_SIZE = 64  # (coverage, step, max) combinations remembered by a serving model
EXPONENTS = (1.0, 0.9, 0.8, 0.7, 0.6)  # shapes tried by Calibration.scale (1.0 first: kept on a tie)
REFERENCE_MINUTES = 60.0  # the length an exponent pivots around (only the factor depends on it)


@dataclass(frozen=True)
class Scale:
    """How raw predictions become offers before rounding: factor * REF * (p / REF) ** exponent."""

    factor: float = 1.0
    exponent: float = 1.0

    def minutes(self, predicted: np.ndarray | float) -> np.ndarray:
        p = np.maximum(np.asarray(predicted, dtype=np.float64), 0.0)
        if self.exponent == 1.0:
            return p * self.factor
        return self.factor * REFERENCE_MINUTES * (p / REFERENCE_MINUTES) ** self.exponent


def check_coverage(value: float, what: str = "coverage") -> float:
    """A target coverage within [MIN_COVERAGE, MAX_COVERAGE]; ValueError names the field."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not MIN_COVERAGE <= value <= MAX_COVERAGE:
        raise ValueError(f"`{what}` must be a number from {MIN_COVERAGE} to {MAX_COVERAGE}, got {value!r}")
    return float(value)


@dataclass
class Calibration:
    """A recent window's raw predictions and used minutes, and the factors derived from them."""

    predicted: np.ndarray
    used: np.ndarray
    _cache: dict[tuple[float, float, float | None, bool], Scale] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, predicted: Sequence[float] | np.ndarray, used: Sequence[float] | np.ndarray) -> Calibration:
        """The newest MAX_CALIBRATION_ROWS pairs of a window."""
        p = np.asarray(predicted, dtype=np.float64)[-MAX_CALIBRATION_ROWS:]
        u = np.asarray(used, dtype=np.float64)[-MAX_CALIBRATION_ROWS:]
        if p.shape != u.shape:
            raise ValueError("calibration needs as many predictions as used times")
        return cls(p, u)

    @property
    def usable(self) -> bool:
        return len(self.used) >= MIN_CALIBRATION_ROWS

    def factor(self, coverage: float, step_minutes: float, max_minutes: float | None) -> float:
        """The smallest factor on the predictions whose rounded, clamped offers cover at least
        ceil((n + 1) * coverage) window grants; 1.0 without a usable window."""
        return self._cached(coverage, step_minutes, max_minutes, False).factor

    def scale(self, coverage: float, step_minutes: float, max_minutes: float | None) -> Scale:
        """The exponent (of EXPONENTS) and its conformal factor whose offers cover the target on the
        window with the least excess; Scale() without a usable window."""
        return self._cached(coverage, step_minutes, max_minutes, True)

    def _cached(self, coverage: float, step_minutes: float, max_minutes: float | None, shaped: bool) -> Scale:
        if not self.usable:
            return Scale()
        key = (coverage, step_minutes, max_minutes, shaped)
        found = self._cache.get(key)
        if found is None:
            found = self._best(coverage, step_minutes, max_minutes) if shaped \
                else Scale(self._search(self.predicted, coverage, step_minutes, max_minutes))
            with self._lock:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = found
        return found

    def _best(self, coverage: float, step_minutes: float, max_minutes: float | None) -> Scale:
        best: tuple[float, Scale] | None = None
        for exponent in EXPONENTS:
            shaped = Scale(1.0, exponent).minutes(self.predicted)
            candidate = Scale(self._search(shaped, coverage, step_minutes, max_minutes), exponent)
            offered = offer_minutes(candidate.minutes(self.predicted), max_minutes, step_minutes)
            covered = self.used <= offered + 1e-9
            excess = float(np.mean((offered - self.used)[covered])) if covered.any() else math.inf
            if best is None or excess < best[0] - 1e-9:
                best = (excess, candidate)
        assert best is not None
        return best[1]

    def _search(self, predicted: np.ndarray, coverage: float, step_minutes: float, max_minutes: float | None
                ) -> float:
        n = len(self.used)
        needed = min(n, math.ceil((n + 1) * coverage))
        low, high = math.log(FACTOR_RANGE[0]), math.log(FACTOR_RANGE[1])
        if self._covered(predicted, math.exp(high), step_minutes, max_minutes) < needed:
            return FACTOR_RANGE[1]  # the maximum caps coverage: the largest factor is the best try
        for _ in range(_SEARCH_STEPS):
            middle = (low + high) / 2
            if self._covered(predicted, math.exp(middle), step_minutes, max_minutes) >= needed:
                high = middle
            else:
                low = middle
        return math.exp(high)

    def _covered(self, predicted: np.ndarray, factor: float, step_minutes: float, max_minutes: float | None
                 ) -> int:
        offered = offer_minutes(predicted * factor, max_minutes, step_minutes)
        return int(np.count_nonzero(self.used <= offered + 1e-9))

    def to_json(self) -> dict[str, Any]:
        return {"predicted": [round(float(v), 3) for v in self.predicted],
                "used": [round(float(v), 2) for v in self.used]}

    @classmethod
    def from_json(cls, obj: Any) -> Calibration:
        """Inverse of to_json; raises ValueError on a malformed window."""
        if not isinstance(obj, dict):
            raise ValueError("calibration must be a mapping")
        p, u = obj.get("predicted"), obj.get("used")
        if not isinstance(p, list) or not isinstance(u, list) or len(p) != len(u) or len(p) > MAX_CALIBRATION_ROWS:
            raise ValueError(f"calibration needs two lists of equal length (at most {MAX_CALIBRATION_ROWS})")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                   for v in (*p, *u)):
            raise ValueError("calibration values must be finite numbers >= 0")
        return cls.of(p, u)


def calibrated(predicted: np.ndarray, calibration: Calibration, coverage: float, step_minutes: float,
               max_minutes: float | None, shaped: bool = False) -> np.ndarray:
    """Offers (minutes) of raw predictions calibrated to `coverage`, rounded up and clamped: by the
    conformal factor alone, or (`shaped`, the model's own offers) by Calibration.scale."""
    scale = calibration._cached(coverage, step_minutes, max_minutes, shaped)
    return offer_minutes(scale.minutes(predicted), max_minutes, step_minutes)
