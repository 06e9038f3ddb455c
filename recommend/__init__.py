"""Duration recommendations: a LightGBM quantile model over past grants.

Public API (what the control plane and the CLI use):

- history: `HistoryRow`, `read_history`, `write_history`, `parse_lines`
- serving: `Recommender`, `RecommendRequest`, `Recommendation`
- training: `TrainParams`, `train_and_save`, `evaluate_history`, `TrainOutcome`
- model files: `load_model`, `ModelBundle`, `ModelMetadata`
- synthetic history: `generate`
- errors: `RecommendError`, `HistoryError`, `ModelError`, `TrainingError`

LightGBM is imported lazily (through the submodules) by whoever uses these.
"""
from __future__ import annotations

import logging

from recommend.errors import HistoryError, ModelError, RecommendError, TrainingError
from recommend.history import HistoryRow, parse_lines, read_history, write_history
from recommend.model import ModelBundle, ModelMetadata, TrainParams, load_model
from recommend.serve import Recommendation, RecommendRequest, Recommender
from recommend.synth import generate
from recommend.training import TrainOutcome, evaluate_history, train_and_save

# A library logs, the application decides where: no "last resort" output on stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "HistoryError", "HistoryRow", "ModelBundle", "ModelError", "ModelMetadata", "RecommendError",
    "Recommendation", "RecommendRequest", "Recommender", "TrainOutcome", "TrainParams", "TrainingError",
    "evaluate_history", "generate", "load_model", "parse_lines", "read_history", "train_and_save",
    "write_history",
]
