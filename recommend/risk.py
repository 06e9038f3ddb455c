"""Risk flags on unusual requests: an isolation forest over what a request looks like
against the requester's and their peers' own past.

Features (each larger = more unusual; RISK_FEATURES order), from past requests only:

* `hour_rarity`: how rarely this person asked within 1.5 h of this time of day;
* `day_rarity`: a weekend request by someone who rarely asks at weekends;
* `resource_new_user`, `resource_new_peers`: the resource is new to this person,
  to their peers (their group when the caller names it, else everyone);
* `access_new_user`: the login/role is new to this person on this kind of resource;
* `duration_over`: log of the asked duration over the recommendation (or the
  usual length of work on the resource), when above it;
* `burst`: requests by this person in the previous hour, against their usual pace;
* `absence`: the gap since this person's previous request, against their usual gap;
* `emergency_off_pattern`: break-glass whose words and hour look unlike past
  break-glass requests.

Training (`train_risk`) fits scikit-learn's IsolationForest on the features of a
history (each row from its own past) and saves its trees as plain arrays in
`risk.json` (with a SHA-256 in the file, so an edited file is refused). Serving
walks those arrays with numpy (no scikit-learn import, ~0.1 ms), turns the
isolation depth into a score from 0 to 1 (the share of training requests that
were less unusual), and names as reasons the features beyond what 99% of
training requests showed. A missing or broken model gives `known = False` and
says why: the policies decide what an unknown score means.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from recommend.errors import ModelError, TrainingError
from recommend.features import in_time_order
from recommend.history import HistoryRow
from recommend.text import WordStats, words_of

log = logging.getLogger(__name__)

RISK_FILE = "risk.json"
RISK_FORMAT = 1
RISK_FEATURES: tuple[str, ...] = ("hour_rarity", "day_rarity", "resource_new_user", "resource_new_peers",
                                  "access_new_user", "duration_over", "burst", "absence", "emergency_off_pattern")
REASONS = {
    "hour_rarity": "hour unusual for this user",
    "day_rarity": "weekend request unusual for this user",
    "resource_new_user": "resource new to this user",
    "resource_new_peers": "resource new to this user's peers",
    "access_new_user": "login or role new to this user",
    "duration_over": "duration far above the recommendation",
    "burst": "burst of requests",
    "absence": "first request after a long absence",
    "emergency_off_pattern": "break-glass outside the usual incident pattern",
}
HOUR_WINDOW = 1.5  # hours either side of a time of day that count as "this hour" for a person
BURST_WINDOW = timedelta(hours=1)
USER_PAST_LIMIT = 400  # the requester's newest past requests a score reads (bounds the cost per request)
MIN_TRAIN_ROWS = 200  # fewer rows: no risk model (an isolation forest of a few rows flags everyone)
N_TREES = 100  # isolation trees: scores stable to ~0.01 at this count
MAX_SAMPLES = 256  # rows per tree (the isolation forest paper's default); bounds tree depth to 8
MAX_SAVED_NODES = N_TREES * (2 * MAX_SAMPLES)  # a risk.json with more nodes is refused
REASON_PERCENTILE = 99.0  # a feature is named as a reason when beyond this share of training requests
MAX_REASONS = 3  # reasons named per request, strongest first
_QUANTILE_POINTS = 1001  # the training score distribution kept to map a depth to 0..1


@dataclass(frozen=True)
class PastAsk:
    """A past request as risk scoring reads it."""

    user: str
    resource: str
    access: str
    at: datetime
    asked_minutes: float
    used_minutes: float
    reason: str = ""
    ticket: str = ""
    emergency: bool = False


def past_of(row: HistoryRow) -> PastAsk:
    return PastAsk(row.user, row.resource, row.access, row.requested_at, row.asked_minutes, row.used_minutes,
                   row.reason, row.ticket, row.emergency)


@dataclass(frozen=True)
class RiskAsk:
    """The request being scored."""

    user: str
    resource: str
    kind: str
    access: str
    at: datetime
    asked_minutes: float
    reason: str = ""
    ticket: str = ""
    emergency: bool = False
    recommended_minutes: float | None = None
    peers: frozenset[str] | None = None  # the requester's group; None: everyone


@dataclass(frozen=True)
class RiskScore:
    """POLICY.md's `risk`: `known`, `score` (0..1), `reasons` (when not known: why)."""

    known: bool
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    drivers: dict[str, float] = field(default_factory=dict)  # feature -> share of training requests below it

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "score": round(self.score, 4) if self.known else 0.0,
                "reasons": list(self.reasons)}


