"""Small shared data for the recommender tests: one synthetic history and one
model trained on it (real LightGBM, few rounds so the whole area stays fast)."""
from __future__ import annotations

from pathlib import Path

import pytest

from recommend.history import HistoryRow
from recommend.model import TrainParams
from recommend.synth import generate
from recommend.training import train_and_save

FAST = TrainParams(num_rounds=80)


@pytest.fixture(scope="session")
def rows() -> list[HistoryRow]:
    return generate(2500, seed=11)


@pytest.fixture(scope="session")
def trained_dir(rows: list[HistoryRow], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory with a model trained on `rows` (treat as read-only)."""
    directory = tmp_path_factory.mktemp("model")
    outcome = train_and_save(rows, directory, FAST)
    assert outcome.replaced
    return directory
