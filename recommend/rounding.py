"""From a predicted length to the duration actually offered: round *up* to the
policy's step (a recommendation should not cut a session short by rounding),
then clamp to the policy's maximum. Scalar for serving, vectorized for evaluation;
both follow the same rule."""
from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

_EPS = 1e-9


def offer(minutes: float, max_duration: timedelta | None, step: timedelta) -> timedelta:
    """At least one step; a multiple of `step` unless the maximum is lower; never above the maximum."""
    step_s = step.total_seconds()
    if step_s <= 0:
        raise ValueError("the duration step must be longer than zero")
    if max_duration is not None and max_duration.total_seconds() <= 0:
        raise ValueError("the maximum duration must be longer than zero")
    seconds = minutes * 60.0 if math.isfinite(minutes) else step_s
    steps = max(1, math.ceil(seconds / step_s - _EPS))
    result = timedelta(seconds=steps * step_s)
    if max_duration is not None and result > max_duration:
        return max_duration
    return result


def offer_minutes(minutes: np.ndarray, max_minutes: float | None, step_minutes: float) -> np.ndarray:
    """offer() over an array, in minutes."""
    if step_minutes <= 0:
        raise ValueError("the duration step must be longer than zero")
    values = np.where(np.isfinite(minutes), minutes, step_minutes)
    steps = np.maximum(1.0, np.ceil(values / step_minutes - _EPS))
    result = steps * step_minutes
    return np.minimum(result, max_minutes) if max_minutes is not None else result