def unknown(why: str) -> RiskScore:
    return RiskScore(known=False, score=0.0, reasons=(why,))


def _circular_hours(a: float, b: float) -> float:
    d = abs(a - b) % 24.0
    return min(d, 24.0 - d)


def _hour(at: datetime) -> float:
    return at.hour + at.minute / 60.0


def _kind_of_access(access: str) -> str:
    return access.split(":", 1)[0]


def risk_features(ask: RiskAsk, mine: Sequence[PastAsk], on_resource: Sequence[PastAsk],
                  emergency_words: WordStats | None) -> np.ndarray:
    """RISK_FEATURES of one ask. `mine`: the requester's past requests; `on_resource`: anyone's on
    the resource; both only requests made before `ask.at` count (any order)."""
    at = ask.at
    mine = sorted((p for p in mine if p.at < at), key=lambda p: p.at)[-USER_PAST_LIMIT:]
    n = len(mine)
    hour = _hour(at)
    near = sum(1 for p in mine if _circular_hours(_hour(p.at), hour) <= HOUR_WINDOW)
    hour_rarity = -math.log((near + 1) / (n + 2))
    weekend = at.weekday() >= 5
    weekend_n = sum(1 for p in mine if p.at.weekday() >= 5)
    day_rarity = -math.log((weekend_n + 1) / (n + 2)) if weekend else 0.0
    resource_new_user = 1.0 / (1.0 + sum(1 for p in mine if p.resource == ask.resource))
    users = {p.user for p in on_resource if p.at < at and p.user != ask.user
             and (ask.peers is None or p.user in ask.peers)}
    resource_new_peers = 1.0 / (1.0 + len(users))
    access_kind = _kind_of_access(ask.access)
    same_access = sum(1 for p in mine if p.access == ask.access)
    access_new_user = 1.0 / (1.0 + same_access) if any(_kind_of_access(p.access) == access_kind for p in mine) \
        else 0.5
    duration_over = max(0.0, math.log(ask.asked_minutes / _reference_minutes(ask, mine, on_resource)))
    recent = sum(1 for p in mine if at - p.at <= BURST_WINDOW)
    if n >= 2:
        span_hours = max(1.0, (mine[-1].at - mine[0].at).total_seconds() / 3600)
        pace = n / span_hours  # requests per hour over the person's known span
        burst = max(0.0, math.log1p(recent) - math.log1p(pace))
        gaps = sorted((b.at - a.at).total_seconds() / 86400 for a, b in zip(mine, mine[1:]))
        typical_gap = gaps[len(gaps) // 2]
        absence = max(0.0, math.log1p((at - mine[-1].at).total_seconds() / 86400) - math.log1p(typical_gap * 3))
    else:
        burst, absence = math.log1p(recent), 0.0
    emergency_off_pattern = 0.0
    if ask.emergency:
        like = _emergency_likeness(ask, emergency_words)
        emergency_off_pattern = 1.0 - like
    return np.array([hour_rarity, day_rarity, resource_new_user, resource_new_peers, access_new_user,
                     duration_over, burst, absence, emergency_off_pattern], dtype=np.float64)


def _reference_minutes(ask: RiskAsk, mine: Sequence[PastAsk], on_resource: Sequence[PastAsk]) -> float:
    """The recommendation, else the usual asked length of this person on the resource, of anyone on
    it, of this person, else an hour."""
    if ask.recommended_minutes is not None and ask.recommended_minutes > 0:
        return ask.recommended_minutes
    for pool in ([p.asked_minutes for p in mine if p.resource == ask.resource],
                 [p.asked_minutes for p in on_resource if p.at < ask.at],
                 [p.asked_minutes for p in mine]):
        if pool:
            pool = sorted(pool)
            return max(1.0, pool[int(0.8 * (len(pool) - 1))])
    return 60.0


def _emergency_likeness(ask: RiskAsk, emergency_words: WordStats | None) -> float:
    """How much the words of a break-glass request look like past break-glass requests (0..1):
    the highest shrunk share of break-glass among the past requests sharing one of its words."""
    if emergency_words is None:
        return 0.0
    found = emergency_words.estimates(ask.reason, ask.ticket)
    return max((e.estimate / math.log(2.0) for e in found), default=0.0)  # the mean of log1p(0 or 1), as a share


def emergency_word_stats(rows: Iterable[PastAsk]) -> WordStats:
    """Per word, the share of requests holding it that were break-glass (stored as log1p of 0/1 so
    that WordStats' shrunk mean, expm1'd, reads as that share)."""
    stats = WordStats()
    for p in rows:
        stats.add(p.reason, p.ticket, 1.0 if p.emergency else 0.0)
    return stats


def history_features(rows: Sequence[HistoryRow]) -> np.ndarray:
    """Features of every row of a time-ordered history, each from the rows asked before it."""
    asks = [past_of(r) for r in rows]
    by_user: dict[str, list[PastAsk]] = {}
    by_resource: dict[str, list[PastAsk]] = {}
    emergency_words = WordStats()
    out = np.empty((len(rows), len(RISK_FEATURES)), dtype=np.float64)
    for i, (row, past) in enumerate(zip(rows, asks)):
        ask = ask_of_row(row)
        out[i] = risk_features(ask, by_user.get(row.user, [])[-USER_PAST_LIMIT:], by_resource.get(row.resource, []),
                               emergency_words)
        by_user.setdefault(row.user, []).append(past)
        by_resource.setdefault(row.resource, []).append(past)
        emergency_words.add(past.reason, past.ticket, 1.0 if past.emergency else 0.0)
    return out


def ask_of_row(row: HistoryRow, **changes: Any) -> RiskAsk:
    """The risk ask of a history row (fields in `changes` replaced)."""
    fields = dict(user=row.user, resource=row.resource, kind=row.kind, access=row.access, at=row.requested_at,
                  asked_minutes=row.asked_minutes, reason=row.reason, ticket=row.ticket, emergency=row.emergency)
    fields.update(changes)
    return RiskAsk(**fields)


# -- the model ---------------------------------------------------------------------


@dataclass
class RiskModel:
    """An isolation forest as arrays, the training score distribution and per-feature thresholds."""

    feature: np.ndarray  # per node: split feature (-1: leaf)
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_depth: np.ndarray  # per node: path length credited at a leaf (depth + c(n_samples))
    roots: np.ndarray  # each tree's root node index
    max_samples: int
    score_quantiles: np.ndarray  # sorted anomaly scores of training rows (subsampled)
    reason_thresholds: np.ndarray  # per feature: REASON_PERCENTILE of training values
    emergency_words: WordStats
    trained_until: str = ""
    rows: int = 0

    def anomaly(self, x: np.ndarray) -> float:
        """sklearn's anomaly score 2^(-E[h(x)] / c(max_samples)) of one feature row."""
        node = self.roots.copy()
        feature, threshold, left, right = self.feature, self.threshold, self.left, self.right
        for _ in range(64):  # deeper than any tree of MAX_SAMPLES rows
            f = feature[node]
            inner = f >= 0
            if not inner.any():
                break
            go_left = x[np.where(inner, f, 0)] <= threshold[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        depth = self.leaf_depth[node].mean()
        return float(2.0 ** (-depth / _average_path(self.max_samples)))

    def score(self, ask: RiskAsk, mine: Sequence[PastAsk], on_resource: Sequence[PastAsk]) -> RiskScore:
        x = risk_features(ask, mine, on_resource, self.emergency_words)
        raw = self.anomaly(x)
        share = bisect.bisect_left(self.score_quantiles.tolist(), raw) / len(self.score_quantiles)
        over = [(x[j] / self.reason_thresholds[j] if self.reason_thresholds[j] > 0 else math.inf, name)
                for j, name in enumerate(RISK_FEATURES) if x[j] > self.reason_thresholds[j] and x[j] > 0]
        over.sort(reverse=True)
        drivers = {name: round(float(x[j]), 4) for j, name in enumerate(RISK_FEATURES)}
        return RiskScore(known=True, score=min(1.0, max(0.0, share)),
                         reasons=tuple(REASONS[name] for _, name in over[:MAX_REASONS]), drivers=drivers)

    def to_json(self) -> dict[str, Any]:
        body = {
            "format": RISK_FORMAT, "features": list(RISK_FEATURES), "max_samples": self.max_samples,
            "feature": self.feature.tolist(), "threshold": [round(float(v), 6) for v in self.threshold],
            "left": self.left.tolist(), "right": self.right.tolist(),
            "leaf_depth": [round(float(v), 6) for v in self.leaf_depth], "roots": self.roots.tolist(),
            "score_quantiles": [round(float(v), 6) for v in self.score_quantiles],
            "reason_thresholds": [round(float(v), 6) for v in self.reason_thresholds],
            "emergency_words": self.emergency_words.to_json(), "trained_until": self.trained_until,
            "rows": self.rows,
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "body": body}

    @classmethod
    def from_json(cls, obj: Any) -> RiskModel:
        """Inverse of to_json; raises ValueError naming what is wrong."""
        if not isinstance(obj, dict) or not isinstance(obj.get("body"), dict):
            raise ValueError("not a risk model")
        body = obj["body"]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        if hashlib.sha256(text.encode()).hexdigest() != obj.get("sha256"):
            raise ValueError("checksum mismatch (edited or truncated)")
        if body.get("format") != RISK_FORMAT or body.get("features") != list(RISK_FEATURES):
            raise ValueError("made by another version of jitgate")
        arrays = {name: np.asarray(body[name]) for name in ("feature", "threshold", "left", "right", "leaf_depth")}
        nodes = len(arrays["feature"])
        if nodes > MAX_SAVED_NODES or any(len(a) != nodes for a in arrays.values()):
            raise ValueError(f"tree arrays of unequal length or over {MAX_SAVED_NODES} nodes")
        feature = arrays["feature"].astype(np.int64)
        left, right = arrays["left"].astype(np.int64), arrays["right"].astype(np.int64)
        roots = np.asarray(body["roots"], dtype=np.int64)
        inner = feature >= 0
        if (feature >= len(RISK_FEATURES)).any() or ((left[inner] <= np.nonzero(inner)[0]).any()) \
                or (right[inner] >= nodes).any() or (left[inner] >= nodes).any() \
                or len(roots) == 0 or (roots < 0).any() or (roots >= nodes).any():
            raise ValueError("tree arrays do not form trees")
        quantiles = np.asarray(body["score_quantiles"], dtype=np.float64)
        thresholds = np.asarray(body["reason_thresholds"], dtype=np.float64)
        if len(quantiles) == 0 or len(thresholds) != len(RISK_FEATURES):
            raise ValueError("score distribution or reason thresholds missing")
        return cls(feature=feature, threshold=arrays["threshold"].astype(np.float64), left=left, right=right,
                   leaf_depth=arrays["leaf_depth"].astype(np.float64), roots=roots,
                   max_samples=int(body["max_samples"]), score_quantiles=np.sort(quantiles),
                   reason_thresholds=thresholds, emergency_words=WordStats.from_json(body["emergency_words"]),
                   trained_until=str(body.get("trained_until", "")), rows=int(body.get("rows", 0)))


def _average_path(n: int) -> float:
    """c(n): the average path length of an unsuccessful search in a binary tree of n points."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1) + 0.5772156649) - 2.0 * (n - 1) / n


def fit_risk(features: np.ndarray, emergency_words: WordStats, seed: int = 42) -> RiskModel:
    """An isolation forest (scikit-learn) on training feature rows, as arrays."""
    if len(features) < MIN_TRAIN_ROWS:
        raise TrainingError(f"too little history for a risk model: {len(features)} rows, need {MIN_TRAIN_ROWS}")
    from sklearn.ensemble import IsolationForest  # training only: serving needs no scikit-learn

    forest = IsolationForest(n_estimators=N_TREES, max_samples=min(MAX_SAMPLES, len(features)),
                             random_state=seed, n_jobs=1).fit(features)
    feature, threshold, left, right, leaf_depth, roots = [], [], [], [], [], []
    for tree, used in zip(forest.estimators_, forest.estimators_features_):
        t = tree.tree_
        base = len(feature)
        roots.append(base)
        depth = np.zeros(t.node_count)
        for node in range(t.node_count):  # children come after their parent in sklearn's arrays
            if t.children_left[node] >= 0:
                depth[t.children_left[node]] = depth[node] + 1
                depth[t.children_right[node]] = depth[node] + 1
        for node in range(t.node_count):
            leaf = t.children_left[node] < 0
            feature.append(-1 if leaf else int(used[t.feature[node]]))
            threshold.append(0.0 if leaf else float(t.threshold[node]))
            left.append(-1 if leaf else base + int(t.children_left[node]))
            right.append(-1 if leaf else base + int(t.children_right[node]))
            leaf_depth.append(depth[node] + _average_path(int(t.n_node_samples[node])) if leaf else 0.0)
    model = RiskModel(feature=np.array(feature, dtype=np.int64), threshold=np.array(threshold),
                      left=np.array(left, dtype=np.int64), right=np.array(right, dtype=np.int64),
                      leaf_depth=np.array(leaf_depth), roots=np.array(roots, dtype=np.int64),
                      max_samples=int(forest.max_samples_), score_quantiles=np.array([0.0]),
                      reason_thresholds=np.percentile(features, REASON_PERCENTILE, axis=0),
                      emergency_words=emergency_words, rows=len(features))
    sample = features[np.linspace(0, len(features) - 1, min(len(features), 3 * _QUANTILE_POINTS)).astype(int)]
    scores = np.sort([model.anomaly(x) for x in sample])
    model.score_quantiles = scores[np.linspace(0, len(scores) - 1, min(len(scores), _QUANTILE_POINTS)).astype(int)]
    return model


def train_risk(rows: Sequence[HistoryRow], seed: int = 42) -> RiskModel:
    """A risk model from a whole history."""
    ordered = in_time_order(rows)
    model = fit_risk(history_features(ordered), emergency_word_stats(past_of(r) for r in ordered), seed)
    model.trained_until = ordered[-1].requested_at.isoformat() if ordered else ""
    return model


def save_risk(model_dir: str | os.PathLike[str], model: RiskModel) -> None:
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{RISK_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(model.to_json(), separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, directory / RISK_FILE)


def load_risk(model_dir: str | os.PathLike[str]) -> RiskModel:
    """Load `risk.json`; raises ModelError with a plain reason."""
    path = Path(model_dir) / RISK_FILE
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"no risk model in {model_dir} (run `jitgate recommend train`)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from None
    try:
        return RiskModel.from_json(obj)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: corrupt risk model ({exc}); retrain the model") from None


def score_request(model: RiskModel | None, load_error: str | None, ask: RiskAsk,
                  history: Sequence[HistoryRow]) -> RiskScore:
    """A request's risk from the rows a caller knows (the requester's and anyone's on the resource);
    never raises: without a model, or when it fails, the score is unknown and says why."""
    if model is None:
        return unknown(f"no risk model: {load_error or 'not trained'}")
    try:
        mine = [past_of(r) for r in history if r.user == ask.user]
        on_resource = [past_of(r) for r in history if r.resource == ask.resource]
        return model.score(ask, mine, on_resource)
    except Exception as exc:  # a broken model must not fail a request: unknown, and why
        log.warning("risk model failed: %s", exc)
        return unknown(f"the risk model failed ({type(exc).__name__})")

