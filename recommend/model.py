"""The LightGBM quantile model: training, and saving/loading it with its metadata.

On disk a model is two files in one directory: `model.txt` (LightGBM's text
format) and `model.json` (ModelMetadata, including the SHA-256 of model.txt, so a
truncated or edited model file is detected instead of half-loaded).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from recommend.calibrate import Calibration
from recommend.errors import ModelError, TrainingError
from recommend.features import CATEGORICAL, FEATURE_VERSION, FEATURES, Vocabularies
from recommend.stats import StatsTable, stats_from_json, stats_to_json
from recommend.text import WordStats

MODEL_FILE = "model.txt"
META_FILE = "model.json"
META_FORMAT = 2  # 2: words and calibration window
MIN_TRAIN_ROWS = 50
ALPHA_CHOICES = (0.7, 0.8)  # quantile levels `train` and `evaluate` choose among (on training rows)


@dataclass(frozen=True)
class TrainParams:
    """Knobs of one training run; the defaults are what `jitgate recommend train` uses."""

    alpha: float = 0.8
    # Quantile levels to choose among on the recent calibration window (training rows): the one whose
    # calibrated offers leave the least excess is kept. Empty: `alpha` alone. `plain` uses `alpha`.
    alpha_choices: tuple[float, ...] = ALPHA_CHOICES
    num_rounds: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    seed: int = 42
    num_threads: int = 1  # OpenMP threads spin; on a shared 2-core box one thread is far faster

    def __post_init__(self) -> None:
        for alpha in (self.alpha, *self.alpha_choices):
            if not 0.0 < alpha < 1.0:
                raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        if self.num_rounds < 1 or self.num_leaves < 2 or self.min_data_in_leaf < 1 or self.num_threads < 1:
            raise ValueError("num_rounds, num_leaves, min_data_in_leaf and num_threads must be positive")

    def lightgbm(self) -> dict[str, Any]:
        """LightGBM parameters: quantile objective, fully deterministic."""
        return {
            "objective": "quantile", "alpha": self.alpha, "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
            "cat_smooth": 10.0, "min_data_per_group": 20,
            "seed": self.seed, "deterministic": True, "force_row_wise": True,
            "num_threads": self.num_threads, "verbosity": -1,
        }


@dataclass
class ModelMetadata:
    """Everything needed to use and judge a saved model without retraining it."""

    version: str
    trained_at: str
    trained_until: str
    rows: int
    rows_train: int
    rows_test: int
    alpha: float
    params: dict[str, Any]
    features: list[str]
    categorical: list[str]
    vocabularies: Vocabularies
    metrics: dict[str, float]
    stats: StatsTable
    words: dict[str, Any] = field(default_factory=lambda: {"total": [0, 0.0], "words": {}})
    calibration: dict[str, Any] = field(default_factory=lambda: {"predicted": [], "used": []})
    feature_version: int = FEATURE_VERSION
    target: str = "log1p(used_minutes)"
    lightgbm_version: str = lgb.__version__
    model_sha256: str = ""
    format: int = META_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["stats"] = stats_to_json(self.stats)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ModelMetadata:
        data = dict(obj)
        data["stats"] = stats_from_json(data.get("stats", {}))
        return cls(**data)


@dataclass
class ModelBundle:
    """A loaded (or freshly trained) booster and its metadata."""

    booster: lgb.Booster
    metadata: ModelMetadata
    text: str
    calibration: Calibration = field(default_factory=lambda: Calibration.of([], []))
    words: WordStats = field(default_factory=WordStats)

    def predict_minutes(self, x: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Predicted `alpha` quantile of used minutes for encoded feature rows."""
        raw = self.booster.predict(x, num_threads=num_threads)
        return np.maximum(np.expm1(raw), 0.0)


def train_booster(x: np.ndarray, used_minutes: np.ndarray, params: TrainParams) -> lgb.Booster:
    """Train the quantile booster on encoded rows; the target is log1p(used minutes)."""
    if len(x) < MIN_TRAIN_ROWS:
        raise TrainingError(f"too little history to train: {len(x)} rows, need at least {MIN_TRAIN_ROWS}")
    dataset = lgb.Dataset(
        x, label=np.log1p(used_minutes), feature_name=list(FEATURES),
        categorical_feature=list(CATEGORICAL), free_raw_data=True,
        params={"verbosity": -1, "max_bin": 255, "seed": params.seed},
    )
    return lgb.train(params.lightgbm(), dataset, num_boost_round=params.num_rounds)


def model_version(text: str) -> str:
    """A model's version: the start of its text's SHA-256 (same model, same version)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def save_model(model_dir: str | os.PathLike[str], bundle: ModelBundle) -> None:
    """Write model.txt then model.json, each atomically; model.json last so a reader
    never sees new metadata with an old model (a hash mismatch is caught anyway)."""
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    bundle.metadata.model_sha256 = hashlib.sha256(bundle.text.encode()).hexdigest()
    _atomic_write(directory / MODEL_FILE, bundle.text)
    _atomic_write(
        directory / META_FILE, json.dumps(bundle.metadata.to_json(), indent=1, sort_keys=True, allow_nan=True)
    )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_model(model_dir: str | os.PathLike[str]) -> ModelBundle:
    """Load a saved model; raises ModelError with a plain reason if anything is off."""
    directory = Path(model_dir)
    model_path, meta_path = directory / MODEL_FILE, directory / META_FILE
    if not model_path.exists() and not meta_path.exists():
        raise ModelError(f"no trained model in {directory} (run `jitgate recommend train`)")
    try:
        text = model_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{model_path}: missing (its metadata is there; retrain the model)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{model_path}: unreadable ({exc})") from None
    try:
        meta_obj = json.loads(meta_path.read_text(encoding="utf-8"))
        metadata = ModelMetadata.from_json(meta_obj)
    except FileNotFoundError:
        raise ModelError(f"{meta_path}: missing (the model has no metadata; retrain the model)") from None
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelError(f"{meta_path}: corrupt metadata ({type(exc).__name__}: {exc})") from None
    if metadata.format != META_FORMAT or metadata.feature_version != FEATURE_VERSION:
        raise ModelError(f"{meta_path}: made by another version of jitgate (format {metadata.format}, "
                         f"features v{metadata.feature_version}); retrain the model")
    if hashlib.sha256(text.encode()).hexdigest() != metadata.model_sha256:
        raise ModelError(f"{model_path}: corrupt (its checksum does not match {META_FILE}); retrain the model")
    if list(metadata.features) != list(FEATURES):
        raise ModelError(f"{meta_path}: feature list differs from this version's; retrain the model")
    try:
        booster = lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as exc:
        raise ModelError(f"{model_path}: LightGBM cannot read it ({exc}); retrain the model") from None
    if booster.num_feature() != len(FEATURES):
        raise ModelError(f"{model_path}: has {booster.num_feature()} features, expected {len(FEATURES)}")
    try:
        calibration, words = Calibration.from_json(metadata.calibration), WordStats.from_json(metadata.words)
    except ValueError as exc:
        raise ModelError(f"{meta_path}: corrupt metadata ({exc}); retrain the model") from None
    return ModelBundle(booster=booster, metadata=metadata, text=text, calibration=calibration, words=words)


def pinball_loss(used: np.ndarray, predicted: np.ndarray, alpha: float) -> float:
    """Mean quantile (pinball) loss in minutes: the score a quantile model minimizes."""
    diff = used - predicted
    return float(np.mean(np.maximum(alpha * diff, (alpha - 1.0) * diff))) if len(diff) else math.nan
