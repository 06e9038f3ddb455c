"""Errors of the duration recommender, each with a stable code.

The code (`recommend.history_invalid`, ...) is what callers map to a gRPC status
or an exit code; the message is one plain line for a person.
"""
from __future__ import annotations

from jitgate.errors import JitgateError


class RecommendError(JitgateError):
    """Base of every error this package raises on purpose (`code` per class)."""

    code = "recommend.error"


class HistoryError(RecommendError):
    """A history file (JSON lines) has a bad line; the message starts with `file:line:`.

    `line` is 0 when the file as a whole is the problem (missing, not UTF-8).
    """

    code = "recommend.history_invalid"

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line
        self.reason = message


class ModelError(RecommendError):
    """A model file is missing, corrupt, or from an incompatible feature version."""

    code = "recommend.model_unavailable"


class TrainingError(RecommendError):
    """Training cannot run on the data given (too few rows, ...)."""

    code = "recommend.training_failed"
