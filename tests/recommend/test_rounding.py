from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from recommend.rounding import offer, offer_minutes

M = timedelta(minutes=1)


@pytest.mark.parametrize("minutes, max_minutes, step, expected", [
    (31, 120, 15, 45),      # up, never down
    (45, 120, 15, 45),      # an exact step stays
    (45.0000000001, 120, 15, 45),  # float noise does not add a step
    (0.4, 120, 15, 15),     # at least one step
    (0, None, 15, 15),
    (200, 120, 15, 120),    # clamped to the maximum
    (100, 110, 15, 105),
    (106, 110, 15, 110),    # the maximum wins over a step above it
    (10, 5, 15, 5),         # a maximum below one step
    (61, None, 30, 90),     # no maximum: no clamp
    (float("nan"), 120, 15, 15),
])
def test_round_up_then_clamp(minutes: float, max_minutes: float | None, step: int, expected: int) -> None:
    max_d = None if max_minutes is None else max_minutes * M
    assert offer(minutes, max_d, step * M) == expected * M
    assert offer_minutes(np.array([minutes]), max_minutes, step)[0] == expected


def test_scalar_and_vector_agree() -> None:
    values = np.linspace(0, 600, 2401)
    vector = offer_minutes(values, 240, 15)
    assert all(offer(v, 240 * M, 15 * M) == vector[i] * M for i, v in enumerate(values))


def test_bad_step_or_maximum_refused() -> None:
    with pytest.raises(ValueError, match="step"):
        offer(10, None, timedelta(0))
    with pytest.raises(ValueError, match="maximum"):
        offer(10, timedelta(0), 15 * M)
