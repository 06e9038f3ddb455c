"""Duration recommendations: a LightGBM quantile model over past grants.

Public API (what the control plane and the CLI use):

- history: `HistoryRow`, `read_history`, `write_history`, `parse_lines`
- serving: `Recommender`, `RecommendRequest`, `Recommendation`
- training: `TrainParams`, `train_and_save`, `evaluate_history`, `TrainOutcome`
- model files: `load_model`, `ModelBundle`, `ModelMetadata`
- synthetic history: `generate` (recommend.synth, a web shop), recommend.synth_harbor.generate (another
  organisation's words and habits, for evaluation)
- risk (recommend.risk): `Recommender.risk(RiskAsk, mine, on_resource) -> RiskScore` (POLICY.md's `risk`; never
  raises: `known=False` and why without a model), `train_risk`, `save_risk`, `load_risk`. The caller
  names the requester's peers (`RiskAsk.peers`, e.g. the members of their policy groups; None: everyone)
  and scores an extension as a request for the whole grant it would make (`asked_minutes`)
- calibration (recommend.calibrate): offers calibrated to `Recommender(coverage=0.85)`; the model's
  offers are also reshaped (factor * 60 * (p / 60) ** exponent) with the exponent chosen on the
  calibration window, and `TrainParams.alpha_choices` picks the quantile level on that window
- errors: `RecommendError`, `HistoryError`, `ModelError`, `TrainingError`
- the demo's synthetic history (recommend.demo): `demo_history(policies)`, `demo_specs(policies)`

A library: it imports nothing from `controlplane`, `broker` or `cli` (a test checks).
History in the control plane's store is read there (`controlplane.local_history`);
the demo's training is the CLI's (`cli.demo_model`).

Serving, as the control plane does it (one Recommender per process, shared by
worker threads; `history` = the requester's recent finished grants, e.g. the last
200, plus anyone's on the same resource if the fallback should use them):

    rec = Recommender(data_dir / "model")          # never raises; see rec.load_error
    answer = rec.recommend(RecommendRequest(user="alice", resource="orders-db", kind="postgres",
                                            labels={"env": "prod"}, role="readonly", reason="report"),
                           max_duration=timedelta(hours=2), step=timedelta(minutes=15), history=rows)
    answer.duration, answer.explanation, answer.fallback
    risk = rec.risk(RiskAsk(user="alice", resource="orders-db", kind="postgres", access="role:readonly",
                            at=now, asked_minutes=60, reason="report"),
                    mine=[r for r in rows if r.user == "alice"],            # the requester's past
                    on_resource=[r for r in rows if r.resource == "orders-db"])  # anyone's on it
    risk.known, risk.score, risk.reasons

A serving Recommender notices a retrained model by itself (it stats the model files
at most every 2 s from `recommend`), so `jitgate recommend train` needs no restart.

Importing this package imports LightGBM.
"""
from __future__ import annotations

import logging

from recommend.errors import HistoryError, ModelError, RecommendError, TrainingError
from recommend.history import HistoryRow, parse_lines, read_history, write_history
from recommend.model import ModelBundle, ModelMetadata, TrainParams, load_model
from recommend.serve import Recommendation, Recommender, RecommendRequest
from recommend.synth import generate
from recommend.training import TrainOutcome, evaluate_history, train_and_save

# A library logs, the application decides where: no "last resort" output on stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "HistoryError", "HistoryRow", "ModelBundle", "ModelError", "ModelMetadata", "RecommendError",
    "RecommendRequest", "Recommendation", "Recommender", "TrainOutcome", "TrainParams", "TrainingError",
    "evaluate_history", "generate", "load_model", "parse_lines", "read_history", "train_and_save",
    "write_history",
]
